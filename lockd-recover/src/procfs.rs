//! Kernel knobs for NLM/NFSv4 lock release and grace (`fs/nfsd/nfsctl.c`, `fs/lockd/procfs.c`,
//! `fs/lockd/svc.c`), reached under a configurable proc root so tests run against a fake tree.

use crate::locks::{self, LockEntry};
use serde::Serialize;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

pub const UNLOCK_IP: &str = "fs/nfsd/unlock_ip";
pub const UNLOCK_FS: &str = "fs/nfsd/unlock_filesystem";
pub const NFSD_THREADS: &str = "fs/nfsd/threads";
pub const V4_END_GRACE: &str = "fs/nfsd/v4_end_grace";
pub const V4_GRACE_TIME: &str = "fs/nfsd/nfsv4gracetime";
pub const V4_LEASE_TIME: &str = "fs/nfsd/nfsv4leasetime";
pub const NLM_END_GRACE: &str = "fs/lockd/nlm_end_grace";
pub const NLM_GRACE_PERIOD: &str = "sys/fs/nfs/nlm_grace_period";
pub const NLM_TIMEOUT: &str = "sys/fs/nfs/nlm_timeout";
pub const NSM_LOCAL_STATE: &str = "sys/fs/nfs/nsm_local_state";
pub const OSRELEASE: &str = "sys/kernel/osrelease";
pub const LOCKS: &str = "locks";

/// The first kernel without lockd's SIGKILL handling (NeilBrown, "lockd: remove SIGKILL
/// handling", July 2023, merged for 6.6).
pub const SIGKILL_REMOVED_IN: (u32, u32) = (6, 6);

#[derive(Debug, Error)]
pub enum KnobError {
    #[error("{path} does not exist: {hint}")]
    Missing { path: PathBuf, hint: &'static str },
    #[error("{path}: the kernel refused {value:?} (EBUSY): {hint}")]
    Busy {
        path: PathBuf,
        value: String,
        hint: &'static str,
    },
    #[error("{path}: the kernel rejected {value:?}: {source}")]
    Rejected {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("short write to {path}: {written} of {len} bytes")]
    ShortWrite {
        path: PathBuf,
        written: usize,
        len: usize,
    },
    #[error("{path} holds {text:?}, expected {expected}")]
    Unexpected {
        path: PathBuf,
        text: String,
        expected: &'static str,
    },
    #[error(transparent)]
    Locks(#[from] locks::LocksParseError),
}

fn hint_for(rel: &str) -> &'static str {
    if rel.starts_with("fs/nfsd/") {
        "the nfsd control filesystem is not mounted here (modprobe nfsd; mount -t nfsd nfsd /proc/fs/nfsd), or this kernel lacks the knob"
    } else if rel.starts_with("fs/lockd/") {
        "lockd's procfs needs Linux >= 3.19 with the lockd module loaded (modprobe lockd)"
    } else if rel.starts_with("sys/fs/nfs/") {
        "the lockd sysctls appear once the lockd module is loaded (modprobe lockd)"
    } else {
        "check --proc-root"
    }
}

/// The proc root (`/proc` on a real system).
#[derive(Debug, Clone)]
pub struct ProcRoot {
    root: PathBuf,
}

impl ProcRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is the running system's /proc (and not a test tree).
    pub fn is_real_proc(&self) -> bool {
        fs::canonicalize(&self.root).is_ok_and(|p| p == Path::new("/proc"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    pub fn read(&self, rel: &str) -> Result<String, KnobError> {
        let path = self.path(rel);
        fs::read_to_string(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                KnobError::Missing {
                    path,
                    hint: hint_for(rel),
                }
            } else {
                KnobError::Io {
                    op: "cannot read",
                    path,
                    source: e,
                }
            }
        })
    }

    pub fn read_u64(&self, rel: &str) -> Result<u64, KnobError> {
        let text = self.read(rel)?;
        text.trim().parse().map_err(|_| KnobError::Unexpected {
            path: self.path(rel),
            text,
            expected: "a decimal number",
        })
    }

    /// Writes `value` in one `write()` call, as the nfsd transaction files require (they act on
    /// the first write and need the trailing newline, `write_unlock_ip()`). The file must exist:
    /// proc knobs are never created, so a wrong proc root cannot create stray files.
    pub fn write(&self, rel: &str, value: &str) -> Result<(), KnobError> {
        let path = self.path(rel);
        let mut f = OpenOptions::new().write(true).open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                KnobError::Missing {
                    path: path.clone(),
                    hint: hint_for(rel),
                }
            } else {
                KnobError::Io {
                    op: "cannot open for writing",
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        let n =
            f.write(value.as_bytes())
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EBUSY) => KnobError::Busy {
                        path: path.clone(),
                        value: value.trim_end().to_owned(),
                        hint: "this knob can only be changed while nfsd is stopped (rpc.nfsd 0)",
                    },
                    Some(libc::EINVAL) | Some(libc::EIO) | Some(libc::ENOENT)
                    | Some(libc::ERANGE) => KnobError::Rejected {
                        path: path.clone(),
                        value: value.trim_end().to_owned(),
                        source: e,
                    },
                    _ => KnobError::Io {
                        op: "cannot write",
                        path: path.clone(),
                        source: e,
                    },
                })?;
        if n != value.len() {
            return Err(KnobError::ShortWrite {
                path,
                written: n,
                len: value.len(),
            });
        }
        Ok(())
    }

    /// `/proc/locks`, parsed.
    pub fn locks(&self) -> Result<Vec<LockEntry>, KnobError> {
        Ok(locks::parse(&self.read(LOCKS)?)?)
    }

    /// (major, minor) from `sys/kernel/osrelease` ("6.18.44-..." gives (6, 18)).
    pub fn kernel_version(&self) -> Result<(u32, u32), KnobError> {
        let text = self.read(OSRELEASE)?;
        parse_kernel_version(&text).ok_or_else(|| KnobError::Unexpected {
            path: self.path(OSRELEASE),
            text,
            expected: "a kernel release like 6.1.0-18-amd64",
        })
    }

    /// nfsd thread count; 0 when the nfsd filesystem is mounted but nfsd is stopped.
    pub fn nfsd_threads(&self) -> Result<u64, KnobError> {
        self.read_u64(NFSD_THREADS)
    }
}

pub fn parse_kernel_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.trim().split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor_digits: String = it
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor_digits.parse().ok()?))
}

/// (major, minor) of the filesystem holding `path`.
pub fn fs_dev(path: &Path) -> io::Result<(u32, u32)> {
    Ok(locks::dev_major_minor(fs::metadata(path)?.dev()))
}

// ------------------------------------------------------------------------------------------
// release

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
        let deadline = Instant::now() + settle;
        loop {
            let remaining = locks::held_on_dev(&proc.locks()?, dev);
            if remaining.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(ReleaseError::LocksRemain {
                    method: *methods.last().unwrap_or(&ReleaseMethod::UnlockFs),
                    fs: p.to_path_buf(),
                    dev,
                    remaining,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(report)
}

// ------------------------------------------------------------------------------------------
// grace

#[derive(Debug, Error)]
pub enum GraceError {
    #[error(transparent)]
    Knob(#[from] KnobError),
    #[error("nfsd is running ({threads} threads in {path}): grace and lease times can only be set while nfsd is stopped; set them before starting nfsd (or stop it with rpc.nfsd 0)")]
    NfsdRunning { threads: u64, path: PathBuf },
    #[error("{what} {value} is out of range {min}..={max} ({why})")]
    OutOfRange {
        what: &'static str,
        value: u64,
        min: u64,
        max: u64,
        why: &'static str,
    },
    #[error(
        "neither {nlm} nor {v4} exists: no lock manager to end grace for (is nfsd/lockd loaded?)"
    )]
    NoGraceKnob { nlm: PathBuf, v4: PathBuf },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GraceSettings {
    pub nlm_grace_period: Option<u64>,
    pub v4_grace: Option<u64>,
    pub v4_lease: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraceSetReport {
    pub written: Vec<(PathBuf, String)>,
    /// lockd grace that will apply: `roundup(nlm_grace_period, nlm_timeout)`, or
    /// `5 * nlm_timeout` when the period is 0 (`get_lockd_grace_period()`).
    pub effective_nlm_grace: Option<u64>,
    pub warnings: Vec<String>,
}

fn check_range(
    what: &'static str,
    v: u64,
    min: u64,
    max: u64,
    why: &'static str,
) -> Result<(), GraceError> {
    if v < min || v > max {
        return Err(GraceError::OutOfRange {
            what,
            value: v,
            min,
            max,
            why,
        });
    }
    Ok(())
}

pub fn effective_nlm_grace(period: u64, timeout: u64) -> u64 {
    if period == 0 {
        timeout * 5
    } else if timeout == 0 {
        period
    } else {
        period.div_ceil(timeout) * timeout
    }
}

/// Sets grace/lease times. Refuses while nfsd runs: the v4 knobs return EBUSY then, and
/// setting only the NLM half would leave the two grace periods inconsistent.
pub fn grace_set(proc: &ProcRoot, s: &GraceSettings) -> Result<GraceSetReport, GraceError> {
    if let Some(v) = s.nlm_grace_period {
        check_range(
            "--nlm",
            v,
            0,
            240,
            "nlm_grace_period sysctl limits, fs/lockd/svc.c",
        )?;
    }
    if let Some(v) = s.v4_grace {
        check_range(
            "--v4",
            v,
            10,
            3600,
            "__nfsd4_write_time(), fs/nfsd/nfsctl.c",
        )?;
    }
    if let Some(v) = s.v4_lease {
        check_range(
            "--lease",
            v,
            10,
            3600,
            "__nfsd4_write_time(), fs/nfsd/nfsctl.c",
        )?;
    }
    let mut warnings = Vec::new();
    let needs_nfsd = s.v4_grace.is_some() || s.v4_lease.is_some();
    match proc.nfsd_threads() {
        Ok(0) => {}
        Ok(threads) => {
            return Err(GraceError::NfsdRunning {
                threads,
                path: proc.path(NFSD_THREADS),
            })
        }
        Err(KnobError::Missing { .. }) if !needs_nfsd => {}
        Err(e) => return Err(e.into()),
    }
    let lease = match s.v4_lease {
        Some(l) => Some(l),
        None if s.v4_grace.is_some() => proc.read_u64(V4_LEASE_TIME).ok(),
        None => None,
    };
    if let (Some(g), Some(l)) = (s.v4_grace, lease) {
        if g < l {
            warnings.push(format!(
                "v4 grace {g}s is shorter than the lease {l}s: clients may not notice the restart before grace ends"
            ));
        }
    }
    let mut written = Vec::new();
    // Lease first: nfsd derives other timers from it.
    for (rel, v) in [
        (V4_LEASE_TIME, s.v4_lease),
        (V4_GRACE_TIME, s.v4_grace),
        (NLM_GRACE_PERIOD, s.nlm_grace_period),
    ] {
        if let Some(v) = v {
            let text = format!("{v}\n");
            proc.write(rel, &text)?;
            written.push((proc.path(rel), text));
        }
    }
    let effective_nlm_grace = match s.nlm_grace_period {
        Some(p) => {
            let timeout = proc.read_u64(NLM_TIMEOUT).unwrap_or(10);
            let eff = effective_nlm_grace(p, timeout);
            if eff != p {
                warnings.push(format!(
                    "lockd rounds grace up to a multiple of nlm_timeout ({timeout}s): effective NLM grace is {eff}s"
                ));
            }
            Some(eff)
        }
        None => None,
    };
    Ok(GraceSetReport {
        written,
        effective_nlm_grace,
        warnings,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GraceWhich {
    /// lockd (NLM) grace: /proc/fs/lockd/nlm_end_grace
    Nlm,
    /// NFSv4 grace: /proc/fs/nfsd/v4_end_grace
    V4,
    /// both (grace is shared per network namespace: NLM non-reclaim locks wait for both)
    Both,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraceEndReport {
    pub ended: Vec<PathBuf>,
    pub missing: Vec<PathBuf>,
}

/// Ends grace by writing `Y` to the end-grace knobs that exist. Fails if none exists.
pub fn grace_end(proc: &ProcRoot, which: GraceWhich) -> Result<GraceEndReport, GraceError> {
    let mut rep = GraceEndReport {
        ended: Vec::new(),
        missing: Vec::new(),
    };
    let knobs: &[&str] = match which {
        GraceWhich::Nlm => &[NLM_END_GRACE],
        GraceWhich::V4 => &[V4_END_GRACE],
        GraceWhich::Both => &[NLM_END_GRACE, V4_END_GRACE],
    };
    for rel in knobs {
        match proc.write(rel, "Y\n") {
            Ok(()) => rep.ended.push(proc.path(rel)),
            Err(KnobError::Missing { path, .. }) => rep.missing.push(path),
            Err(e) => return Err(e.into()),
        }
    }
    if rep.ended.is_empty() {
        return Err(GraceError::NoGraceKnob {
            nlm: proc.path(NLM_END_GRACE),
            v4: proc.path(V4_END_GRACE),
        });
    }
    Ok(rep)
}

#[derive(Debug, Clone, Serialize)]
pub struct GraceStatus {
    /// `Y` when lockd's grace has ended (the knob reads `Y`/`N`).
    pub nlm_end_grace: Option<String>,
    pub v4_end_grace: Option<String>,
    pub nlm_grace_period: Option<u64>,
    pub nlm_timeout: Option<u64>,
    pub v4_grace: Option<u64>,
    pub v4_lease: Option<u64>,
    pub nfsd_threads: Option<u64>,
}

pub fn grace_status(proc: &ProcRoot) -> GraceStatus {
    let s = |rel| proc.read(rel).ok().map(|t| t.trim().to_owned());
    let n = |rel| proc.read_u64(rel).ok();
    GraceStatus {
        nlm_end_grace: s(NLM_END_GRACE),
        v4_end_grace: s(V4_END_GRACE),
        nlm_grace_period: n(NLM_GRACE_PERIOD),
        nlm_timeout: n(NLM_TIMEOUT),
        v4_grace: n(V4_GRACE_TIME),
        v4_lease: n(V4_LEASE_TIME),
        nfsd_threads: n(NFSD_THREADS),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fake proc tree with the knobs as empty files (like transaction files) and the given
    /// locks text.
    pub(crate) fn fake_proc(
        osrelease: &str,
        threads: Option<u64>,
        locks: &str,
    ) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for d in ["fs/nfsd", "fs/lockd", "sys/fs/nfs", "sys/kernel"] {
            fs::create_dir_all(t.path().join(d)).unwrap();
        }
        for f in [
            UNLOCK_IP,
            UNLOCK_FS,
            V4_END_GRACE,
            V4_GRACE_TIME,
            NLM_END_GRACE,
            NLM_GRACE_PERIOD,
        ] {
            fs::write(t.path().join(f), "").unwrap();
        }
        fs::write(t.path().join(V4_LEASE_TIME), "").unwrap();
        fs::write(t.path().join(NLM_TIMEOUT), "10\n").unwrap();
        fs::write(t.path().join(OSRELEASE), osrelease).unwrap();
        if let Some(n) = threads {
            fs::write(t.path().join(NFSD_THREADS), format!("{n}\n")).unwrap();
        }
        fs::write(t.path().join(LOCKS), locks).unwrap();
        t
    }

    fn read(t: &tempfile::TempDir, rel: &str) -> String {
        fs::read_to_string(t.path().join(rel)).unwrap()
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v669\n"), Some((6, 18)));
        assert_eq!(parse_kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel_version("5.15"), Some((5, 15)));
        assert_eq!(parse_kernel_version("6.6-rc1"), Some((6, 6)));
        assert_eq!(parse_kernel_version("garbage"), None);
    }

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

    #[test]
    fn grace_set_writes_knobs_when_nfsd_is_stopped() {
        let t = fake_proc("6.18.0\n", Some(0), "");
        let p = ProcRoot::new(t.path());
        let r = grace_set(
            &p,
            &GraceSettings {
                nlm_grace_period: Some(15),
                v4_grace: Some(15),
                v4_lease: Some(10),
            },
        )
        .unwrap();
        assert_eq!(read(&t, NLM_GRACE_PERIOD), "15\n");
        assert_eq!(read(&t, V4_GRACE_TIME), "15\n");
        assert_eq!(read(&t, V4_LEASE_TIME), "10\n");
        assert_eq!(r.effective_nlm_grace, Some(20), "rounded up to nlm_timeout");
        assert_eq!(r.warnings.len(), 1);
    }

    #[test]
    fn grace_set_is_refused_while_nfsd_runs() {
        let t = fake_proc("6.18.0\n", Some(8), "");
        let p = ProcRoot::new(t.path());
        let e = grace_set(
            &p,
            &GraceSettings {
                nlm_grace_period: Some(15),
                v4_grace: Some(15),
                v4_lease: None,
            },
        )
        .unwrap_err();
        assert!(matches!(e, GraceError::NfsdRunning { threads: 8, .. }));
        assert!(e.to_string().contains("while nfsd is stopped"));
        assert_eq!(read(&t, NLM_GRACE_PERIOD), "", "nothing written");
        assert_eq!(read(&t, V4_GRACE_TIME), "");
    }

    #[test]
    fn grace_set_range_checks() {
        let t = fake_proc("6.18.0\n", Some(0), "");
        let p = ProcRoot::new(t.path());
        for s in [
            GraceSettings {
                nlm_grace_period: Some(241),
                ..Default::default()
            },
            GraceSettings {
                v4_grace: Some(9),
                ..Default::default()
            },
            GraceSettings {
                v4_lease: Some(3601),
                ..Default::default()
            },
        ] {
            assert!(matches!(
                grace_set(&p, &s),
                Err(GraceError::OutOfRange { .. })
            ));
        }
        assert_eq!(read(&t, NLM_GRACE_PERIOD), "");
    }

    #[test]
    fn grace_end_writes_y_to_both_knobs() {
        let t = fake_proc("6.18.0\n", Some(8), "");
        let p = ProcRoot::new(t.path());
        let r = grace_end(&p, GraceWhich::Both).unwrap();
        assert_eq!(r.ended.len(), 2);
        assert_eq!(read(&t, NLM_END_GRACE), "Y\n");
        assert_eq!(read(&t, V4_END_GRACE), "Y\n");
    }

    #[test]
    fn grace_end_with_only_lockd_and_with_nothing() {
        let t = fake_proc("6.18.0\n", None, "");
        fs::remove_file(t.path().join(V4_END_GRACE)).unwrap();
        let p = ProcRoot::new(t.path());
        let r = grace_end(&p, GraceWhich::Both).unwrap();
        assert_eq!((r.ended.len(), r.missing.len()), (1, 1));
        fs::remove_file(t.path().join(NLM_END_GRACE)).unwrap();
        assert!(matches!(
            grace_end(&p, GraceWhich::Both),
            Err(GraceError::NoGraceKnob { .. })
        ));
    }

    #[test]
    fn effective_grace_matches_get_lockd_grace_period() {
        assert_eq!(effective_nlm_grace(0, 10), 50);
        assert_eq!(effective_nlm_grace(15, 10), 20);
        assert_eq!(effective_nlm_grace(30, 10), 30);
    }
}
