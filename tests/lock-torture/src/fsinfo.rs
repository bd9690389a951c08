//! Which filesystem a directory is on, for the reports (`statfs(2)` f_type).

use std::path::Path;

/// The filesystem type of `path` by name ("tmpfs", "ext2/3/4", "nfs", ...), or its magic number
/// in hex when unknown.
pub fn fs_type_name(path: &Path) -> String {
    match nix::sys::statfs::statfs(path) {
        Ok(st) => magic_name(st.filesystem_type().0 as u64),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Names for the magic numbers in `include/uapi/linux/magic.h`.
pub fn magic_name(magic: u64) -> String {
    match magic {
        0x0102_1994 => "tmpfs".into(),
        0xEF53 => "ext2/3/4".into(),
        0x6969 => "nfs".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x6573_5546 => "fuse".into(),
        0x794C_7630 => "overlayfs".into(),
        0x0102_1997 => "9p".into(),
        0xFF53_4D42 => "cifs".into(),
        0xFE53_4D42 => "smb2".into(),
        0x0027_E0EB => "cgroup".into(),
        0x00C3_6400 => "ceph".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x4750_4653 => "gpfs".into(),
        0x0BD0_0BD0 => "lustre".into(),
        0x0000_4244 => "hfs".into(),
        0x5346_544E => "ntfs".into(),
        0x4d44 => "vfat".into(),
        0x2011_BAB0 => "exfat".into(),
        0xF2F5_2010 => "f2fs".into(),
        other => format!("{other:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(magic_name(0xEF53), "ext2/3/4");
        assert_eq!(magic_name(0x6969), "nfs");
        assert_eq!(magic_name(0x1234), "0x1234");
        assert!(!fs_type_name(Path::new("/")).is_empty());
    }
}
