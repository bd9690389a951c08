//! What this host holds: mmpd's per-device lock and state files in its run directory.
//!
//! For each device it holds, mmpd keeps in the run directory (default `/run/mmpd`, or
//! `$MMPD_RUN_DIR`):
//!
//! - `<key>.lock`: an open-file-description lock (`F_OFD_SETLK`, write lock on the whole file),
//!   held for as long as mmpd holds the device, with its pid as the content. A second mmpd for
//!   the same device on this host cannot take it and refuses to start; `mmp-tool release`
//!   refuses to write CLEAN under a running mmpd. The kernel drops the lock when the process
//!   dies, so a crash never leaves a stale lock.
//! - `<key>.state`: the holder's state as `name=value` lines, rewritten atomically (rename) on
//!   every change, for `mmp-tool status` on this host.
//!
//! The key names the device, not the path: `blk-MAJ:MIN` for block devices, `file-DEV-INO` for
//! image files, so two paths to one device (a symlink in /dev/disk/by-id) share one lock. Two
//! loop devices of one image are two devices, as two hosts' views of one LUN are.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Default run directory.
pub const DEFAULT_RUN_DIR: &str = "/run/mmpd";

/// The run directory: `$MMPD_RUN_DIR` if set and not empty, otherwise `/run/mmpd`.
pub fn run_dir_from_env() -> PathBuf {
    std::env::var_os("MMPD_RUN_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR))
}

/// The key naming the device at `path` (see the module comment).
pub fn device_key(path: &Path) -> io::Result<String> {
    let m = std::fs::metadata(path)?;
    if m.file_type().is_block_device() {
        let dev = m.rdev();
        Ok(format!("blk-{}:{}", libc::major(dev), libc::minor(dev)))
    } else {
        Ok(format!("file-{}-{}", m.dev(), m.ino()))
    }
}

fn lock_path(run_dir: &Path, key: &str) -> PathBuf {
    run_dir.join(format!("{key}.lock"))
}

fn state_path(run_dir: &Path, key: &str) -> PathBuf {
    run_dir.join(format!("{key}.state"))
}

/// Why the device lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{device}: already held by another mmpd on this host{} (lock file {lock})", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Busy {
        device: String,
        lock: PathBuf,
        pid: Option<u32>,
    },
    #[error("{path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The held lock; dropping it (or the process dying) releases it.
#[derive(Debug)]
pub struct HolderLock {
    /// Kept open: the OFD lock lives as long as this open file description.
    _file: File,
    path: PathBuf,
    key: String,
}

impl HolderLock {
    pub fn key(&self) -> &str {
        &self.key
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn whole_file_lock(l_type: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: l_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Take the lock for `device` (the path, for messages) under `run_dir`, creating the directory
/// if needed, and record our pid in it.
pub fn lock_device(run_dir: &Path, device: &Path) -> Result<HolderLock, LockError> {
    let io_err = |path: &Path, op, source| LockError::Io {
        path: path.to_path_buf(),
        op,
        source,
    };
    let key = device_key(device).map_err(|e| io_err(device, "stat", e))?;
    std::fs::create_dir_all(run_dir).map_err(|e| io_err(run_dir, "mkdir", e))?;
    let path = lock_path(run_dir, &key);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| io_err(&path, "open", e))?;
    let fl = whole_file_lock(libc::F_WRLCK);
    match nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_OFD_SETLK(&fl)) {
        Ok(_) => {}
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EACCES) => {
            return Err(LockError::Busy {
                device: device.display().to_string(),
                pid: read_pid(&path),
                lock: path,
            })
        }
        Err(e) => return Err(io_err(&path, "fcntl(F_OFD_SETLK)", e.into())),
    }
    file.set_len(0).map_err(|e| io_err(&path, "truncate", e))?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(|e| io_err(&path, "write", e))?;
    Ok(HolderLock {
        _file: file,
        path,
        key,
    })
}

/// Whether some process on this host holds the lock for `device`, and its pid if known.
/// `Ok(None)`: nobody (or no lock file).
pub fn lock_holder(run_dir: &Path, device: &Path) -> io::Result<Option<Option<u32>>> {
    let key = device_key(device)?;
    let path = lock_path(run_dir, &key);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut fl = whole_file_lock(libc::F_WRLCK);
    nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_OFD_GETLK(&mut fl))
        .map_err(io::Error::from)?;
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(None);
    }
    Ok(Some(read_pid(&path)))
}

/// Where a holder is with a device, as its state file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HolderPhase {
    /// mmpd is claiming the device.
    Claiming,
    /// mmpd won the claim and heartbeats.
    Holding,
    /// mmpd stopped heartbeating and fenced.
    Fenced,
    /// `mmp-tool claim` won a bare claim (its record for `mmp-tool release`).
    Claimed,
}

impl HolderPhase {
    /// The name in the state file (and in JSON).
    pub fn name(self) -> &'static str {
        match self {
            HolderPhase::Claiming => "claiming",
            HolderPhase::Holding => "holding",
            HolderPhase::Fenced => "fenced",
            HolderPhase::Claimed => "claimed",
        }
    }
}

impl std::fmt::Display for HolderPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A state name that is not a [`HolderPhase`].
#[derive(Debug, thiserror::Error)]
#[error("unknown holder state {0:?}")]
pub struct UnknownPhase(String);

impl std::str::FromStr for HolderPhase {
    type Err = UnknownPhase;
    fn from_str(s: &str) -> Result<Self, UnknownPhase> {
        [
            HolderPhase::Claiming,
            HolderPhase::Holding,
            HolderPhase::Fenced,
            HolderPhase::Claimed,
        ]
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| UnknownPhase(s.to_string()))
    }
}

/// What mmpd publishes about a device it holds.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct HolderState {
    pub pid: u32,
    pub device: String,
    /// `None` when the file names none this version knows.
    pub state: Option<HolderPhase>,
    pub node_name: String,
    pub seq: u32,
    /// Wall-clock seconds: when the claim started, and the last update of this file.
    pub since: u64,
    pub updated: u64,
    pub interval_ms: u64,
    pub fail_intervals: u32,
    pub check_interval: u16,
    pub fence: String,
    /// Why it fenced, when it did.
    pub reason: String,
}

impl HolderState {
    /// `name=value` lines.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let clean = |v: &str| v.replace(['\n', '\r'], " ");
        let _ = writeln!(s, "pid={}", self.pid);
        let _ = writeln!(s, "device={}", clean(&self.device));
        let _ = writeln!(s, "state={}", self.state.map_or("", HolderPhase::name));
        let _ = writeln!(s, "node_name={}", clean(&self.node_name));
        let _ = writeln!(s, "seq={:#010x}", self.seq);
        let _ = writeln!(s, "since={}", self.since);
        let _ = writeln!(s, "updated={}", self.updated);
        let _ = writeln!(s, "interval_ms={}", self.interval_ms);
        let _ = writeln!(s, "fail_intervals={}", self.fail_intervals);
        let _ = writeln!(s, "check_interval={}", self.check_interval);
        let _ = writeln!(s, "fence={}", clean(&self.fence));
        let _ = writeln!(s, "reason={}", clean(&self.reason));
        s
    }

    /// Parse what [`HolderState::encode`] wrote. Unknown names are ignored; bad numbers are 0.
    pub fn decode(text: &str) -> Self {
        let mut st = HolderState::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let num = |v: &str| -> u64 {
                match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16).unwrap_or(0),
                    None => v.parse().unwrap_or(0),
                }
            };
            match k {
                "pid" => st.pid = u32::try_from(num(v)).unwrap_or(0),
                "device" => st.device = v.to_string(),
                "state" => st.state = v.parse().ok(),
                "node_name" => st.node_name = v.to_string(),
                "seq" => st.seq = u32::try_from(num(v)).unwrap_or(0),
                "since" => st.since = num(v),
                "updated" => st.updated = num(v),
                "interval_ms" => st.interval_ms = num(v),
                "fail_intervals" => st.fail_intervals = u32::try_from(num(v)).unwrap_or(0),
                "check_interval" => st.check_interval = u16::try_from(num(v)).unwrap_or(0),
                "fence" => st.fence = v.to_string(),
                "reason" => st.reason = v.to_string(),
                _ => {}
            }
        }
        st
    }
}

/// Write the state file for the locked device atomically.
pub fn write_state(run_dir: &Path, lock: &HolderLock, st: &HolderState) -> io::Result<()> {
    let path = state_path(run_dir, &lock.key);
    let tmp = run_dir.join(format!(".{}.state.tmp", lock.key));
    std::fs::write(&tmp, st.encode())?;
    std::fs::rename(&tmp, &path)
}

/// Remove the state file of the locked device.
pub fn remove_state(run_dir: &Path, lock: &HolderLock) -> io::Result<()> {
    match std::fs::remove_file(state_path(run_dir, &lock.key)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The mmpd holding `device` on this host, if any: its lock is held and its state file is
/// readable. A state file without a held lock (a killed mmpd) is ignored.
pub fn local_holder(run_dir: &Path, device: &Path) -> io::Result<Option<HolderState>> {
    if lock_holder(run_dir, device)?.is_none() {
        return Ok(None);
    }
    let key = device_key(device)?;
    match std::fs::read_to_string(state_path(run_dir, &key)) {
        Ok(t) => Ok(Some(HolderState::decode(&t))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_and_garbage() {
        let st = HolderState {
            pid: 42,
            device: "/dev/loop0".into(),
            state: Some(HolderPhase::Holding),
            node_name: "n\n1".into(),
            seq: 0x1234,
            since: 5,
            updated: 6,
            interval_ms: 1000,
            fail_intervals: 5,
            check_interval: 5,
            fence: "exit".into(),
            reason: String::new(),
        };
        let back = HolderState::decode(&st.encode());
        assert_eq!(back.node_name, "n 1");
        assert_eq!(back.seq, 0x1234);
        assert_eq!(back.pid, 42);
        assert_eq!(
            back,
            HolderState {
                node_name: "n 1".into(),
                ..st
            }
        );
        for p in [
            HolderPhase::Claiming,
            HolderPhase::Fenced,
            HolderPhase::Claimed,
        ] {
            assert_eq!(p.name().parse::<HolderPhase>().unwrap(), p);
        }
        let g = HolderState::decode("pid=x\nseq=0xzz\n=\nnoequals\nupdated=99999999999999999999");
        assert_eq!(g.pid, 0);
        assert_eq!(g.updated, 0);
        assert_eq!(HolderState::decode("state=released\n").state, None);
    }

    #[test]
    fn second_lock_on_the_same_device_is_refused_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("img");
        std::fs::write(&img, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&img, &link).unwrap();
        let run = dir.path().join("run");
        assert_eq!(lock_holder(&run, &img).unwrap(), None);
        let l = lock_device(&run, &img).unwrap();
        // Another path to the same file shares the key.
        match lock_device(&run, &link) {
            Err(LockError::Busy { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            r => panic!("{r:?}"),
        }
        assert_eq!(
            lock_holder(&run, &img).unwrap(),
            Some(Some(std::process::id()))
        );
        let st = HolderState {
            pid: 7,
            state: Some(HolderPhase::Holding),
            ..Default::default()
        };
        write_state(&run, &l, &st).unwrap();
        assert_eq!(local_holder(&run, &link).unwrap().unwrap().pid, 7);
        drop(l);
        assert_eq!(lock_holder(&run, &img).unwrap(), None);
        assert_eq!(
            local_holder(&run, &img).unwrap(),
            None,
            "stale state ignored"
        );
        let l = lock_device(&run, &img).unwrap();
        remove_state(&run, &l).unwrap();
        remove_state(&run, &l).unwrap();
    }

    #[test]
    fn block_device_key() {
        if let Ok(k) = device_key(Path::new("/dev/null")) {
            assert!(k.starts_with("file-"), "{k}: /dev/null is a char device");
        }
        if Path::new("/dev/loop0").exists() {
            assert_eq!(device_key(Path::new("/dev/loop0")).unwrap(), "blk-7:0");
        }
    }
}
