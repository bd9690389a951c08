//! The block device under a mounted filesystem: from any path on it to the device node, so its
//! superblock can be read (`MmpFs::open_path` with [`crate::io::Access::ReadOnly`]: O_DIRECT,
//! the disk's bytes, not this host's cache).
//!
//! The path's `st_dev` gives major:minor; `/sys/dev/block/MAJ:MIN/uevent` gives the kernel's
//! name for it (`DEVNAME=loop3`, `DEVNAME=dm-0`), and the node is `/dev/DEVNAME` (devtmpfs).
//! sysfs rather than udev's `/dev/block/MAJ:MIN` links: those exist only where udev runs, and
//! containers and initramfs guests often have devtmpfs without udev. A filesystem on no block
//! device (tmpfs, NFS, overlayfs, btrfs' anonymous device numbers) has no such sysfs entry.

use crate::io::dev_major_minor;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why the block device under a path could not be named.
#[derive(Debug, thiserror::Error)]
pub enum BackingError {
    #[error("cannot stat {path}: {source}")]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is on device {major}:{minor}, which is no block device (tmpfs, NFS, overlayfs or btrfs, not a filesystem on a disk)")]
    NotBlock {
        path: PathBuf,
        major: u32,
        minor: u32,
    },
    #[error("cannot read {uevent}: {source}")]
    Uevent {
        uevent: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{uevent} names no DEVNAME")]
    NoDevName { uevent: PathBuf },
}

/// The device node (`/dev/NAME`) of the block device holding the filesystem of `path`.
pub fn block_device_of(path: &Path) -> Result<PathBuf, BackingError> {
    let st_dev = std::fs::metadata(path)
        .map_err(|source| BackingError::Stat {
            path: path.to_path_buf(),
            source,
        })?
        .dev();
    let (major, minor) = dev_major_minor(st_dev);
    let uevent = PathBuf::from(format!("/sys/dev/block/{major}:{minor}/uevent"));
    let text = match std::fs::read_to_string(&uevent) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BackingError::NotBlock {
                path: path.to_path_buf(),
                major,
                minor,
            })
        }
        r => r.map_err(|source| BackingError::Uevent {
            uevent: uevent.clone(),
            source,
        })?,
    };
    let name = devname(&text).ok_or(BackingError::NoDevName { uevent })?;
    Ok(Path::new("/dev").join(name))
}

/// `DEVNAME=` of a sysfs uevent file (`KEY=value` lines); `None` when absent, empty or not a
/// plain relative name.
pub fn devname(uevent: &str) -> Option<&str> {
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .filter(|n| !n.is_empty() && !n.starts_with('/') && !n.split('/').any(|c| c == ".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devname_is_read_from_uevent() {
        let u = "MAJOR=7\nMINOR=3\nDEVNAME=loop3\nDEVTYPE=disk\nDISKSEQ=12\n";
        assert_eq!(devname(u), Some("loop3"));
        assert_eq!(devname("MAJOR=253\nDEVNAME=mapper/x\n"), Some("mapper/x"));
        for bad in [
            "MAJOR=7\n",
            "DEVNAME=\n",
            "DEVNAME=/etc/x\n",
            "DEVNAME=../x\n",
        ] {
            assert_eq!(devname(bad), None, "{bad:?}");
        }
    }

    /// tmpfs has an anonymous device number (major 0): no block device under it.
    #[test]
    fn a_path_on_tmpfs_is_on_no_block_device() {
        let Ok(t) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        match block_device_of(t.path()) {
            Err(BackingError::NotBlock { major: 0, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            block_device_of(&t.path().join("missing")),
            Err(BackingError::Stat { .. })
        ));
    }
}
