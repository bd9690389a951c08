//! The client records across a planned failover. Releasing the locks and stopping nfsd make
//! lockd unmonitor every client, and rpc.statd then deletes its `sm/` record, so the next server
//! would notify nobody. nfs-locks' stop saves `sm/` into `sm.saved/` before the release, and
//! nfs-grace's start (before rpc.statd runs) puts back what `sm/` lacks (heartbeat/nfsserver
//! does the same with its sm.ha copy).

use lockd_recover::statd::{RecordDir, StatdDir};
use std::fs;
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
    let saved = d.root().join(SAVED);
    fs::create_dir_all(&saved)?;
    let files = record_files(&d.dir(RecordDir::Sm))?;
    for f in &files {
        let to = saved.join(f.file_name().unwrap_or_default());
        fs::copy(f, &to)?;
        let md = fs::metadata(f)?;
        std::os::unix::fs::chown(&to, Some(md.uid()), Some(md.gid()))?;
    }
    Ok(files.len())
}

/// Moves the saved records that `sm/` lacks back into it and drops the rest; returns how many
/// came back.
pub fn restore(d: &StatdDir) -> io::Result<usize> {
    let saved = d.root().join(SAVED);
    if !saved.is_dir() {
        return Ok(0);
    }
    let sm = d.dir(RecordDir::Sm);
    let mut n = 0;
    for f in record_files(&saved)? {
        let to = sm.join(f.file_name().unwrap_or_default());
        if to.exists() {
            fs::remove_file(&f)?;
        } else {
            fs::rename(&f, &to)?;
            n += 1;
        }
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
}
