//! Releasing NLM locks on the old server and checking /proc/locks that none remain
//! (`write_unlock_ip()`, `write_unlock_fs()` in `fs/nfsd/nfsctl.c`).

use crate::knobs::{fs_dev, KnobError, ProcRoot, UNLOCK_FS, UNLOCK_IP};
use crate::locks::{self, LockEntry};
use serde::Serialize;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The first kernel without lockd's SIGKILL handling (NeilBrown, "lockd: remove SIGKILL
/// handling", July 2023, merged for 6.6).
pub const SIGKILL_REMOVED_IN: (u32, u32) = (6, 6);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseMethod {
    /// Write the floating IP to /proc/fs/nfsd/unlock_ip (NLM locks taken through that IP).
    UnlockIp,
    /// Write the path to /proc/fs/nfsd/unlock_filesystem (all NLM locks on the superblock, and
    /// NFSv4 state on Linux >= 6.8).
    UnlockFs,
    /// SIGKILL the lockd kernel thread: drops every NLM lock and restarts grace. Only on
    /// kernels older than 6.6, where lockd still handles the signal.
    SignalLockd,
}

#[derive(Debug, Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Knob(#[from] KnobError),
    #[error("signal-lockd refused: this kernel is {0}.{1}; lockd's SIGKILL handling was removed in Linux 6.6 (\"lockd: remove SIGKILL handling\"), so the signal would neither drop locks nor restart grace. Use --method unlock-fs (and unlock-ip)")]
    SignalOnNewKernel(u32, u32),
    #[error("signal-lockd needs the running system's /proc, not {0}")]
    SignalNeedsRealProc(PathBuf),
    #[error("no lockd kernel thread found under {0} (is lockd running on this node?)")]
    NoLockdThread(PathBuf),
    #[error("cannot signal lockd thread {pid}: {source}")]
    Signal {
        pid: i32,
        #[source]
        source: nix::Error,
    },
    #[error("cannot stat {path} to find its filesystem: {source}")]
    StatFs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{method:?} needs {what}")]
    MissingArgument {
        method: ReleaseMethod,
        what: &'static str,
    },
    #[error("{} lock(s) remain on {} after {method:?} (device {}:{}); the release did not take effect — do not hand the filesystem to another node yet. Remaining: {}", remaining.len(), fs.display(), dev.0, dev.1, describe(remaining))]
    LocksRemain {
        method: ReleaseMethod,
        fs: PathBuf,
        dev: (u32, u32),
        remaining: Vec<LockEntry>,
    },
}

fn describe(v: &[LockEntry]) -> String {
    v.iter()
        .take(10)
        .map(|l| {
            format!(
                "[pid {} inode {} {} {}-{}]",
                l.pid,
                l.ino,
                l.access,
                l.start,
                l.end.map_or("EOF".into(), |e| e.to_string())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseReport {
    pub methods: Vec<ReleaseMethod>,
    /// (knob path, value written).
    pub written: Vec<(PathBuf, String)>,
    pub signalled_pid: Option<i32>,
    /// Filesystem checked in /proc/locks, if any.
    pub verified_fs: Option<PathBuf>,
    pub remaining: Vec<LockEntry>,
}

/// Refuses signal-lockd on kernels where it is a no-op.
pub fn check_signal_allowed(version: (u32, u32)) -> Result<(), ReleaseError> {
    if version >= SIGKILL_REMOVED_IN {
        return Err(ReleaseError::SignalOnNewKernel(version.0, version.1));
    }
    Ok(())
}

/// Finds the `lockd` kernel thread: `Name: lockd` with parent kthreadd (pid 2).
fn find_lockd_thread(proc: &ProcRoot) -> Result<i32, ReleaseError> {
    let dir = fs::read_dir(proc.root()).map_err(|e| KnobError::Io {
        op: "cannot list",
        path: proc.root().to_path_buf(),
        source: e,
    })?;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
        };
        if field("Name:").as_deref() == Some("lockd") && field("PPid:").as_deref() == Some("2") {
            return Ok(pid);
        }
    }
    Err(ReleaseError::NoLockdThread(proc.root().to_path_buf()))
}

/// Polls /proc/locks until no lock on device `dev` remains, for up to `settle`.
fn wait_until_released(
    proc: &ProcRoot,
    fs_path: &Path,
    dev: (u32, u32),
    methods: &[ReleaseMethod],
    settle: Duration,
) -> Result<(), ReleaseError> {
    let deadline = Instant::now() + settle;
    loop {
        let remaining = locks::held_on_dev(&proc.locks()?, dev);
        if remaining.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ReleaseError::LocksRemain {
                method: *methods.last().unwrap_or(&ReleaseMethod::UnlockFs),
                fs: fs_path.to_path_buf(),
                dev,
                remaining,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Releases locks on the old server and verifies in /proc/locks that none remain on `fs`.
/// Locks are polled for up to `settle` before failing, since lockd may drop them
/// asynchronously.
pub fn release(
    proc: &ProcRoot,
    ip: Option<IpAddr>,
    fs_path: Option<&Path>,
    methods: &[ReleaseMethod],
    settle: Duration,
) -> Result<ReleaseReport, ReleaseError> {
    let mut report = ReleaseReport {
        methods: methods.to_vec(),
        written: Vec::new(),
        signalled_pid: None,
        verified_fs: None,
        remaining: Vec::new(),
    };
    // Resolve the device before releasing, so a bad path fails before anything is written.
    let dev = match fs_path {
        Some(p) => Some(fs_dev(p).map_err(|source| ReleaseError::StatFs {
            path: p.to_path_buf(),
            source,
        })?),
        None => None,
    };
    for &m in methods {
        match m {
            ReleaseMethod::UnlockIp => {
                let ip = ip.ok_or(ReleaseError::MissingArgument {
                    method: m,
                    what: "--ip",
                })?;
                let v = format!("{ip}\n");
                proc.write(UNLOCK_IP, &v)?;
                report.written.push((proc.path(UNLOCK_IP), v));
            }
            ReleaseMethod::UnlockFs => {
                let p = fs_path.ok_or(ReleaseError::MissingArgument {
                    method: m,
                    what: "--fs",
                })?;
                let abs = fs::canonicalize(p).map_err(|source| ReleaseError::StatFs {
                    path: p.to_path_buf(),
                    source,
                })?;
                let v = format!("{}\n", abs.display());
                proc.write(UNLOCK_FS, &v)?;
                report.written.push((proc.path(UNLOCK_FS), v));
            }
            ReleaseMethod::SignalLockd => {
                check_signal_allowed(proc.kernel_version()?)?;
                if !proc.is_real_proc() {
                    return Err(ReleaseError::SignalNeedsRealProc(proc.root().to_path_buf()));
                }
                let pid = find_lockd_thread(proc)?;
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .map_err(|source| ReleaseError::Signal { pid, source })?;
                report.signalled_pid = Some(pid);
            }
        }
    }
    if let (Some(p), Some(dev)) = (fs_path, dev) {
        report.verified_fs = Some(p.to_path_buf());
        wait_until_released(proc, p, dev, methods, settle)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knobs::tests::{fake_proc, read};

    #[test]
    fn signal_lockd_is_refused_from_6_6() {
        assert!(check_signal_allowed((6, 5)).is_ok());
        assert!(check_signal_allowed((5, 10)).is_ok());
        for v in [(6, 6), (6, 18), (7, 0)] {
            let e = check_signal_allowed(v).unwrap_err();
            assert!(e.to_string().contains("removed in Linux 6.6"), "{e}");
        }
        let t = fake_proc("6.8.0\n", Some(8), "");
        let p = ProcRoot::new(t.path());
        let e = release(
            &p,
            None,
            None,
            &[ReleaseMethod::SignalLockd],
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(matches!(e, ReleaseError::SignalOnNewKernel(6, 8)));
    }

    #[test]
    fn signal_lockd_on_old_kernel_never_signals_through_a_fake_proc() {
        let t = fake_proc("6.1.0-18-amd64\n", Some(8), "");
        let p = ProcRoot::new(t.path());
        let e = release(
            &p,
            None,
            None,
            &[ReleaseMethod::SignalLockd],
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(matches!(e, ReleaseError::SignalNeedsRealProc(_)), "{e}");
    }

    #[test]
    fn unlock_ip_writes_the_address_with_newline() {
        let t = fake_proc("6.18.0\n", Some(8), "");
        let p = ProcRoot::new(t.path());
        let r = release(
            &p,
            Some("192.0.2.10".parse().unwrap()),
            None,
            &[ReleaseMethod::UnlockIp],
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(read(&t, UNLOCK_IP), "192.0.2.10\n");
        assert_eq!(r.written.len(), 1);
        assert!(r.verified_fs.is_none());
    }

    #[test]
    fn unlock_fs_writes_the_absolute_path_and_verifies() {
        let exp = tempfile::tempdir().unwrap();
        let (maj, min) = fs_dev(exp.path()).unwrap();
        // A lock on another device must not count.
        let other = format!(
            "1: POSIX  ADVISORY  WRITE 7 {:02x}:{:02x}:5 0 EOF\n",
            maj + 1,
            min
        );
        let t = fake_proc("6.18.0\n", Some(8), &other);
        let p = ProcRoot::new(t.path());
        let r = release(
            &p,
            None,
            Some(exp.path()),
            &[ReleaseMethod::UnlockFs],
            Duration::ZERO,
        )
        .unwrap();
        let abs = fs::canonicalize(exp.path()).unwrap();
        assert_eq!(read(&t, UNLOCK_FS), format!("{}\n", abs.display()));
        assert_eq!(r.verified_fs.as_deref(), Some(exp.path()));
    }

    #[test]
    fn remaining_locks_fail_loudly() {
        let exp = tempfile::tempdir().unwrap();
        let (maj, min) = fs_dev(exp.path()).unwrap();
        let held = format!(
            "1: POSIX  ADVISORY  WRITE 4242 {maj:02x}:{min:02x}:99 0 EOF\n2: -> POSIX  ADVISORY  WRITE 4243 {maj:02x}:{min:02x}:99 0 EOF\n"
        );
        let t = fake_proc("6.18.0\n", Some(8), &held);
        let p = ProcRoot::new(t.path());
        // unlock_ip "succeeds" (the 2026 report: it may match nothing) but the lock is still there.
        let e = release(
            &p,
            Some("192.0.2.10".parse().unwrap()),
            Some(exp.path()),
            &[ReleaseMethod::UnlockIp],
            Duration::from_millis(250),
        )
        .unwrap_err();
        match &e {
            ReleaseError::LocksRemain { remaining, .. } => {
                assert_eq!(remaining.len(), 1);
                assert_eq!(remaining[0].pid, 4242);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(e.to_string().contains("pid 4242"));
    }

    #[test]
    fn missing_knob_names_the_path_and_what_to_do() {
        let t = tempfile::tempdir().unwrap();
        let p = ProcRoot::new(t.path());
        let e = release(
            &p,
            Some("192.0.2.1".parse().unwrap()),
            None,
            &[ReleaseMethod::UnlockIp],
            Duration::ZERO,
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("fs/nfsd/unlock_ip") && s.contains("mount -t nfsd"),
            "{s}"
        );
        assert!(!t.path().join(UNLOCK_IP).exists(), "nothing is created");
    }
}
