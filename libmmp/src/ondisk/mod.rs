//! The on-disk formats, parsed and encoded byte-compatibly with the kernel and e2fsprogs: pure
//! functions over byte slices, no I/O (every parser here has a fuzz target).
//!
//! - [`bytes`]: little-endian reads and writes at an offset; [`crc`]: the kernel's CRC
//!   conventions.
//! - [`superblock`]: `struct ext4_super_block`, one field table for decode and encode.
//! - [`mmp`]: `struct mmp_struct`; [`fence_tag`]: mmpd's self-fence promise in its padding;
//!   [`handoff`]: a planned move's record after it.
//! - [`group_desc`], [`geometry`], [`bitmap`]: the block-group layout that `edit` allocates in.
//! - [`area`]: an MMP area, the MMP block for devices that are not ext4.

pub mod area;
pub mod bitmap;
pub mod bytes;
pub mod crc;
pub mod fence_tag;
pub mod geometry;
pub mod group_desc;
pub mod handoff;
pub mod mmp;
pub mod superblock;
