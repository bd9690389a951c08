//! Opening a device path as a filesystem, with one answer for every binary when it is not
//! ext4: what libblkid sees there instead ("libblkid sees xfs").
//!
//! [`MmpFs::open`] reads the superblock through any [`crate::io::device::BlockIo`] and only
//! knows "no ext2/3/4 magic"; naming what the device holds needs its path (libblkid probes
//! by path), so it is done here, once, for mmp-tool, mmpd and the edits.

use crate::error::Error;
use crate::fs::MmpFs;
use crate::io::device::{Access, Device};
use crate::io::probe;
use std::path::Path;

/// Open `path` (O_DIRECT on block devices) and read its superblock. When it holds no ext4
/// superblock, the error names what libblkid sees there ([`explain_not_ext4`]).
pub fn open_fs(path: &Path, access: Access) -> Result<MmpFs<Device>, Error> {
    let dev = Device::open(path, access)?;
    MmpFs::open(dev).map_err(|e| explain_not_ext4(path, e))
}

/// Add to an [`Error::NotExt4`] for `path` what libblkid sees there instead; any other error
/// is returned as it is. Probing is read-only and only improves the message: it never decides
/// whether a device is safe.
pub fn explain_not_ext4(path: &Path, e: Error) -> Error {
    match e {
        Error::NotExt4 { device, .. } => Error::NotExt4 {
            device,
            found: found_instead(path),
        },
        other => other,
    }
}

/// What libblkid sees on `path`, in words: its `TYPE` (xfs, swap, LVM2_member, ...), or that
/// several signatures conflict; `None` when it recognises nothing.
pub fn found_instead(path: &Path) -> Option<String> {
    let id = probe::identify(path);
    match (id.fs_type, id.ambivalent) {
        (Some(t), _) => Some(t),
        (None, true) => Some("several conflicting signatures".to_string()),
        (None, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_zeros_is_not_ext4_and_nothing_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("zeros.img");
        std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
        match open_fs(&img, Access::ReadOnly) {
            Err(Error::NotExt4 { found, .. }) => assert_eq!(found, None),
            r => panic!("{:?}", r.map(|_| ())),
        }
    }

    #[test]
    fn a_missing_path_is_an_open_error() {
        let r = open_fs(Path::new("/nonexistent/mmp-open-test"), Access::ReadOnly);
        assert!(matches!(r, Err(Error::Open(_))), "{:?}", r.map(|_| ()));
    }
}
