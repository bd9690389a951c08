//! The client records across a failover, kept in `sm.saved/` until nfs-locks has notified.
//!
//! Two things delete them before nfs-locks can notify from the service IP:
//! - a planned failover: releasing the locks and stopping nfsd make lockd unmonitor every
//!   client, and rpc.statd deletes its `sm/` record. nfs-locks' stop saves `sm/` into
//!   `sm.saved/` before the release;
//! - any start: rpc.statd started without `--no-notify` (heartbeat:nfsserver starts it so
//!   whenever it does not go through systemd's rpc-statd.service, whose unit sets
//!   RPC_STATD_NO_NOTIFY) moves `sm/` to `sm.bak/` and runs sm-notify, which notifies every
//!   client under the node's own name, before the service IP is up (clients ignore a name they
//!   do not monitor), and deletes each record it got an answer for. Seen in the Pacemaker lab:
//!   nfs-locks found no client, nobody reclaimed, and once grace ran out another client was
//!   granted the locks.
//!
//! So nfs-grace's start (after the mount, before nfsserver) puts back what `sm/` lacks and then
//! copies `sm.bak/` and `sm/` into `sm.saved/` ([`keep`]), and nfs-locks' worker puts back what
//! `sm/` lacks again right before it notifies ([`restore`]) (heartbeat/nfsserver keeps a copy
//! in `sm.ha/` for its own notify the same way).

use lockd_recover::statd::{RecordDir, StatdDir};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const SAVED: &str = "sm.saved";

/// The regular files of `dir` (records; statd's `.new` temp files and anything else skipped).
fn record_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let hidden = name.to_string_lossy().starts_with('.');
        if !hidden && e.file_type()?.is_file() {
            v.push(e.path());
        }
    }
    Ok(v)
}

/// Copies every `sm/` record into `sm.saved/` (same owner, so rpc.statd can delete it later);
/// returns how many.
pub fn save(d: &StatdDir) -> io::Result<usize> {
    copy_into_saved(d, &[RecordDir::Sm])
}

/// Copies the records of `dirs` into `sm.saved/`, a later one's over an earlier one's of the
/// same name. A record that vanishes meanwhile (rpc.statd unmonitored the client) is skipped.
fn copy_into_saved(d: &StatdDir, dirs: &[RecordDir]) -> io::Result<usize> {
    let saved = saved_dir(d)?;
    let mut n = 0;
    for which in dirs {
        for f in record_files(&d.dir(*which))? {
            match copy_record(&f, &saved.join(f.file_name().unwrap_or_default())) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(n)
}

/// `sm.saved/` if it exists. A symlink there is refused: the records would be written, or
/// taken, wherever it points.
fn saved_if_any(d: &StatdDir) -> io::Result<Option<PathBuf>> {
    let saved = d.root().join(SAVED);
    match fs::symlink_metadata(&saved) {
        Ok(md) if md.is_dir() => Ok(Some(saved)),
        Ok(_) => Err(io::Error::other(format!(
            "{} is not a directory (a symlink?): move it away",
            saved.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `sm.saved/`, created if missing (in the statd directory, which must exist).
fn saved_dir(d: &StatdDir) -> io::Result<PathBuf> {
    if let Some(saved) = saved_if_any(d)? {
        return Ok(saved);
    }
    let saved = d.root().join(SAVED);
    fs::create_dir(&saved)?;
    Ok(saved)
}

/// Copies through a new hidden file (`create_new` never follows a symlink) renamed over `to`
/// (which replaces a symlink there, not what it points to); same owner as `from`.
fn copy_record(from: &Path, to: &Path) -> io::Result<()> {
    let name = to.file_name().unwrap_or_default().to_string_lossy();
    let tmp = to.with_file_name(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut src = File::open(from)?;
    let md = src.metadata()?;
    let mut dst = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let copied = io::copy(&mut src, &mut dst)
        .and_then(|_| std::os::unix::fs::fchown(&dst, Some(md.uid()), Some(md.gid())))
        .and_then(|()| fs::rename(&tmp, to));
    if copied.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    copied
}

/// nfs-grace's start: the saved records `sm/` lacks come back ([`restore`]), then `sm.bak/`
/// (clients a previous notify did not reach) and `sm/` are copied into `sm.saved/`, for
/// nfs-locks to restore after rpc.statd's own notify. Returns (restored, kept).
pub fn keep(d: &StatdDir) -> io::Result<(usize, usize)> {
    let restored = restore(d)?;
    Ok((
        restored,
        copy_into_saved(d, &[RecordDir::SmBak, RecordDir::Sm])?,
    ))
}

/// Moves the saved records that `sm/` lacks back into it and drops the rest; returns how many
/// came back.
pub fn restore(d: &StatdDir) -> io::Result<usize> {
    let Some(saved) = saved_if_any(d)? else {
        return Ok(0);
    };
    let sm = d.dir(RecordDir::Sm);
    let mut n = 0;
    for f in record_files(&saved)? {
        // A hard link never replaces: a record rpc.statd wrote meanwhile (a client's SM_MON
        // during grace) is kept, and the saved copy dropped.
        match fs::hard_link(&f, sm.join(f.file_name().unwrap_or_default())) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        fs::remove_file(&f)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_records_come_back_where_missing() {
        let t = tempfile::tempdir().unwrap();
        let d = StatdDir::create(t.path()).unwrap();
        let sm = d.dir(RecordDir::Sm);
        fs::write(sm.join("client1"), "a\n").unwrap();
        fs::write(sm.join(".client2.new"), "tmp\n").unwrap();
        assert_eq!(save(&d).unwrap(), 1);
        fs::remove_file(sm.join("client1")).unwrap();
        assert_eq!(restore(&d).unwrap(), 1);
        assert_eq!(fs::read_to_string(sm.join("client1")).unwrap(), "a\n");
        assert_eq!(restore(&d).unwrap(), 0, "nothing left to restore");
        save(&d).unwrap();
        assert_eq!(
            restore(&d).unwrap(),
            0,
            "present records are kept as they are"
        );
        assert_eq!(record_files(&t.path().join(SAVED)).unwrap().len(), 0);
    }

    /// rpc.statd's start-time notify between nfs-grace and nfs-locks: the records it deleted
    /// come back from the copy nfs-grace kept.
    #[test]
    fn kept_records_survive_statds_own_notify() {
        let t = tempfile::tempdir().unwrap();
        let d = StatdDir::create(t.path()).unwrap();
        let sm = d.dir(RecordDir::Sm);
        fs::write(sm.join("clientc"), "c\n").unwrap();
        fs::create_dir_all(t.path().join(SAVED)).unwrap();
        fs::write(t.path().join(SAVED).join("clientd"), "d\n").unwrap();
        fs::write(d.dir(RecordDir::SmBak).join("cliente"), "e\n").unwrap();
        assert_eq!(
            keep(&d).unwrap(),
            (1, 3),
            "clientd restored, all three kept"
        );
        // rpc.statd retires sm/ into sm.bak/ and sm-notify deletes what it notified.
        fs::remove_file(sm.join("clientc")).unwrap();
        fs::remove_file(sm.join("clientd")).unwrap();
        fs::remove_file(d.dir(RecordDir::SmBak).join("cliente")).unwrap();
        assert_eq!(restore(&d).unwrap(), 3);
        assert_eq!(fs::read_to_string(sm.join("cliente")).unwrap(), "e\n");
        assert_eq!(fs::read_to_string(sm.join("clientc")).unwrap(), "c\n");
        assert_eq!(fs::read_to_string(sm.join("clientd")).unwrap(), "d\n");
    }

    /// A symlink as sm.saved/ is refused by both sides, and a symlink in place of a saved
    /// record is replaced, not written through.
    #[test]
    fn symlinks_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let d = StatdDir::create(t.path()).unwrap();
        fs::write(d.dir(RecordDir::Sm).join("clientc"), "c\n").unwrap();
        let elsewhere = t.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, t.path().join(SAVED)).unwrap();
        assert!(save(&d)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
        assert!(restore(&d).is_err());
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "nothing written through it"
        );
        fs::remove_file(t.path().join(SAVED)).unwrap();
        fs::create_dir(t.path().join(SAVED)).unwrap();
        let target = t.path().join("target");
        fs::write(&target, "keep\n").unwrap();
        std::os::unix::fs::symlink(&target, t.path().join(SAVED).join("clientc")).unwrap();
        assert_eq!(save(&d).unwrap(), 1);
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep\n");
        let kept = t.path().join(SAVED).join("clientc");
        assert!(fs::symlink_metadata(&kept).unwrap().is_file());
        assert_eq!(fs::read_to_string(kept).unwrap(), "c\n");
    }
}
