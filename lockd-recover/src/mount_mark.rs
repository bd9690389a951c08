//! Which read-write mount of a filesystem this is: its UUID, the kernel's mount count
//! (`s_mnt_count`) and the time of the last e2fsck (`s_lastcheck`), read from the superblock on
//! the disk. A final ledger carries the mark of
//! the mount it was taken on; the takeover trusts it whatever its age only on the very next
//! read-write mount (see [`crate::ledger::check_age`]).
//!
//! The kernel adds one to `s_mnt_count` at every read-write mount (and ro->rw remount) and
//! writes the superblock at once (`fs/ext4/super.c` `ext4_setup_super` -> `ext4_commit_super`),
//! so the count on the disk is that of the mount in force, on whichever node. Read-only mounts
//! do not count (nor run MMP): a server that exported the filesystem read-only in between, and
//! granted read locks, is not seen. e2fsck resets the count to 0 and sets `s_lastcheck` to its own
//! time (`e2fsck/unix.c`): without `s_lastcheck` in the mark, a count reset and counted up
//! again could land on exactly the next value after other mounts. `tune2fs -C`/`-T` set them
//! by hand.

use libmmp::fs::MmpFs;
use libmmp::host::backing::{self, BackingError};
use libmmp::io::Access;
use libmmp::ondisk::superblock::Superblock;
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

/// A read-write mount of a filesystem: its UUID, the mount count of that mount and when
/// e2fsck last reset the count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountMark {
    pub uuid: String,
    pub mount_count: u16,
    /// `s_lastcheck` (seconds, low 32 bits).
    pub last_check: u32,
}

/// Why the mark of a mounted filesystem could not be read.
#[derive(Debug, Error)]
pub enum MarkError {
    #[error(transparent)]
    Device(#[from] BackingError),
    #[error(transparent)]
    Superblock(#[from] libmmp::Error),
}

/// Why a final ledger's mark does not make it the previous mount's (the age check applies).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NotNext {
    #[error("the filesystem here is {current}, the ledger's was {recorded}")]
    OtherFilesystem { recorded: String, current: String },
    #[error("e2fsck checked the filesystem since (s_lastcheck {recorded} -> {current}), which restarted its mount count")]
    Checked { recorded: u32, current: u32 },
    #[error("this is the same mount it was written on (mount count {count})")]
    SameMount { count: u16 },
    #[error("the filesystem was mounted read-write {mounts} times since (mount count {recorded} -> {current})")]
    Mounts {
        mounts: u16,
        recorded: u16,
        current: u16,
    },
}

impl MountMark {
    pub fn of(sb: &Superblock) -> MountMark {
        MountMark {
            uuid: sb.uuid_string(),
            mount_count: sb.s_mnt_count,
            last_check: sb.s_lastcheck,
        }
    }

    /// The mark of the filesystem mounted at (any path on) `path`, read from its block device
    /// (O_DIRECT, read-only).
    pub fn read(path: &Path) -> Result<MountMark, MarkError> {
        let dev = backing::block_device_of(path)?;
        let fs = MmpFs::open_path(&dev, Access::ReadOnly)?;
        Ok(MountMark::of(fs.superblock()))
    }

    /// Ok when `self` (the mount in force) is the read-write mount right after `recorded`:
    /// the same filesystem, not checked by e2fsck since, mount count one more (modulo 2^16, as
    /// the kernel's le16 wraps).
    pub fn is_next_after(&self, recorded: &MountMark) -> Result<(), NotNext> {
        if self.uuid != recorded.uuid {
            return Err(NotNext::OtherFilesystem {
                recorded: recorded.uuid.clone(),
                current: self.uuid.clone(),
            });
        }
        if self.last_check != recorded.last_check {
            return Err(NotNext::Checked {
                recorded: recorded.last_check,
                current: self.last_check,
            });
        }
        match self.mount_count.wrapping_sub(recorded.mount_count) {
            1 => Ok(()),
            0 => Err(NotNext::SameMount {
                count: self.mount_count,
            }),
            mounts => Err(NotNext::Mounts {
                mounts,
                recorded: recorded.mount_count,
                current: self.mount_count,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(uuid: &str, mount_count: u16) -> MountMark {
        MountMark {
            uuid: uuid.into(),
            mount_count,
            last_check: 1_700_000_000,
        }
    }

    #[test]
    fn only_the_next_mount_of_the_same_filesystem_follows() {
        assert_eq!(m("a", 8).is_next_after(&m("a", 7)), Ok(()));
        assert_eq!(m("a", 0).is_next_after(&m("a", u16::MAX)), Ok(()), "wraps");
        assert_eq!(
            m("a", 7).is_next_after(&m("a", 7)),
            Err(NotNext::SameMount { count: 7 })
        );
        let e = m("a", 9).is_next_after(&m("a", 7)).unwrap_err();
        assert!(
            e.to_string().contains("mounted read-write 2 times since"),
            "{e}"
        );
        // e2fsck reset the count: "65530 times" is still a refusal, never a match.
        assert!(matches!(
            m("a", 1).is_next_after(&m("a", 7)),
            Err(NotNext::Mounts { mounts: 65530, .. })
        ));
        assert!(matches!(
            m("b", 8).is_next_after(&m("a", 7)),
            Err(NotNext::OtherFilesystem { .. })
        ));
        // e2fsck reset the count and mounts brought it back to the next value.
        let checked = MountMark {
            last_check: 1_700_000_100,
            ..m("a", 8)
        };
        assert!(matches!(
            checked.is_next_after(&m("a", 7)),
            Err(NotNext::Checked { .. })
        ));
    }

    #[test]
    fn a_path_on_no_block_device_has_no_mark() {
        let Ok(t) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        let e = MountMark::read(t.path()).unwrap_err();
        assert!(
            matches!(e, MarkError::Device(BackingError::NotBlock { .. })),
            "{e}"
        );
    }
}
