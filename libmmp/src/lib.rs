//! libmmp: ext4/ldiskfs multiple-mount protection (MMP).
//!
//! The layers, from the bytes up (ARCHITECTURE.md at the top of the repository is the map):
//!
//! - [`ondisk`]: the on-disk formats (superblock, MMP block, group descriptors and bitmaps, MMP
//!   areas, checksums), parsed and encoded byte-compatibly with the kernel and e2fsprogs.
//! - [`io`]: the one I/O trait, with block devices (O_DIRECT), image files and memory; libblkid's
//!   view of a device; the watchdog ioctls.
//! - [`fs`]: a filesystem seen through its superblock and MMP block: reading both, writing the
//!   MMP block; `MmpFs::open_path` opens a path as one, naming what it holds when it is not ext4.
//! - [`protocol`]: the check (is it safe to mount?), the claim and the heartbeat, with an
//!   injected clock.
//! - [`edit`]: enable, disable, interval and clear on an unmounted filesystem.
//! - [`host`]: whether this host uses a device, and mmpd's holder state in its run directory.
//! - [`ocf`]: what our Pacemaker resource agents share (exit codes, environment, meta-data,
//!   worker processes).

pub mod edit;
pub mod error;
pub mod fs;
pub mod host;
pub mod io;
pub mod ocf;
pub mod ondisk;
pub mod protocol;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::Error;
