//! stop: unmount (killing users if force_unmount), then release. Idempotent, and it never
//! writes to a device it has not mounted: a stop after a refused start (the device in use on
//! another node) finds nothing mounted here and returns 0 (a failed stop gets the node
//! fenced).
//!
//! holder=ext4: the kernel's unmount writes CLEAN (kmmpd stops). holder=mmpd: after the
//! unmount, SIGTERM makes mmpd write CLEAN and exit; never before, so the area is held for as
//! long as the filesystem is mounted, here or in any other mount namespace of this node.

use super::mounts::{self, MountState};
use super::params::{Config, Holder};
use super::{generic, mmpd, Budget, Res};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

pub fn stop(cfg: &Config, budget: &Budget) -> Res {
    match mounts::state(cfg)? {
        MountState::Here => {
            tracing::info!(
                "unmounting {} from {}",
                cfg.device.display(),
                cfg.directory.display()
            );
            mounts::unmount(cfg, budget)?;
        }
        MountState::NotMounted => {}
        // Not ours to touch: our resource is not mounted here (but mmpd must not let go of
        // an area whose filesystem is mounted).
        MountState::Other(why) => {
            tracing::info!("not mounted here ({why}); leaving it alone");
            return match &cfg.holder {
                Holder::Mmpd(m) if mmpd::running(m) => Err(generic(format!(
                    "{why}: not releasing {} while it may be in use",
                    m.area.display()
                ))),
                _ => Ok(()),
            };
        }
    }
    released(cfg)?;
    match &cfg.holder {
        Holder::Ext4 => Ok(()),
        Holder::Mmpd(m) => mmpd::stop(m, budget),
    }
}

/// The filesystem is mounted nowhere on this node. A copy of the mount in another mount
/// namespace (a process that unshared while it was mounted) keeps it mounted, and its MMP held
/// (kmmpd writing, or the area needed), after our unmount: no other node may mount it then, so
/// the stop has failed (and mmpd keeps the area). Only local mounts count: a block written by
/// another node after a refused start is not ours to judge.
fn released(cfg: &Config) -> Res {
    let holders = other_namespaces(&cfg.device);
    if holders.is_empty() {
        return Ok(());
    }
    Err(generic(format!(
        "{} is not mounted on {} here, but still mounted in another mount namespace on this node ({}): no other node can safely mount it; end those processes or unmount it there (nsenter -t PID -m umount MOUNTPOINT)",
        cfg.device.display(),
        cfg.directory.display(),
        holders.join(", ")
    )))
}

/// `pid N (comm)` of up to 5 processes whose mount namespace has the block device mounted.
fn other_namespaces(device: &std::path::Path) -> Vec<String> {
    let Ok(m) = std::fs::metadata(device) else {
        return Vec::new();
    };
    if !m.file_type().is_block_device() {
        return Vec::new();
    }
    let (major, minor) = (libc::major(m.rdev()), libc::minor(m.rdev()));
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path().join("mountinfo")) else {
            continue;
        };
        let has = libmmp::host::busy::parse_mountinfo(&text)
            .iter()
            .any(|e| (e.major, e.minor) == (major, minor));
        if has {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            pids.push(format!("pid {pid} ({})", comm.trim()));
            if pids.len() == 5 {
                break;
            }
        }
    }
    pids
}
