//! Device I/O: the one [`BlockIo`] trait, with its block-device and image-file implementation
//! ([`device`], `O_DIRECT` on block devices) and its in-memory one ([`mem`]); libblkid's view of
//! a device ([`probe`]); the watchdog ioctls. All of libmmp's `unsafe` code lives in the private
//! `sys` module.

pub mod device;
pub mod mem;
pub mod probe;
mod sys;
pub mod watchdog;

pub use device::{Access, Device, DeviceKind, OpenError};
pub use mem::MemDevice;
use std::io;

/// All device I/O in this toolkit goes through this trait.
pub trait BlockIo {
    /// Read exactly `buf.len()` bytes at `offset`. A read past the end is `UnexpectedEof`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Write all of `buf` at `offset`.
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Make previous writes durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
    /// The filesystem whose [`BlockIo::sync_filesystem`] makes this device's writes durable
    /// together with those of every other device of the same group (its `st_dev`), or `None`
    /// when only [`BlockIo::sync`] does (block devices, memory, filesystems we do not trust to
    /// report write-back errors through `syncfs`). See [`Device::open`].
    fn sync_group(&self) -> Option<u64> {
        None
    }
    /// Make previous writes to every file of this device's filesystem durable (`syncfs`), for
    /// devices with a [`BlockIo::sync_group`]; the others [`BlockIo::sync`].
    fn sync_filesystem(&self) -> io::Result<()> {
        self.sync()
    }
    /// Size in bytes.
    fn size(&self) -> u64;
    /// The unit of direct I/O (sector size for block devices, 512 for files and memory).
    fn logical_block_size(&self) -> u32;
    /// A name for messages: the path the user gave.
    fn name(&self) -> &str;
}

impl<T: BlockIo + ?Sized> BlockIo for &T {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        (**self).sync()
    }
    fn sync_group(&self) -> Option<u64> {
        (**self).sync_group()
    }
    fn sync_filesystem(&self) -> io::Result<()> {
        (**self).sync_filesystem()
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn logical_block_size(&self) -> u32 {
        (**self).logical_block_size()
    }
    fn name(&self) -> &str {
        (**self).name()
    }
}

/// The error of a read past the end of a device: `UnexpectedEof`, which callers turn into
/// "truncated".
pub(crate) fn eof(name: &str, offset: u64, len: usize, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "{name}: read of {len} bytes at offset {offset} is past the end (size {size} bytes)"
        ),
    )
}

/// The (major, minor) numbers of a device number (`st_dev`, `st_rdev`), as glibc's
/// `major()`/`minor()` split it: one place for the bit layout of `dev_t`.
pub fn dev_major_minor(dev: u64) -> (u32, u32) {
    (libc::major(dev), libc::minor(dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_minor_split_like_glibc() {
        assert_eq!(dev_major_minor(0x0802), (8, 2));
        assert_eq!(dev_major_minor(0x10305), (0x103, 5));
        assert_eq!(dev_major_minor(0x1a), (0, 0x1a));
        // Large numbers: minor bits 8..20 at 20.., major bits 12.. at 44...
        assert_eq!(
            dev_major_minor((0x123 << 44) | (0x456 << 20) | (0xabc << 8) | 0xde),
            (0x123abc, 0x456de)
        );
    }
}
