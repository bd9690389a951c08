//! The on-disk formats, parsed and encoded byte-compatibly with the kernel and e2fsprogs: pure
//! functions over byte slices, no I/O (every parser here has a fuzz target).

pub mod area;
pub mod bitmap;
pub mod bytes;
pub mod crc;
pub mod fence_tag;
pub mod geometry;
pub mod group_desc;
pub mod layout;
pub mod mmp;
pub mod superblock;
