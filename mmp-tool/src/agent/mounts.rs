//! Is the device mounted on our directory here, mounting it (holder=mmpd; holder=ext4 mounts
//! through `mmp-tool mount`), and unmounting it, killing its users if asked.

use super::params::Config;
use super::{generic, Budget, Res};
use libmmp::host::busy::{self, LocalUse};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Where this node stands with the resource's mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    /// The device is mounted on the directory.
    Here,
    /// Neither the device nor the directory is in use.
    NotMounted,
    /// The device is in use in another way, or something else is mounted on the directory:
    /// why, in one line.
    Other(String),
}

fn mountinfo() -> Res<Vec<busy::MountEntry>> {
    busy::read_mountinfo().map_err(|e| generic(format!("cannot read /proc/self/mountinfo: {e}")))
}

/// Find out, from /proc/self/mountinfo and the device's users. A device that does not exist
/// here is not mounted here (a probe on a node that cannot see it says NOT_RUNNING).
pub fn state(cfg: &Config) -> Res<MountState> {
    // A missing directory has nothing mounted on it; mountinfo shows canonical paths.
    let Ok(dir) = std::fs::canonicalize(&cfg.directory) else {
        return Ok(MountState::NotMounted);
    };
    let on_dir: Vec<busy::MountEntry> = mountinfo()?
        .into_iter()
        .filter(|m| m.mount_point == dir)
        .collect();
    let users = if cfg.device.exists() {
        busy::local_users(&cfg.device).map_err(|e| {
            generic(format!(
                "cannot tell whether {} is in use here: {e}",
                cfg.device.display()
            ))
        })?
    } else {
        Vec::new()
    };
    let here =
        |u: &LocalUse| matches!(u, LocalUse::Mounted { mount_point, .. } if *mount_point == dir);
    if users.iter().any(here) {
        return Ok(MountState::Here);
    }
    let dev = cfg.device.display();
    if let Some(m) = on_dir.last() {
        return Ok(MountState::Other(format!(
            "{} has {} ({}) mounted on it, not {dev}",
            dir.display(),
            m.source,
            m.fs_type
        )));
    }
    // An image file is attached to a loop device to be mounted: only its mounts count then.
    let mounted = users.iter().any(|u| matches!(u, LocalUse::Mounted { .. }));
    let other = users
        .iter()
        .find(|u| mounted == matches!(u, LocalUse::Mounted { .. }));
    Ok(match other {
        Some(u) => MountState::Other(format!("{dev} is {u} on this node: {}", u.next_step())),
        None => MountState::NotMounted,
    })
}

/// `mount -t FSTYPE [-o OPTIONS] DEVICE DIRECTORY`.
pub fn mount(cfg: &Config) -> Res {
    let mut cmd = Command::new("mount");
    cmd.arg("-t").arg(&cfg.fstype);
    if let Some(o) = &cfg.options {
        cmd.arg("-o").arg(o);
    }
    cmd.arg(&cfg.device).arg(&cfg.directory);
    let out = cmd
        .output()
        .map_err(|e| generic(format!("cannot run mount(8): {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(generic(format!(
        "mount of {} on {} failed ({}): {}",
        cfg.device.display(),
        cfg.directory.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// The signal for the users of the mount point before umount try `attempt` (0-based): none
/// first, then SIGTERM twice, then SIGKILL (Filesystem's force_unmount does the same).
fn signal_before(attempt: u32) -> Option<&'static str> {
    match attempt {
        0 => None,
        1 | 2 => Some("TERM"),
        _ => Some("KILL"),
    }
}

const UMOUNT_TRIES_WITHOUT_FORCE: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Unmount the directory until it no longer holds the device, within the budget; with
/// force_unmount, kill its users between tries.
pub fn unmount(cfg: &Config, budget: &Budget) -> Res {
    let dir = std::fs::canonicalize(&cfg.directory).unwrap_or_else(|_| cfg.directory.clone());
    let mut last_err = String::new();
    for attempt in 0.. {
        if cfg.force_unmount {
            if let Some(sig) = signal_before(attempt) {
                kill_users(&dir, sig);
            }
        }
        match Command::new("umount").arg(&dir).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => last_err = String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => last_err = format!("cannot run umount(8): {e}"),
        }
        if state(cfg)? != MountState::Here {
            return Ok(());
        }
        let out_of_tries = !cfg.force_unmount && attempt + 1 >= UMOUNT_TRIES_WITHOUT_FORCE;
        if out_of_tries || !budget.fits(RETRY_PAUSE * 2) || attempt >= 60 {
            break;
        }
        tracing::info!("unmount of {} failed: {last_err}; retrying", dir.display());
        std::thread::sleep(RETRY_PAUSE);
    }
    Err(generic(format!(
        "cannot unmount {} from {}: {last_err}{}",
        cfg.device.display(),
        dir.display(),
        if cfg.force_unmount {
            " (its users were killed)"
        } else {
            " (force_unmount=false: stop what uses it)"
        }
    )))
}

/// `fuser -k -SIG -m DIR`: signal every process using the filesystem mounted on `dir`.
fn kill_users(dir: &Path, sig: &str) {
    tracing::info!("sending SIG{sig} to the processes using {}", dir.display());
    let out = Command::new("fuser")
        .args(["-k", &format!("-{sig}"), "-m"])
        .arg(dir)
        .output();
    if let Ok(o) = out {
        let pids = String::from_utf8_lossy(&o.stdout);
        if !pids.trim().is_empty() {
            tracing::info!("signalled: {}", pids.trim());
        }
    }
}
