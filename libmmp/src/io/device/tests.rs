//! Device tests: aligned buffers, typed open errors, sync groups of image files.

use super::*;
use crate::io::MemDevice;

#[test]
fn aligned_buffer_is_aligned() {
    for align in [512usize, 4096] {
        let b = AlignedBuf::new(1024, align);
        assert_eq!(b.as_slice().as_ptr() as usize % align, 0);
        assert_eq!(b.as_slice().len(), 1024);
    }
}

#[test]
fn file_device_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Device::open(&dir.path().join("nope"), Access::ReadOnly),
        Err(OpenError::NotFound { .. })
    ));
    assert!(matches!(
        Device::open(dir.path(), Access::ReadOnly),
        Err(OpenError::IsDirectory { .. })
    ));
    assert!(matches!(
        Device::open(Path::new("/dev/null"), Access::ReadOnly),
        Err(OpenError::NotADevice { .. })
    ));
    let f = dir.path().join("img");
    std::fs::write(&f, vec![7u8; 2048]).unwrap();
    let d = Device::open(&f, Access::ReadOnly).unwrap();
    assert_eq!(d.size(), 2048);
    let mut b = [0u8; 4];
    d.read_at(2044, &mut b).unwrap();
    assert_eq!(b, [7; 4]);
    let err = d.read_at(2046, &mut b).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(
        d.sync_group(),
        None,
        "read-only: never written, never synced"
    );
}

#[test]
fn kernel_versions() {
    assert_eq!(kernel_at_least("6.18.44-fc-v669", (5, 8)), Some(true));
    assert_eq!(kernel_at_least("5.8.0", (5, 8)), Some(true));
    assert_eq!(kernel_at_least("5.7.19-1-amd64", (5, 8)), Some(false));
    assert_eq!(kernel_at_least("4.19.0\n", (5, 8)), Some(false));
    assert_eq!(kernel_at_least("junk", (5, 8)), None);
}

#[test]
fn image_files_on_one_filesystem_share_a_sync_group() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&a, vec![0u8; 4096]).unwrap();
    std::fs::write(&b, vec![0u8; 4096]).unwrap();
    let da = Device::open(&a, Access::ReadWrite).unwrap();
    let db = Device::open(&b, Access::ReadWrite).unwrap();
    let ty = nix::sys::statfs::fstatfs(da.file())
        .unwrap()
        .filesystem_type();
    let trusted = syncfs_reports_errors()
        && [
            nix::sys::statfs::EXT4_SUPER_MAGIC,
            nix::sys::statfs::XFS_SUPER_MAGIC,
            nix::sys::statfs::BTRFS_SUPER_MAGIC,
            nix::sys::statfs::TMPFS_MAGIC,
        ]
        .contains(&ty);
    let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&a).unwrap());
    let want = trusted.then_some(dev);
    assert_eq!(da.sync_group(), want);
    assert_eq!(db.sync_group(), want);
    da.write_at(0, &[1, 2, 3]).unwrap();
    db.write_at(0, &[4, 5, 6]).unwrap();
    da.sync_filesystem().unwrap();
    assert_eq!(MemDevice::new("m", vec![0; 16]).sync_group(), None);
}
