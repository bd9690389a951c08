//! Block-group geometry: how many groups, where each starts, which hold backup superblocks and
//! descriptor tables (`ext2fs_bg_has_super` and `ext2fs_super_and_bgd_loc2`, `closefs.c`), and
//! which features this toolkit can allocate and free blocks under.
//!
//! Everything here is pure: bytes in, values out, so it is tested in memory and fuzzed.

use crate::ondisk::group_desc::{
    valid_desc_size, DescCsum, EXT2_MIN_DESC_SIZE, EXT2_MIN_DESC_SIZE_64BIT,
};
use crate::ondisk::superblock::{
    feature, Superblock, S_BACKUP_BGS_0, S_BACKUP_BGS_1, S_RESERVED_GDT_BLOCKS,
};

/// INCOMPAT bits this module understands well enough to allocate and free blocks (they change
/// files, directories or the journal, not the block-group layout). `RECOVER` is known but is
/// refused by the caller for its own reason.
const KNOWN_INCOMPAT: u32 = 0x0002 // filetype
    | feature::INCOMPAT_RECOVER
    | 0x0040 // extents
    | feature::INCOMPAT_64BIT
    | feature::INCOMPAT_MMP
    | feature::INCOMPAT_FLEX_BG
    | 0x0400 // ea_inode
    | 0x1000 // dirdata
    | feature::INCOMPAT_CSUM_SEED
    | 0x4000 // largedir
    | 0x8000 // inline_data
    | 0x1_0000 // encrypt
    | 0x2_0000; // casefold

/// RO_COMPAT bits likewise understood.
const KNOWN_RO_COMPAT: u32 = 0x0001 // sparse_super
    | 0x0002 // large_file
    | 0x0008 // huge_file
    | feature::RO_COMPAT_GDT_CSUM
    | 0x0020 // dir_nlink
    | 0x0040 // extra_isize
    | 0x0100 // quota
    | feature::RO_COMPAT_METADATA_CSUM
    | 0x1000 // readonly
    | 0x2000 // project
    | 0x4000 // shared_blocks
    | 0x8000 // verity
    | 0x1_0000; // orphan_present

const INCOMPAT_COMPRESSION: u32 = 0x0001;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
/// Why the block-group layout cannot be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("it uses features this tool does not edit: {}", features.join(", "))]
    Unsupported { features: Vec<String> },
    #[error("impossible blocks per group {s_blocks_per_group} for {block_size}-byte blocks")]
    BadBlocksPerGroup {
        s_blocks_per_group: u32,
        block_size: u32,
    },
    #[error(
        "first data block {s_first_data_block} does not match the {block_size}-byte block size"
    )]
    BadFirstDataBlock {
        s_first_data_block: u32,
        block_size: u32,
    },
    #[error("cluster size (s_log_cluster_size {s_log_cluster_size}) differs from the block size without bigalloc")]
    BadClusterSize { s_log_cluster_size: u32 },
    #[error("unsupported group descriptor size {s_desc_size}")]
    BadDescSize { s_desc_size: u16 },
    #[error(
        "impossible inode geometry ({s_inodes_per_group} inodes per group of {inode_size} bytes)"
    )]
    BadInodes {
        s_inodes_per_group: u32,
        inode_size: u32,
    },
    #[error("{s_reserved_gdt_blocks} reserved GDT blocks is more than a block can address")]
    BadReservedGdt { s_reserved_gdt_blocks: u16 },
    #[error("the group descriptor table ({desc_blocks} blocks) does not fit in the filesystem")]
    GdtTooLarge { desc_blocks: u64 },
}

/// Names of the features in `sb` that this module does not handle (empty: supported).
pub fn unsupported_features(sb: &Superblock) -> Vec<String> {
    let mut out = Vec::new();
    let incompat = sb.s_feature_incompat;
    let ro = sb.s_feature_ro_compat;
    if incompat & feature::INCOMPAT_JOURNAL_DEV != 0 {
        out.push("journal_dev (this is an external journal device, not a filesystem)".to_string());
    }
    if incompat & feature::INCOMPAT_META_BG != 0 {
        out.push("meta_bg".to_string());
    }
    if incompat & INCOMPAT_COMPRESSION != 0 {
        out.push("compression".to_string());
    }
    let unknown = incompat
        & !(KNOWN_INCOMPAT
            | feature::INCOMPAT_JOURNAL_DEV
            | feature::INCOMPAT_META_BG
            | INCOMPAT_COMPRESSION);
    if unknown != 0 {
        out.push(format!("unknown incompat feature bits {unknown:#x}"));
    }
    if ro & feature::RO_COMPAT_BIGALLOC != 0 {
        out.push("bigalloc".to_string());
    }
    let unknown = ro & !(KNOWN_RO_COMPAT | feature::RO_COMPAT_BIGALLOC);
    if unknown != 0 {
        out.push(format!("unknown ro_compat feature bits {unknown:#x}"));
    }
    out
}

/// The block-group geometry of a filesystem, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: u32,
    pub first_data_block: u64,
    pub blocks_count: u64,
    pub blocks_per_group: u32,
    pub group_count: u32,
    pub desc_size: usize,
    /// Blocks of the descriptor table (`fs->desc_blocks`), without the reserved GDT blocks.
    pub desc_blocks: u64,
    pub reserved_gdt_blocks: u32,
    pub inode_blocks_per_group: u32,
    pub sparse_super: bool,
    /// `s_backup_bgs` when COMPAT `sparse_super2` is set.
    pub sparse_super2: Option<[u32; 2]>,
    pub desc_csum: DescCsum,
    /// The seed of block bitmap checksums (metadata_csum only).
    pub bitmap_csum_seed: Option<u32>,
}

impl Geometry {
    /// Validate the superblock's geometry and features for block allocation.
    pub fn from_superblock(sb: &Superblock) -> Result<Self, LayoutError> {
        let features = unsupported_features(sb);
        if !features.is_empty() {
            return Err(LayoutError::Unsupported { features });
        }
        let block_size = sb.block_size();
        if sb.s_log_cluster_size != sb.s_log_block_size {
            return Err(LayoutError::BadClusterSize {
                s_log_cluster_size: sb.s_log_cluster_size,
            });
        }
        let expected_fdb = u32::from(block_size == 1024);
        if sb.s_first_data_block != expected_fdb {
            return Err(LayoutError::BadFirstDataBlock {
                s_first_data_block: sb.s_first_data_block,
                block_size,
            });
        }
        let bpg = sb.s_blocks_per_group;
        if bpg < 8 || bpg % 8 != 0 || bpg > 8 * block_size {
            return Err(LayoutError::BadBlocksPerGroup {
                s_blocks_per_group: bpg,
                block_size,
            });
        }
        let desc_size = desc_size(sb)?;
        let first_data_block = u64::from(sb.s_first_data_block);
        let data_blocks = sb.blocks_count - first_data_block; // parse() ensured fdb < count
        let group_count = u32::try_from(data_blocks.div_ceil(u64::from(bpg))).map_err(|_| {
            LayoutError::GdtTooLarge {
                desc_blocks: u64::MAX,
            }
        })?;
        let desc_per_block = u64::from(block_size) / desc_size as u64;
        let desc_blocks = u64::from(group_count).div_ceil(desc_per_block);
        if first_data_block + 1 + desc_blocks > sb.blocks_count {
            return Err(LayoutError::GdtTooLarge { desc_blocks });
        }
        let raw = &sb.raw[..];
        let s_reserved_gdt_blocks = S_RESERVED_GDT_BLOCKS.get(raw);
        if u32::from(s_reserved_gdt_blocks) > block_size / 4 {
            return Err(LayoutError::BadReservedGdt {
                s_reserved_gdt_blocks,
            });
        }
        let inode_blocks_per_group = inode_blocks_per_group(sb)?;
        let sparse_super2 = (sb.s_feature_compat & feature::COMPAT_SPARSE_SUPER2 != 0)
            .then(|| [S_BACKUP_BGS_0.get(raw), S_BACKUP_BGS_1.get(raw)]);
        Ok(Geometry {
            block_size,
            first_data_block,
            blocks_count: sb.blocks_count,
            blocks_per_group: bpg,
            group_count,
            desc_size,
            desc_blocks,
            reserved_gdt_blocks: u32::from(s_reserved_gdt_blocks),
            inode_blocks_per_group,
            sparse_super: sb.s_feature_ro_compat & RO_COMPAT_SPARSE_SUPER != 0,
            sparse_super2,
            desc_csum: DescCsum::of(sb),
            bitmap_csum_seed: sb.has_metadata_csum().then(|| sb.csum_seed()),
        })
    }

    /// First block of group `g` (`ext2fs_group_first_block2`).
    pub fn group_first_block(&self, g: u32) -> u64 {
        self.first_data_block + u64::from(g) * u64::from(self.blocks_per_group)
    }

    /// Blocks in group `g`: `blocks_per_group`, less in the last group.
    pub fn group_blocks(&self, g: u32) -> u32 {
        if g + 1 == self.group_count {
            (self.blocks_count - self.group_first_block(g)) as u32
        } else {
            self.blocks_per_group
        }
    }

    /// The group holding `block` (which must be a data-area block).
    pub fn group_of(&self, block: u64) -> u32 {
        ((block - self.first_data_block) / u64::from(self.blocks_per_group)) as u32
    }

    /// `ext2fs_bg_has_super`: whether group `g` holds a superblock (and descriptor table) copy.
    pub fn has_super(&self, g: u32) -> bool {
        if g == 0 {
            return true;
        }
        if let Some(bgs) = self.sparse_super2 {
            return g == bgs[0] || g == bgs[1];
        }
        if g <= 1 || !self.sparse_super {
            return true;
        }
        if g % 2 == 0 {
            return false;
        }
        [3u32, 5, 7].iter().any(|&base| is_power_of(g, base))
    }

    /// Groups other than 0 that hold a backup superblock and descriptor table, ascending.
    pub fn backup_groups(&self) -> Vec<u32> {
        if let Some(bgs) = self.sparse_super2 {
            let mut v: Vec<u32> = bgs
                .iter()
                .copied()
                .filter(|&g| g != 0 && g < self.group_count)
                .collect();
            v.sort_unstable();
            v.dedup();
            return v;
        }
        (1..self.group_count)
            .filter(|&g| self.has_super(g))
            .collect()
    }

    /// Byte offset of group `g`'s superblock copy: 1024 for the primary, else the start of the
    /// group's first block (`write_backup_super` writes at `group_block`).
    pub fn superblock_offset(&self, g: u32) -> u64 {
        if g == 0 {
            crate::ondisk::superblock::SUPERBLOCK_OFFSET
        } else {
            self.group_first_block(g) * u64::from(self.block_size)
        }
    }

    /// First block of group `g`'s descriptor table copy (the block after its superblock).
    pub fn gdt_block(&self, g: u32) -> u64 {
        self.group_first_block(g) + 1
    }

    /// Size of the descriptor table in bytes.
    pub fn gdt_bytes(&self) -> usize {
        (self.desc_blocks * u64::from(self.block_size)) as usize
    }
}

/// `s_desc_size` validated: 32 without INCOMPAT_64BIT, else a supported size of at least 64
/// bytes that fits in a block.
fn desc_size(sb: &Superblock) -> Result<usize, LayoutError> {
    if !sb.is_64bit() {
        return Ok(EXT2_MIN_DESC_SIZE);
    }
    let s = usize::from(sb.s_desc_size);
    if s < EXT2_MIN_DESC_SIZE_64BIT || !valid_desc_size(s) || s > sb.block_size() as usize {
        return Err(LayoutError::BadDescSize {
            s_desc_size: sb.s_desc_size,
        });
    }
    Ok(s)
}

/// Blocks of one group's inode table, after checking the inode size (128 in revision 0) and
/// the inodes per group against the block size and the group.
fn inode_blocks_per_group(sb: &Superblock) -> Result<u32, LayoutError> {
    let block_size = sb.block_size();
    let inode_size = if sb.s_rev_level == 0 {
        128
    } else {
        u32::from(sb.s_inode_size)
    };
    let ipg = sb.s_inodes_per_group;
    let bad_inodes = LayoutError::BadInodes {
        s_inodes_per_group: ipg,
        inode_size,
    };
    if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
        return Err(bad_inodes);
    }
    if ipg == 0 || ipg > 8 * block_size {
        return Err(bad_inodes);
    }
    let blocks = (u64::from(ipg) * u64::from(inode_size)).div_ceil(u64::from(block_size)) as u32;
    if blocks > sb.s_blocks_per_group {
        return Err(bad_inodes);
    }
    Ok(blocks)
}

fn is_power_of(mut n: u32, base: u32) -> bool {
    // ext2fs `test_root`: n is base^k for some k >= 1.
    while n > 1 && n % base == 0 {
        n /= base;
    }
    n == 1
}

#[cfg(test)]
pub(crate) mod tests;
