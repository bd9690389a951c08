//! What both agents check: their parameters' forms, and that this node has an NFS server
//! (the kernel's nfsd and lockd, rpc.statd).

use libmmp::ocf::{Env, Outcome, Status};
use lockd_recover::knobs::{ProcRoot, NFSD_THREADS, NLM_GRACE_PERIOD};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where rpc.statd is looked for besides $PATH (Pacemaker's PATH may lack the sbin dirs).
/// An absolute path parameter (required or not).
pub fn abs_path(env: &Env, name: &str) -> Result<Option<PathBuf>, Outcome> {
    let Some(v) = env.param(name) else {
        return Ok(None);
    };
    let p = PathBuf::from(v);
    if !p.is_absolute() {
        return Err(Outcome::new(
            Status::ErrConfigured,
            format!("parameter {name}={v:?} must be an absolute path"),
        ));
    }
    Ok(Some(p))
}

pub fn required_path(env: &Env, name: &str) -> Result<PathBuf, Outcome> {
    env.required(name)?;
    Ok(abs_path(env, name)?.unwrap_or_default())
}

/// A number of seconds within `range`, `default` when not given.
pub fn seconds(
    env: &Env,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> Result<Duration, Outcome> {
    Ok(Duration::from_secs(
        env.integer(name, range)?.unwrap_or(default),
    ))
}

/// Whether the kernel knows the nfsd filesystem (`/proc/filesystems`). The directory
/// /proc/fs/nfsd alone proves nothing: some kernels show it without nfsd.
fn kernel_has_nfsd(proc: &ProcRoot) -> bool {
    proc.read("filesystems").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().last() == Some("nfsd"))
    })
}

/// The kernel's nfsd (loaded with `modprobe nfsd` if need be, which also loads lockd) and
/// rpc.statd; OCF_ERR_INSTALLED naming what is missing.
pub fn installed(proc: &ProcRoot) -> Result<(), Outcome> {
    if !kernel_has_nfsd(proc) && proc.is_real_proc() {
        let _ = Command::new("modprobe")
            .arg("nfsd")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if !kernel_has_nfsd(proc) {
        return Err(Outcome::new(
            Status::ErrInstalled,
            format!("this kernel has no NFS server: no nfsd in {} after modprobe nfsd; install a kernel with nfsd (CONFIG_NFSD) on this node", proc.path("filesystems").display()),
        ));
    }
    if !proc.exists(NLM_GRACE_PERIOD) {
        return Err(Outcome::new(
            Status::ErrInstalled,
            format!(
                "lockd is not loaded: {} is missing (modprobe lockd)",
                proc.path(NLM_GRACE_PERIOD).display()
            ),
        ));
    }
    if libmmp::ocf::find_program("rpc.statd").is_none() {
        return Err(Outcome::new(
            Status::ErrInstalled,
            "rpc.statd not found in $PATH or /usr/sbin: install nfs-common (NFSv3 locking needs statd)",
        ));
    }
    Ok(())
}

/// Mounts the nfsd control filesystem on /proc/fs/nfsd if it is not (the grace and lease knobs
/// live there; nfs-server.service's proc-fs-nfsd.mount would do it later, too late for them).
/// Only on the real /proc.
pub fn mount_nfsd_fs(proc: &ProcRoot) -> Result<(), Outcome> {
    if proc.exists(NFSD_THREADS) || !proc.is_real_proc() {
        return Ok(());
    }
    let dir = Path::new("/proc/fs/nfsd");
    nix::mount::mount(
        Some("nfsd"),
        dir,
        Some("nfsd"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| {
        Outcome::new(
            Status::ErrGeneric,
            format!("cannot mount the nfsd filesystem on {}: {e}", dir.display()),
        )
    })
}

/// Whether nfsd serves (threads > 0); false also when the nfsd filesystem is not mounted.
pub fn nfsd_running(proc: &ProcRoot) -> bool {
    proc.nfsd_threads().is_ok_and(|n| n > 0)
}
