//! libmmp: ext4/ldiskfs multiple-mount protection (MMP).
//!
//! - [`superblock`] and [`mmp`]: the on-disk formats, parsed and encoded byte-compatibly with
//!   the kernel and e2fsprogs (pure functions over byte slices; fuzzed).
//! - [`device`]: the one I/O trait, with block devices (O_DIRECT), image files and memory.
//! - [`fs`]: a filesystem seen through its superblock and MMP block.
//! - [`check`]: the read side of the protocol (is it safe to mount?), with an injected clock.
//! - [`probe`]: what libblkid sees on a device.
//! - [`layout`]: block groups (descriptors, bitmaps, backup locations), to allocate the MMP block.
//! - [`edit`]: enable, disable, interval and clear on an unmounted filesystem.
//! - [`busy`]: whether this host uses a device (mounts, loop devices, holders).

pub mod area;
pub mod busy;
pub mod check;
pub mod claim;
pub mod crc;
pub mod device;
pub mod edit;
pub mod error;
pub mod fs;
pub mod heartbeat;
pub mod holder;
pub mod layout;
pub mod mmp;
pub mod probe;
pub mod superblock;
mod sys;
pub mod watchdog;
pub mod write;

pub use error::Error;
