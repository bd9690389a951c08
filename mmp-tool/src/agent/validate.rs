//! validate-all, also the first step of start: the mount point, the programs, the kernel's
//! support for the filesystem type, and the device (and area) as they are on this node. Reads
//! only; nothing is written.

use super::params::{Config, Holder, MmpdParams};
use super::{configured, generic, Res};
use libmmp::fs::MmpFs;
use libmmp::io::device::Access;
use libmmp::ocf::{Outcome, Status};
use std::path::Path;
use std::process::{Command, Stdio};

/// Everything start checks before it waits or writes.
pub fn full(cfg: &Config) -> Res {
    if !cfg.directory.is_dir() {
        return Err(configured(format!(
            "directory {} does not exist: create the mount point on every node that may run this resource",
            cfg.directory.display()
        )));
    }
    programs(cfg)?;
    kernel_supports(&cfg.fstype)?;
    match &cfg.holder {
        Holder::Ext4 => ext4_device(&cfg.device),
        Holder::Mmpd(m) => {
            area_device(m)?;
            other_device(&cfg.device, &cfg.fstype)
        }
    }
}

fn installed(reason: String) -> Outcome {
    Outcome::new(Status::ErrInstalled, reason)
}

fn programs(cfg: &Config) -> Res {
    let mut needed = vec!["mount", "umount"];
    if cfg.force_unmount {
        needed.push("fuser");
    }
    if let Some(p) = needed
        .iter()
        .find(|p| libmmp::ocf::find_program(p).is_none())
    {
        return Err(installed(format!(
            "{p} is not installed on this node (util-linux mount, psmisc fuser)"
        )));
    }
    if matches!(cfg.holder, Holder::Mmpd(_)) && super::mmpd::program().is_none() {
        return Err(installed(
            "holder=mmpd: mmpd is not installed on this node (next to mmp-tool or on PATH)"
                .to_string(),
        ));
    }
    Ok(())
}

/// The kernel's name for what mount(8) is asked to mount.
fn kernel_knows(fstype: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().last() == Some(fstype))
    })
}

/// `fstype` in /proc/filesystems, after loading its module if it is not there yet.
fn kernel_supports(fstype: &str) -> Res {
    if kernel_knows(fstype) {
        return Ok(());
    }
    if let Some(modprobe) = libmmp::ocf::find_program("modprobe") {
        let _ = Command::new(modprobe)
            .args(["-q", fstype])
            .stdin(Stdio::null())
            .status();
    }
    if kernel_knows(fstype) {
        return Ok(());
    }
    Err(installed(format!(
        "the kernel on this node does not support fstype {fstype} (not in /proc/filesystems after `modprobe {fstype}`): install its module"
    )))
}

fn exists(path: &Path, what: &str) -> Res {
    if path.exists() {
        return Ok(());
    }
    Err(configured(format!(
        "{what} {} does not exist on this node; nothing was written",
        path.display()
    )))
}

/// How a libmmp error about the device ends the action: a device that is not what the
/// configuration says is OCF_ERR_CONFIGURED, an I/O error is generic.
pub fn device_error(e: libmmp::Error) -> Outcome {
    use libmmp::Error as E;
    match e {
        E::NotExt4 { .. } | E::MmpNotEnabled { .. } => {
            configured(format!("{e}; nothing was written"))
        }
        e => generic(format!("{e}; nothing was written")),
    }
}

/// holder=ext4: an ext4/ldiskfs filesystem (libblkid names what else it is) with MMP.
fn ext4_device(device: &Path) -> Res {
    exists(device, "device")?;
    let fs = MmpFs::open_path(device, Access::ReadOnly).map_err(device_error)?;
    fs.require_mmp().map_err(device_error)?;
    if libmmp::ondisk::area::is_area(fs.superblock()) {
        return Err(configured(format!(
            "{} is an MMP area, not a filesystem: set it as area_device with holder=mmpd, and device to the filesystem it protects",
            device.display()
        )));
    }
    Ok(())
}

/// holder=mmpd: the area exists and is an MMP area.
fn area_device(m: &MmpdParams) -> Res {
    exists(&m.area, "area_device")?;
    let not_area = || {
        configured(format!(
            "area_device {} is not an MMP area: make one with `mmp-tool format-area {}` (on a small device of its own)",
            m.area.display(),
            m.area.display()
        ))
    };
    match MmpFs::open_path(&m.area, Access::ReadOnly) {
        Ok(fs) if libmmp::ondisk::area::is_area(fs.superblock()) => Ok(()),
        Ok(_) | Err(libmmp::Error::NotExt4 { .. }) => Err(not_area()),
        Err(e) => Err(device_error(e)),
    }
}

/// holder=mmpd: the device holds the filesystem type configured, as libblkid sees it (Lustre
/// targets are ldiskfs underneath, so `lustre` is not checked).
fn other_device(device: &Path, fstype: &str) -> Res {
    exists(device, "device")?;
    if fstype == "lustre" {
        return Ok(());
    }
    match libmmp::io::probe::identify(device).describe() {
        Some(t) if t == fstype => Ok(()),
        found => Err(configured(format!(
            "device {} holds {}, not fstype {fstype}; nothing was written",
            device.display(),
            found.map_or("no filesystem libblkid knows".to_string(), |t| t),
        ))),
    }
}
