//! The block-group layout, as `edit` sees it: group descriptors, geometry, bitmaps and backup
//! superblocks. Each lives in its own module now ([`super::group_desc`], [`super::geometry`],
//! [`super::bitmap`], [`super::superblock`]); this module re-exports them so callers keep one
//! `use` path while `edit` is restructured.

pub use super::bitmap::{clear_bit, count_zeros, first_zero, set_bit, test_bit};
pub use super::geometry::{unsupported_features, Geometry, LayoutError};
pub use super::group_desc::{
    group_desc_csum, valid_desc_size, DescCsum, DescError, GroupDesc, GroupTable,
    EXT2_BG_BLOCK_UNINIT, EXT2_BG_INODE_UNINIT, EXT2_BG_INODE_ZEROED, EXT2_MAX_DESC_SIZE,
    EXT2_MIN_DESC_SIZE, EXT2_MIN_DESC_SIZE_64BIT,
};
pub use super::superblock::{backup_superblock, superblock_state, EXT2_ERROR_FS, EXT2_VALID_FS};
