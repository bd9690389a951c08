//! The only unsafe code in libmmp: block-device ioctls.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

// `BLKSSZGET` = _IO(0x12, 104): logical sector size, an `int`.
nix::ioctl_read_bad!(blksszget, libc::BLKSSZGET, libc::c_int);
// `BLKGETSIZE64` = _IOR(0x12, 114, size_t): device size in bytes, a `u64`.
nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);

/// Logical sector size of a block device (`ioctl(fd, BLKSSZGET)`).
///
/// # References
/// `include/uapi/linux/fs.h`, `block/ioctl.c` `blkdev_common_ioctl`.
pub fn logical_sector_size(fd: &impl AsRawFd) -> std::io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: `fd` is an open descriptor borrowed for the call; `v` is a valid, writable
    // `c_int` that outlives the call, which is what BLKSSZGET writes.
    unsafe { blksszget(fd.as_raw_fd(), &mut v) }.map_err(std::io::Error::from)?;
    u32::try_from(v)
        .ok()
        .filter(|v| v.is_power_of_two() && *v >= 512)
        .ok_or_else(|| {
            std::io::Error::other(format!("BLKSSZGET returned an impossible sector size {v}"))
        })
}

/// Size of a block device in bytes (`ioctl(fd, BLKGETSIZE64)`).
pub fn device_size(fd: &impl AsRawFd) -> std::io::Result<u64> {
    let mut v: u64 = 0;
    // SAFETY: `fd` is an open descriptor borrowed for the call; `v` is a valid, writable `u64`
    // that outlives the call, which is what BLKGETSIZE64 writes.
    unsafe { blkgetsize64(fd.as_raw_fd(), &mut v) }.map_err(std::io::Error::from)?;
    Ok(v)
}
