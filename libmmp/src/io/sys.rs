//! The only unsafe code in libmmp: block-device and watchdog ioctls.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

// `BLKSSZGET` = _IO(0x12, 104): logical sector size, an `int`.
nix::ioctl_read_bad!(blksszget, libc::BLKSSZGET, libc::c_int);
// `BLKGETSIZE64` = _IOR(0x12, 114, size_t): device size in bytes, a `u64`.
nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
// `WDIOC_SETTIMEOUT` = _IOWR('W', 6, int), `WDIOC_GETTIMEOUT` = _IOR('W', 7, int)
// (`include/uapi/linux/watchdog.h`).
nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, libc::c_int);

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

/// Ask a watchdog device for a timeout in seconds (`WDIOC_SETTIMEOUT`); the driver may round it,
/// so this returns the timeout it set.
pub fn watchdog_set_timeout(fd: &impl AsRawFd, secs: i32) -> std::io::Result<i32> {
    let mut v: libc::c_int = secs;
    // SAFETY: `fd` is an open descriptor borrowed for the call; `v` is a valid, readable and
    // writable `c_int` that outlives the call, which is what WDIOC_SETTIMEOUT reads and writes.
    unsafe { wdioc_settimeout(fd.as_raw_fd(), &mut v) }.map_err(std::io::Error::from)?;
    Ok(v)
}

/// A watchdog device's timeout in seconds (`WDIOC_GETTIMEOUT`).
pub fn watchdog_get_timeout(fd: &impl AsRawFd) -> std::io::Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: `fd` is an open descriptor borrowed for the call; `v` is a valid, writable
    // `c_int` that outlives the call, which is what WDIOC_GETTIMEOUT writes.
    unsafe { wdioc_gettimeout(fd.as_raw_fd(), &mut v) }.map_err(std::io::Error::from)?;
    Ok(v)
}
