//! The lock ledger: a snapshot of the POSIX locks held on an exported filesystem, kept on shared
//! storage by the active server, so that after a failover the new server can tell when every
//! lock has been reclaimed and end grace early instead of waiting it out.
//!
//! Locks are identified by inode and byte range, not by device: the same shared disk can have
//! another major:minor on the other node. The pid is kept for the report only, since the NLM
//! server-side owner may differ after reclaim.
//!
//! Format 2 adds the NFSv4 clients (from /proc/fs/nfsd/clients) and their lock stateids on the
//! filesystem; their byte ranges are among `locks` (nfsd holds v4 locks as POSIX locks, so
//! /proc/locks lists them). A format 1 reader refuses a format 2 file ("format 2 (this version
//! reads 1)"), and this one refuses anything newer, naming the upgrade.
//!
//! Format 3 is a final ledger: the old server's last record, taken after its service IP went
//! down, with the mark of the mount it was taken on ([`MountMark`]). Only final ledgers are
//! written as format 3 ([`format_for`]), so a node that reads up to format 2 keeps reading the
//! normal ones and refuses a final one as newer. The takeover trusts a final ledger whatever
//! its age when the filesystem here is its next read-write mount ([`check_age`]).

use crate::grace::{self, GraceEndReport, GraceError, GraceWhich};
use crate::knobs::{self, KnobError, ProcRoot};
use crate::locks::{self, LockEntry};
use crate::mount_mark::{MarkError, MountMark};
use crate::v4grace::{self, V4WaitReport};
use crate::v4state::{self, V4StateError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

pub const LEDGER_FILE: &str = "lockd-recover-ledger.json";
/// The format of a normal ledger (the recorder's), which lockd-recover since format 2 reads.
pub const LEDGER_FORMAT: u32 = 2;
/// The format of a final ledger (with `final_mount`): refused as newer where format 2 is the
/// newest known, so an older node never takes it for a normal one.
pub const FINAL_LEDGER_FORMAT: u32 = 3;
/// The newest format this version reads.
pub const NEWEST_FORMAT: u32 = FINAL_LEDGER_FORMAT;
/// The oldest format this version still reads (format 1: no v4 clients).
pub const OLDEST_FORMAT: u32 = 1;
/// Refuse ledgers bigger than this: a snapshot of a million locks is about 100 MB; anything
/// larger is not ours.
const MAX_LEDGER_BYTES: u64 = 128 << 20;

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error(transparent)]
    Knob(#[from] KnobError),
    #[error(transparent)]
    V4(#[from] V4StateError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a lock ledger written by lockd-recover: {reason}")]
    Corrupt { path: PathBuf, reason: Corruption },
    /// Ending grace failed for a reason other than a knob (no end-grace knob at all).
    #[error("cannot end grace {path}: {source}")]
    EndGrace {
        path: PathBuf,
        #[source]
        source: GraceError,
    },
    #[error("{path} was written {age_s} s ago, older than --max-age {max_s} s: the `record` loop was not running on the old server, so the ledger may miss locks; refusing to end grace from it{}", final_not_trusted.as_ref().map(|w| format!(" (a final ledger, but not of the previous mount: {w})")).unwrap_or_default())]
    Stale {
        path: PathBuf,
        age_s: u64,
        max_s: u64,
        /// For a final ledger: why its age counted all the same.
        final_not_trusted: Option<String>,
    },
}

/// What is wrong with a ledger file's contents.
#[derive(Debug, Error)]
pub enum Corruption {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("format {found} (this version reads {OLDEST_FORMAT} to {NEWEST_FORMAT})")]
    Format { found: u32 },
    #[error("format {found} was written by a newer lockd-recover (this one reads up to {newest}): upgrade lockd-recover on this node before failing over to it")]
    Newer { found: u32, newest: u32 },
    #[error("{0} bytes is too large")]
    TooLarge(u64),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LedgerError + 'a {
    move |source| LedgerError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LedgerLock {
    pub ino: u64,
    pub access: String,
    pub start: u64,
    /// Inclusive end; `None` = to end of file.
    pub end: Option<u64>,
    pub pid: i64,
}

impl LedgerLock {
    fn key(&self) -> (u64, &str, u64, Option<u64>) {
        (self.ino, self.access.as_str(), self.start, self.end)
    }

    fn from_entry(e: &LockEntry) -> Self {
        Self {
            ino: e.ino,
            access: e.access.clone(),
            start: e.start,
            end: e.end,
            pid: e.pid,
        }
    }
}

/// An NFSv4 client of the old server and its lock stateids on the filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerV4Client {
    /// The long-form client name (as /proc/fs/nfsd/clients/*/info escapes it).
    pub name: String,
    pub address: String,
    pub minor_version: u32,
    pub locks: Vec<LedgerV4Lock>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LedgerV4Lock {
    pub stateid: String,
    pub ino: u64,
    pub filename: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub format: u32,
    /// Node that wrote it.
    pub node: String,
    /// The exported filesystem, as given to `record --fs`.
    pub fs: PathBuf,
    pub taken_at_unix_ms: u64,
    pub locks: Vec<LedgerLock>,
    /// NFSv4 clients (format 2; empty in format 1).
    #[serde(default)]
    pub v4_clients: Vec<LedgerV4Client>,
    /// Only in a final ledger (format 3): the mount it was taken on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_mount: Option<MountMark>,
}

/// The format a ledger is written as: the one place that chooses. Final ledgers only are
/// format 3; the rest stays format 2, which older nodes read (rolling upgrades).
pub fn format_for(final_mount: Option<&MountMark>) -> u32 {
    match final_mount {
        Some(_) => FINAL_LEDGER_FORMAT,
        None => LEDGER_FORMAT,
    }
}

impl Ledger {
    /// Makes this snapshot the final ledger of the mount `mark`.
    pub fn make_final(&mut self, mark: MountMark) {
        self.format = format_for(Some(&mark));
        self.final_mount = Some(mark);
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This host's name, from the one identity helper (libmmp::host::identity).
fn node_name() -> String {
    libmmp::host::identity::nodename()
}

/// One look at the kernel's lock tables (/proc/locks and the NFSv4 clients), shared by the
/// snapshots of every filesystem a recorder keeps (`record --fs A --fs B ...`): the tables are
/// read once per tick, not once per filesystem.
pub struct KernelLocks {
    locks: Vec<LockEntry>,
    v4: Vec<v4state::V4Client>,
}

impl KernelLocks {
    pub fn read(proc: &ProcRoot) -> Result<Self, LedgerError> {
        Ok(KernelLocks {
            locks: proc.locks()?,
            v4: v4state::read_clients(proc)?,
        })
    }

    /// Snapshot of the held POSIX locks on the filesystem holding `fs_path`.
    pub fn snapshot(&self, fs_path: &Path) -> Result<Ledger, LedgerError> {
        let dev = knobs::fs_dev(fs_path).map_err(io_err("cannot stat", fs_path))?;
        let mut locks: Vec<LedgerLock> = locks::held_on_dev(&self.locks, dev)
            .iter()
            .map(LedgerLock::from_entry)
            .collect();
        locks.sort();
        Ok(Ledger {
            format: format_for(None),
            node: node_name(),
            fs: fs_path.to_path_buf(),
            taken_at_unix_ms: unix_ms(SystemTime::now()),
            locks,
            v4_clients: v4_clients(&self.v4, dev),
            final_mount: None,
        })
    }
}

/// Snapshot of the held POSIX locks on the filesystem holding `fs_path`.
pub fn snapshot(proc: &ProcRoot, fs_path: &Path) -> Result<Ledger, LedgerError> {
    KernelLocks::read(proc)?.snapshot(fs_path)
}

/// The final snapshot of a server that no longer grants locks on `fs_path` (its service IP is
/// down): marked with the mount it is taken on, read from the disk by `mark`. When the mark
/// cannot be read (no block device, not ext4, no permission) this is a normal ledger, with a
/// warning: the takeover then checks its age as always.
pub fn final_snapshot(
    proc: &ProcRoot,
    fs_path: &Path,
    mark: impl FnOnce(&Path) -> Result<MountMark, MarkError>,
) -> Result<Ledger, LedgerError> {
    let mut l = snapshot(proc, fs_path)?;
    match mark(fs_path) {
        Ok(m) => l.make_final(m),
        Err(e) => tracing::warn!(
            "final ledger written as a normal one (the takeover will check its age): cannot read the mount count of {}: {e}",
            fs_path.display()
        ),
    }
    Ok(l)
}

/// The confirmed v4 clients, with their lock stateids on the filesystem `dev`. Unconfirmed
/// clients are transient (an EXCHANGE_ID not yet confirmed) and hold no state.
fn v4_clients(clients: &[v4state::V4Client], dev: (u32, u32)) -> Vec<LedgerV4Client> {
    clients
        .iter()
        .filter(|c| c.info.status.as_deref().is_none_or(|s| s != "unconfirmed"))
        .map(|c| {
            let mut locks: Vec<LedgerV4Lock> = c
                .locks
                .iter()
                .filter(|l| l.dev == dev)
                .map(|l| LedgerV4Lock {
                    stateid: l.stateid.clone(),
                    ino: l.ino,
                    filename: l.filename.clone(),
                })
                .collect();
            locks.sort();
            LedgerV4Client {
                name: c.info.name.clone(),
                address: c.info.address.clone(),
                minor_version: c.info.minor_version,
                locks,
            }
        })
        .collect()
}

/// Parses ledger bytes (total: any input gives `Ok` or `Err`).
pub fn parse(path: &Path, data: &[u8]) -> Result<Ledger, LedgerError> {
    parse_up_to(path, data, NEWEST_FORMAT)
}

/// [`parse`] as a version that reads formats up to `newest` does (tests stand in for an older
/// node with it).
fn parse_up_to(path: &Path, data: &[u8], newest: u32) -> Result<Ledger, LedgerError> {
    let corrupt = |reason| LedgerError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    // The format first, alone: a newer ledger may not parse as this version's struct, and
    // must be refused as newer, not as corrupt.
    #[derive(Deserialize)]
    struct FormatOnly {
        format: u32,
    }
    let f: FormatOnly = serde_json::from_slice(data).map_err(|e| corrupt(e.into()))?;
    match f.format {
        found if (OLDEST_FORMAT..=newest).contains(&found) => {}
        found if found > newest => return Err(corrupt(Corruption::Newer { found, newest })),
        found => return Err(corrupt(Corruption::Format { found })),
    }
    serde_json::from_slice(data).map_err(|e| corrupt(e.into()))
}

pub fn ledger_path(state_dir: &Path) -> PathBuf {
    state_dir.join(LEDGER_FILE)
}

pub fn read(state_dir: &Path) -> Result<Ledger, LedgerError> {
    let path = ledger_path(state_dir);
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io_err("cannot open", &path))?;
    let md = f.metadata().map_err(io_err("cannot stat", &path))?;
    if md.len() > MAX_LEDGER_BYTES {
        return Err(LedgerError::Corrupt {
            path,
            reason: Corruption::TooLarge(md.len()),
        });
    }
    let data = fs::read(&path).map_err(io_err("cannot read", &path))?;
    parse(&path, &data)
}

/// Writes the ledger atomically: temp file, fsync, rename, fsync of the directory. The owner of
/// an existing ledger is kept.
pub fn write(state_dir: &Path, ledger: &Ledger) -> Result<(), LedgerError> {
    let path = ledger_path(state_dir);
    let tmp = state_dir.join(format!(".{LEDGER_FILE}.new"));
    let data = serde_json::to_vec(ledger).map_err(|e| LedgerError::Corrupt {
        path: path.clone(),
        reason: e.into(),
    })?;
    let owner = fs::symlink_metadata(&path).ok().map(|m| (m.uid(), m.gid()));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io_err("cannot create", &tmp))?;
    f.write_all(&data).map_err(io_err("cannot write", &tmp))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
            .map_err(io_err("cannot set owner of", &tmp))?;
    }
    f.sync_all().map_err(io_err("cannot fsync", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("cannot rename into place", &path))?;
    File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot fsync directory", state_dir))
}

/// Splits the expected locks into reclaimed and missing: each expected lock needs its own
/// held lock with the same inode, access and range (a multiset match).
pub fn match_locks(
    expected: &[LedgerLock],
    held: &[LedgerLock],
) -> (Vec<LedgerLock>, Vec<LedgerLock>) {
    let mut avail: BTreeMap<(u64, &str, u64, Option<u64>), usize> = BTreeMap::new();
    for h in held {
        *avail.entry(h.key()).or_default() += 1;
    }
    let mut reclaimed = Vec::new();
    let mut missing = Vec::new();
    for e in expected {
        match avail.get_mut(&e.key()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                reclaimed.push(e.clone());
            }
            _ => missing.push(e.clone()),
        }
    }
    (reclaimed, missing)
}

#[derive(Debug, Clone)]
pub struct WaitOptions {
    pub timeout: Duration,
    /// Never end grace earlier than this after the start of waiting.
    pub min_grace: Duration,
    pub poll: Duration,
    /// Which grace to end once everything is back; `None` only reports.
    pub end_grace: Option<GraceWhich>,
    pub max_age: Duration,
    /// nfsdcld's database, to name the v4 clients without RECLAIM_COMPLETE at the deadline.
    pub v4_tracker: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaitReport {
    pub ledger_node: String,
    pub ledger_age_ms: u64,
    pub fs: PathBuf,
    pub expected: usize,
    pub reclaimed: Vec<LedgerLock>,
    pub missing: Vec<LedgerLock>,
    pub all_reclaimed: bool,
    /// Milliseconds until every lock was held again.
    pub reclaimed_after_ms: Option<u64>,
    pub grace_ended: Option<GraceEndReport>,
    /// The NFSv4 grace: waited for separately when v4 clients were recorded or v4 grace is
    /// running (locks coming back do not end it).
    pub v4: Option<V4WaitReport>,
    pub waited_ms: u64,
}

/// Checks the ledger's age against `max_age`; returns the age in milliseconds.
///
/// A final ledger counts whatever its age when `current` (the mark of the mount in force here,
/// asked for only when the ledger is final) is the next read-write mount after the ledger's:
/// its server took it with the service IP down, and no server can have mounted the filesystem
/// read-write, so granted a lock on it, in between. Otherwise the age check applies as to any
/// ledger.
pub fn check_age(
    state_dir: &Path,
    l: &Ledger,
    max_age: Duration,
    current: impl FnOnce() -> Result<MountMark, MarkError>,
) -> Result<u64, LedgerError> {
    let age_ms = unix_ms(SystemTime::now()).saturating_sub(l.taken_at_unix_ms);
    let final_not_trusted = match &l.final_mount {
        None => None,
        Some(recorded) => match next_mount(recorded, current) {
            Ok(now) => {
                tracing::info!(
                    "final ledger of the previous mount (filesystem {}, mount count {} -> {}): no server can have granted a lock since it was taken, so its age ({} s) does not count",
                    now.uuid, recorded.mount_count, now.mount_count, age_ms / 1000
                );
                return Ok(age_ms);
            }
            Err(why) => {
                tracing::info!(
                    "final ledger, but not of the previous mount ({why}): its age counts"
                );
                Some(why)
            }
        },
    };
    if Duration::from_millis(age_ms) > max_age {
        return Err(LedgerError::Stale {
            path: ledger_path(state_dir),
            age_s: age_ms / 1000,
            max_s: max_age.as_secs(),
            final_not_trusted,
        });
    }
    Ok(age_ms)
}

/// The mark here when it is the next mount after `recorded`, or why not.
fn next_mount(
    recorded: &MountMark,
    current: impl FnOnce() -> Result<MountMark, MarkError>,
) -> Result<MountMark, String> {
    let now = current().map_err(|e| format!("the mount count here is unreadable: {e}"))?;
    now.is_next_after(recorded).map_err(|e| e.to_string())?;
    Ok(now)
}

/// Watches `/proc/locks` until every ledger lock on `fs_path` is held again, then (after the
/// `min_grace` floor) ends grace. On timeout grace is left to run out by itself.
///
/// NFSv4: when the ledger recorded v4 clients, or v4 grace is running, lock return ends only
/// lockd's grace; v4 grace is left to the kernel, which ends it once every client sent
/// RECLAIM_COMPLETE, and is ended here only at the deadline (`--timeout`), naming the clients
/// that had not completed ([`v4grace::wait`]). Ending lockd's grace first is safe: new locks
/// stay refused while any grace of the network namespace runs (`locks_in_grace()`).
pub fn wait_reclaim(
    proc: &ProcRoot,
    state_dir: &Path,
    fs_path: &Path,
    opts: &WaitOptions,
) -> Result<WaitReport, LedgerError> {
    let start = Instant::now();
    let ledger = read(state_dir)?;
    let age_ms = check_age(state_dir, &ledger, opts.max_age, || {
        MountMark::read(fs_path)
    })?;
    let dev = knobs::fs_dev(fs_path).map_err(io_err("cannot stat", fs_path))?;
    let v4_active = !ledger.v4_clients.is_empty() || v4grace::ended(proc)? == Some(false);
    let (reclaimed, missing, reclaimed_at) = wait_locks(proc, &ledger, dev, start, opts)?;
    let all = missing.is_empty();
    let which = match opts.end_grace {
        Some(GraceWhich::V4) if v4_active => None,
        Some(GraceWhich::Both) if v4_active => Some(GraceWhich::Nlm),
        w => w,
    };
    let grace_ended = match (all, which) {
        (true, Some(which)) => Some(end_grace(proc, which)?),
        _ => None,
    };
    let v4 = if v4_active && opts.end_grace != Some(GraceWhich::Nlm) {
        let names: Vec<String> = ledger.v4_clients.iter().map(|c| c.name.clone()).collect();
        Some(v4grace::wait(
            proc,
            &names,
            start + opts.timeout,
            opts.end_grace.is_some(),
            opts.v4_tracker.as_deref(),
            opts.poll,
        )?)
    } else {
        None
    };
    Ok(WaitReport {
        ledger_node: ledger.node,
        ledger_age_ms: age_ms,
        fs: fs_path.to_path_buf(),
        expected: ledger.locks.len(),
        reclaimed,
        missing,
        all_reclaimed: all,
        reclaimed_after_ms: reclaimed_at.map(|t| t.duration_since(start).as_millis() as u64),
        grace_ended,
        v4,
        waited_ms: start.elapsed().as_millis() as u64,
    })
}

fn end_grace(proc: &ProcRoot, which: GraceWhich) -> Result<GraceEndReport, LedgerError> {
    grace::end(proc, which).map_err(|e| match e {
        GraceError::Knob(k) => LedgerError::Knob(k),
        other => LedgerError::EndGrace {
            path: proc.path(knobs::NLM_END_GRACE),
            source: other,
        },
    })
}

type LockWait = (Vec<LedgerLock>, Vec<LedgerLock>, Option<Instant>);

/// Polls /proc/locks until every ledger lock is held again (and the floor has passed) or the
/// timeout; returns reclaimed, missing and when all were first back.
fn wait_locks(
    proc: &ProcRoot,
    ledger: &Ledger,
    dev: (u32, u32),
    start: Instant,
    opts: &WaitOptions,
) -> Result<LockWait, LedgerError> {
    let deadline = start + opts.timeout;
    let mut reclaimed_at: Option<Instant> = None;
    loop {
        let held: Vec<LedgerLock> = locks::held_on_dev(&proc.locks()?, dev)
            .iter()
            .map(LedgerLock::from_entry)
            .collect();
        let (reclaimed, missing) = match_locks(&ledger.locks, &held);
        let now = Instant::now();
        if missing.is_empty() {
            let at = *reclaimed_at.get_or_insert(now);
            tracing::debug!(
                after_ms = at.duration_since(start).as_millis() as u64,
                "all locks held again"
            );
            if now >= start + opts.min_grace {
                return Ok((reclaimed, missing, reclaimed_at));
            }
        } else {
            // A lock that came back and went again (released by its client) resets this.
            reclaimed_at = None;
        }
        if now >= deadline {
            return Ok((reclaimed, missing, reclaimed_at));
        }
        let floor_wait = (start + opts.min_grace).saturating_duration_since(now);
        let wait = if missing.is_empty() {
            floor_wait.min(opts.poll)
        } else {
            opts.poll
        };
        std::thread::sleep(wait.min(deadline.saturating_duration_since(now)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l(ino: u64, access: &str, start: u64, end: Option<u64>, pid: i64) -> LedgerLock {
        LedgerLock {
            ino,
            access: access.into(),
            start,
            end,
            pid,
        }
    }

    #[test]
    fn matching_ignores_pid_and_counts_duplicates() {
        let expected = vec![
            l(5, "WRITE", 0, None, 100),
            l(5, "READ", 10, Some(19), 101),
            l(5, "READ", 10, Some(19), 102),
            l(6, "WRITE", 0, Some(0), 103),
        ];
        let held = vec![
            l(5, "WRITE", 0, None, 999),
            l(5, "READ", 10, Some(19), 998),
            l(7, "WRITE", 0, None, 1),
        ];
        let (r, m) = match_locks(&expected, &held);
        assert_eq!(r.len(), 2);
        assert_eq!(
            m,
            vec![
                l(5, "READ", 10, Some(19), 102),
                l(6, "WRITE", 0, Some(0), 103)
            ]
        );
    }

    #[test]
    fn ledger_round_trips_and_rejects_garbage() {
        let t = tempfile::tempdir().unwrap();
        let led = Ledger {
            format: LEDGER_FORMAT,
            node: "n1".into(),
            fs: "/srv/export".into(),
            taken_at_unix_ms: 1,
            locks: vec![l(5, "WRITE", 0, None, 100)],
            v4_clients: vec![],
            final_mount: None,
        };
        write(t.path(), &led).unwrap();
        assert_eq!(read(t.path()).unwrap(), led);
        assert!(!t.path().join(format!(".{LEDGER_FILE}.new")).exists());
        fs::write(ledger_path(t.path()), b"{\"format\":2}").unwrap();
        assert!(matches!(read(t.path()), Err(LedgerError::Corrupt { .. })));
        fs::write(ledger_path(t.path()), b"\xff\x00").unwrap();
        assert!(matches!(read(t.path()), Err(LedgerError::Corrupt { .. })));
    }

    /// A ledger taken `age_s` seconds ago.
    fn aged(age_s: u64) -> Ledger {
        Ledger {
            format: LEDGER_FORMAT,
            node: "n1".into(),
            fs: "/x".into(),
            taken_at_unix_ms: unix_ms(SystemTime::now()) - age_s * 1000,
            locks: vec![],
            v4_clients: vec![],
            final_mount: None,
        }
    }

    fn mark(uuid: &str, mount_count: u16) -> MountMark {
        MountMark {
            uuid: uuid.into(),
            mount_count,
            last_check: 1_700_000_000,
        }
    }

    const FIVE_MIN: Duration = Duration::from_secs(300);

    fn never_asked() -> Result<MountMark, MarkError> {
        panic!("the mount mark is read only for a final ledger")
    }

    #[test]
    fn stale_ledger_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let led = aged(600);
        let e = check_age(t.path(), &led, FIVE_MIN, never_asked).unwrap_err();
        assert!(matches!(
            e,
            LedgerError::Stale {
                age_s: 600,
                final_not_trusted: None,
                ..
            }
        ));
        assert!(!e.to_string().contains("final"), "{e}");
        assert!(check_age(t.path(), &led, Duration::from_secs(900), never_asked).is_ok());
    }

    /// Stale's reason for a final ledger an hour old whose mount here is `current`.
    fn final_refusal(current: Result<MountMark, MarkError>) -> String {
        let t = tempfile::tempdir().unwrap();
        let mut led = aged(3600);
        led.make_final(mark("u1", 7));
        match check_age(t.path(), &led, FIVE_MIN, || current) {
            Err(e @ LedgerError::Stale { age_s: 3600, .. }) => e.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_final_ledger_of_the_previous_mount_counts_whatever_its_age() {
        let t = tempfile::tempdir().unwrap();
        let mut led = aged(3600);
        led.make_final(mark("u1", 7));
        let age = check_age(t.path(), &led, FIVE_MIN, || Ok(mark("u1", 8))).unwrap();
        assert!((3_600_000..3_700_000).contains(&age), "age reported: {age}");
    }

    #[test]
    fn a_final_ledger_of_another_mount_is_stale_and_says_why() {
        let e = final_refusal(Ok(mark("u1", 9)));
        assert!(
            e.contains("a final ledger, but not of the previous mount"),
            "{e}"
        );
        assert!(e.contains("mounted read-write 2 times since"), "{e}");
        let e = final_refusal(Ok(mark("u1", 7)));
        assert!(e.contains("same mount"), "{e}");
        let e = final_refusal(Ok(mark("u2", 8)));
        assert!(
            e.contains("the filesystem here is u2, the ledger's was u1"),
            "{e}"
        );
        let unreadable = MarkError::Device(libmmp::host::backing::BackingError::NotBlock {
            path: "/x".into(),
            major: 0,
            minor: 42,
        });
        let e = final_refusal(Err(unreadable));
        assert!(e.contains("the mount count here is unreadable"), "{e}");
        assert!(e.contains("no block device"), "{e}");
    }

    #[test]
    fn a_young_final_ledger_counts_by_its_age_when_the_mount_differs() {
        let t = tempfile::tempdir().unwrap();
        let mut led = aged(10);
        led.make_final(mark("u1", 7));
        assert!(check_age(t.path(), &led, FIVE_MIN, || Ok(mark("u1", 7))).is_ok());
    }

    /// Final ledgers only are format 3: they round-trip, and a node that reads up to format 2
    /// refuses one as newer while it still reads the normal ones.
    #[test]
    fn final_ledgers_are_format_3_and_refused_by_a_format_2_reader() {
        let t = tempfile::tempdir().unwrap();
        let normal = aged(0);
        write(t.path(), &normal).unwrap();
        let text = fs::read_to_string(ledger_path(t.path())).unwrap();
        assert!(
            text.contains("\"format\":2") && !text.contains("final_mount"),
            "{text}"
        );
        parse_up_to(Path::new("x"), text.as_bytes(), 2).unwrap();

        let mut fin = normal.clone();
        fin.make_final(mark("u1", 7));
        assert_eq!(fin.format, FINAL_LEDGER_FORMAT);
        write(t.path(), &fin).unwrap();
        assert_eq!(read(t.path()).unwrap(), fin);
        let text = fs::read_to_string(ledger_path(t.path())).unwrap();
        assert!(
            text.contains("\"format\":3") && text.contains("\"mount_count\":7"),
            "{text}"
        );
        let e = parse_up_to(Path::new("x"), text.as_bytes(), 2).unwrap_err();
        assert!(
            matches!(
                &e,
                LedgerError::Corrupt {
                    reason: Corruption::Newer {
                        found: 3,
                        newest: 2
                    },
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("upgrade lockd-recover"), "{e}");
    }

    #[test]
    fn final_snapshot_falls_back_to_a_normal_ledger_without_a_mark() {
        let exp = tempfile::tempdir().unwrap();
        let t = knobs::tests::fake_proc("6.18.0\n", Some(8), "");
        let proc = ProcRoot::new(t.path());
        let l = final_snapshot(&proc, exp.path(), |_| Ok(mark("u1", 3))).unwrap();
        assert_eq!((l.format, l.final_mount), (3, Some(mark("u1", 3))));
        let l = final_snapshot(&proc, exp.path(), |p| {
            Err(MarkError::Device(
                libmmp::host::backing::BackingError::NotBlock {
                    path: p.to_path_buf(),
                    major: 0,
                    minor: 1,
                },
            ))
        })
        .unwrap();
        assert_eq!((l.format, l.final_mount), (LEDGER_FORMAT, None));
    }

    #[test]
    fn wait_reclaim_against_a_fake_proc() {
        let exp = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let (maj, min) = knobs::fs_dev(exp.path()).unwrap();
        let line = |id: u32, pid: u32, ino: u32| {
            format!("{id}: POSIX  ADVISORY  WRITE {pid} {maj:02x}:{min:02x}:{ino} 0 EOF\n")
        };
        let t = knobs::tests::fake_proc("6.18.0\n", Some(8), &(line(1, 10, 77) + &line(2, 11, 78)));
        let proc = ProcRoot::new(t.path());
        let led = snapshot(&proc, exp.path()).unwrap();
        assert_eq!(led.locks.len(), 2);
        write(state.path(), &led).unwrap();

        // After "failover" only one lock is back: timeout, grace untouched.
        fs::write(t.path().join("locks"), line(5, 20, 77)).unwrap();
        let opts = WaitOptions {
            timeout: Duration::from_millis(300),
            min_grace: Duration::ZERO,
            poll: Duration::from_millis(50),
            end_grace: Some(GraceWhich::Both),
            max_age: Duration::from_secs(60),
            v4_tracker: None,
        };
        let r = wait_reclaim(&proc, state.path(), exp.path(), &opts).unwrap();
        assert!(!r.all_reclaimed);
        assert_eq!(r.missing.len(), 1);
        assert_eq!(r.missing[0].ino, 78);
        assert!(r.grace_ended.is_none());
        assert_eq!(
            fs::read_to_string(t.path().join(knobs::NLM_END_GRACE)).unwrap(),
            ""
        );

        // Both back (other pids, as after reclaim): grace ends, but not before the floor.
        fs::write(t.path().join("locks"), line(5, 20, 77) + &line(6, 21, 78)).unwrap();
        let opts = WaitOptions {
            min_grace: Duration::from_millis(400),
            timeout: Duration::from_secs(5),
            ..opts
        };
        let r = wait_reclaim(&proc, state.path(), exp.path(), &opts).unwrap();
        assert!(r.v4.is_none(), "no v4 client recorded, no v4 grace running");
        assert!(r.all_reclaimed);
        assert!(
            r.waited_ms >= 400,
            "min-grace floor respected: {}",
            r.waited_ms
        );
        assert_eq!(r.grace_ended.unwrap().ended.len(), 2);
        assert_eq!(
            fs::read_to_string(t.path().join(knobs::NLM_END_GRACE)).unwrap(),
            "Y\n"
        );
    }

    #[test]
    fn v4_grace_is_left_to_the_kernel_when_locks_come_back() {
        let exp = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let (maj, min) = knobs::fs_dev(exp.path()).unwrap();
        let line = format!("1: POSIX  ADVISORY  WRITE 10 {maj:02x}:{min:02x}:77 0 EOF\n");
        let t = knobs::tests::fake_proc("6.1.0\n", Some(8), &line);
        fs::write(t.path().join(knobs::V4_END_GRACE), "N\n").unwrap();
        let proc = ProcRoot::new(t.path());
        let mut led = snapshot(&proc, exp.path()).unwrap();
        led.v4_clients.push(LedgerV4Client {
            name: "Linux NFSv4.2 c".into(),
            address: "198.18.0.3:1".into(),
            minor_version: 2,
            locks: vec![],
        });
        write(state.path(), &led).unwrap();
        let v4 = t.path().join(knobs::V4_END_GRACE);
        let kernel = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            fs::write(v4, "Y\n").unwrap();
        });
        let opts = WaitOptions {
            timeout: Duration::from_secs(5),
            min_grace: Duration::ZERO,
            poll: Duration::from_millis(20),
            end_grace: Some(GraceWhich::Both),
            max_age: Duration::from_secs(60),
            v4_tracker: None,
        };
        let r = wait_reclaim(&proc, state.path(), exp.path(), &opts).unwrap();
        kernel.join().unwrap();
        assert!(r.all_reclaimed);
        let ended = r.grace_ended.unwrap().ended;
        assert_eq!(
            ended,
            [t.path().join(knobs::NLM_END_GRACE)],
            "lockd's grace only"
        );
        let v4 = r.v4.unwrap();
        assert_eq!(v4.ended, Some(v4grace::V4End::Kernel));
        assert!(v4.ended_after_ms.unwrap() >= 250, "{v4:?}");
        assert_eq!(v4.never_reconnected, ["Linux NFSv4.2 c"]);
    }

    #[test]
    fn newer_ledgers_are_refused_as_newer_and_format_1_is_read() {
        let p = Path::new("x");
        let e = parse(p, b"{\"format\":4,\"whatever\":[1]}").unwrap_err();
        assert!(e.to_string().contains("newer lockd-recover"), "{e}");
        assert!(e.to_string().contains("reads up to 3"), "{e}");
        let v3 = br#"{"format":3,"node":"a","fs":"/x","taken_at_unix_ms":1,"locks":[],"final_mount":{"uuid":"u","mount_count":1,"last_check":0}}"#;
        assert_eq!(parse(p, v3).unwrap().final_mount.unwrap().mount_count, 1);
        let v1 = br#"{"format":1,"node":"a","fs":"/x","taken_at_unix_ms":1,"locks":[]}"#;
        assert!(parse(p, v1).unwrap().v4_clients.is_empty());
        assert!(parse(p, b"{\"format\":0}").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(Path::new("x"), &bytes);
        }
    }
}
