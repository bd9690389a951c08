//! Block groups: group descriptors, block bitmaps, and where the backup superblocks and
//! descriptor tables live. This is what `enable` and `disable` need to allocate or free one
//! block exactly as libext2fs does:
//!
//! - descriptor layout and checksums: `struct ext4_group_desc` (`lib/ext2fs/ext2_fs.h`,
//!   `fs/ext4/ext4.h`), `ext2fs_group_desc_csum` (`lib/ext2fs/csum.c`), `ext4_group_desc_csum`
//!   (`fs/ext4/super.c`);
//! - block bitmap checksums: `ext2fs_block_bitmap_csum_set` (csum.c), over
//!   `EXT2_CLUSTERS_PER_GROUP / 8` bytes;
//! - bitmaps of `BLOCK_UNINIT` groups: `mark_uninit_bg_group_blocks` (`rw_bitmaps.c`) and
//!   `ext2fs_reserve_super_and_bgd` (`alloc_sb.c`), `ext4_init_block_bitmap` (`fs/ext4/balloc.c`);
//! - backup locations: `ext2fs_bg_has_super` and `ext2fs_super_and_bgd_loc2` (`closefs.c`).
//!
//! Everything here is pure: bytes in, values out, so it is tested in memory and fuzzed.

use crate::ondisk::crc::{crc16, raw_crc32c};
use crate::ondisk::superblock::{feature, superblock_csum, Superblock, SUPERBLOCK_SIZE};

// `struct ext4_group_desc` offsets. The `_hi` halves exist only in descriptors of 64 bytes or
// more (INCOMPAT_64BIT with `s_desc_size` >= 64).
const BG_BLOCK_BITMAP_LO: usize = 0x00;
const BG_INODE_BITMAP_LO: usize = 0x04;
const BG_INODE_TABLE_LO: usize = 0x08;
const BG_FREE_BLOCKS_COUNT_LO: usize = 0x0C;
const BG_FREE_INODES_COUNT_LO: usize = 0x0E;
const BG_FLAGS: usize = 0x12;
const BG_BLOCK_BITMAP_CSUM_LO: usize = 0x18;
const BG_CHECKSUM: usize = 0x1E;
const BG_BLOCK_BITMAP_HI: usize = 0x20;
const BG_INODE_BITMAP_HI: usize = 0x24;
const BG_INODE_TABLE_HI: usize = 0x28;
const BG_FREE_BLOCKS_COUNT_HI: usize = 0x2C;
const BG_FREE_INODES_COUNT_HI: usize = 0x2E;
const BG_BLOCK_BITMAP_CSUM_HI: usize = 0x38;

// Superblock fields that only this module needs (offsets as in `superblock.rs`).
const S_STATE: usize = 0x03A;
const S_BLOCK_GROUP_NR: usize = 0x05A;
const S_RESERVED_GDT_BLOCKS: usize = 0x0CE;
const S_BACKUP_BGS: usize = 0x24C;

/// `EXT2_BG_INODE_UNINIT`: inode bitmap not initialised.
pub const EXT2_BG_INODE_UNINIT: u16 = 0x0001;
/// `EXT2_BG_BLOCK_UNINIT`: block bitmap not initialised; only the group's metadata is in use.
pub const EXT2_BG_BLOCK_UNINIT: u16 = 0x0002;
/// `EXT2_BG_INODE_ZEROED`: inode table zeroed.
pub const EXT2_BG_INODE_ZEROED: u16 = 0x0004;

/// `EXT2_MIN_DESC_SIZE`: descriptors without INCOMPAT_64BIT.
pub const EXT2_MIN_DESC_SIZE: usize = 32;
/// `EXT2_MIN_DESC_SIZE_64BIT`.
pub const EXT2_MIN_DESC_SIZE_64BIT: usize = 64;
/// `EXT2_MAX_DESC_SIZE` (= `EXT2_MIN_BLOCK_SIZE`).
pub const EXT2_MAX_DESC_SIZE: usize = 1024;

/// `EXT2_VALID_FS` in `s_state`.
pub const EXT2_VALID_FS: u16 = 0x0001;
/// `EXT2_ERROR_FS` in `s_state`: the kernel recorded an error.
pub const EXT2_ERROR_FS: u16 = 0x0002;

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

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Whether `size` is a descriptor size libext2fs and the kernel accept: 32, or a power of two
/// from 64 to 1024 (`ext4_fill_super`: "unsupported descriptor size").
pub fn valid_desc_size(size: usize) -> bool {
    size == EXT2_MIN_DESC_SIZE
        || (size.is_power_of_two()
            && (EXT2_MIN_DESC_SIZE_64BIT..=EXT2_MAX_DESC_SIZE).contains(&size))
}

/// How group descriptors are checksummed (`ext2fs_has_group_desc_csum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescCsum {
    /// Neither `gdt_csum` nor `metadata_csum`: `bg_checksum` is unused and `BLOCK_UNINIT` is
    /// ignored (`read_bitmaps` honours it only with a group descriptor checksum).
    None,
    /// RO_COMPAT `gdt_csum` (`uninit_bg`): `crc16(~0, uuid ‖ le32 group ‖ desc without
    /// bg_checksum)`.
    Crc16 { uuid: [u8; 16] },
    /// `metadata_csum` (wins over `gdt_csum` if both are set, as in e2fsprogs):
    /// `crc32c(seed, le32 group ‖ desc with bg_checksum = 0) & 0xFFFF`.
    Crc32c { seed: u32 },
}

impl DescCsum {
    pub fn of(sb: &Superblock) -> Self {
        if sb.has_metadata_csum() {
            DescCsum::Crc32c {
                seed: sb.csum_seed(),
            }
        } else if sb.s_feature_ro_compat & feature::RO_COMPAT_GDT_CSUM != 0 {
            DescCsum::Crc16 { uuid: sb.s_uuid }
        } else {
            DescCsum::None
        }
    }

    /// Whether descriptors carry a checksum (and `BLOCK_UNINIT` is honoured).
    pub fn enabled(&self) -> bool {
        !matches!(self, DescCsum::None)
    }
}

/// The checksum of descriptor `desc` (exactly one descriptor's bytes) of group `group`.
/// 0 when descriptors carry none.
pub fn group_desc_csum(mode: DescCsum, group: u32, desc: &[u8]) -> u16 {
    let le_group = group.to_le_bytes();
    let (head, tail) = (&desc[..BG_CHECKSUM], &desc[BG_CHECKSUM + 2..]);
    match mode {
        DescCsum::None => 0,
        DescCsum::Crc16 { uuid } => {
            let crc = crc16(!0, &uuid);
            let crc = crc16(crc, &le_group);
            let crc = crc16(crc, head);
            crc16(crc, tail)
        }
        DescCsum::Crc32c { seed } => {
            let crc = raw_crc32c(seed, &le_group);
            let crc = raw_crc32c(crc, head);
            let crc = raw_crc32c(crc, &[0, 0]);
            (raw_crc32c(crc, tail) & 0xFFFF) as u16
        }
    }
}

/// What is wrong with a group descriptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescError {
    #[error("group descriptor size {size} is not supported (32, or a power of two from 64 to 1024 with 64bit)")]
    BadSize { size: usize },
    #[error("group descriptor is truncated ({len} of {size} bytes)")]
    Truncated { len: usize, size: usize },
    #[error("group {group}: descriptor checksum does not match (stored {stored:#06x}, computed {computed:#06x})")]
    BadChecksum {
        group: u32,
        stored: u16,
        computed: u16,
    },
}

/// A decoded `struct ext4_group_desc`: the fields block allocation uses, plus the raw bytes so
/// that re-encoding changes nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDesc {
    pub bg_block_bitmap: u64,
    pub bg_inode_bitmap: u64,
    pub bg_inode_table: u64,
    pub bg_free_blocks_count: u32,
    pub bg_free_inodes_count: u32,
    pub bg_flags: u16,
    /// `bg_block_bitmap_csum_lo`, plus `_hi << 16` in descriptors of 64 bytes or more.
    pub bg_block_bitmap_csum: u32,
    pub bg_checksum: u16,
    /// The descriptor as read (32 or `s_desc_size` bytes).
    pub raw: Vec<u8>,
}

impl GroupDesc {
    /// Decode one descriptor of `desc_size` bytes from the start of `buf`. Total: fails only on
    /// an unsupported size or a short buffer; never panics.
    pub fn decode(buf: &[u8], desc_size: usize) -> Result<Self, DescError> {
        if !valid_desc_size(desc_size) {
            return Err(DescError::BadSize { size: desc_size });
        }
        if buf.len() < desc_size {
            return Err(DescError::Truncated {
                len: buf.len(),
                size: desc_size,
            });
        }
        let b = &buf[..desc_size];
        let wide = desc_size >= EXT2_MIN_DESC_SIZE_64BIT;
        let hi32 = |off: usize| {
            if wide {
                u64::from(le32(b, off)) << 32
            } else {
                0
            }
        };
        let hi16 = |off: usize| {
            if wide {
                u32::from(le16(b, off)) << 16
            } else {
                0
            }
        };
        Ok(GroupDesc {
            bg_block_bitmap: u64::from(le32(b, BG_BLOCK_BITMAP_LO)) | hi32(BG_BLOCK_BITMAP_HI),
            bg_inode_bitmap: u64::from(le32(b, BG_INODE_BITMAP_LO)) | hi32(BG_INODE_BITMAP_HI),
            bg_inode_table: u64::from(le32(b, BG_INODE_TABLE_LO)) | hi32(BG_INODE_TABLE_HI),
            bg_free_blocks_count: u32::from(le16(b, BG_FREE_BLOCKS_COUNT_LO))
                | hi16(BG_FREE_BLOCKS_COUNT_HI),
            bg_free_inodes_count: u32::from(le16(b, BG_FREE_INODES_COUNT_LO))
                | hi16(BG_FREE_INODES_COUNT_HI),
            bg_flags: le16(b, BG_FLAGS),
            bg_block_bitmap_csum: u32::from(le16(b, BG_BLOCK_BITMAP_CSUM_LO))
                | hi16(BG_BLOCK_BITMAP_CSUM_HI),
            bg_checksum: le16(b, BG_CHECKSUM),
            raw: b.to_vec(),
        })
    }

    /// Decode and verify the checksum of group `group`'s descriptor: the strict reader.
    pub fn parse(
        buf: &[u8],
        desc_size: usize,
        group: u32,
        csum: DescCsum,
    ) -> Result<Self, DescError> {
        let d = Self::decode(buf, desc_size)?;
        d.verify(group, csum)?;
        Ok(d)
    }

    /// `ext2fs_group_desc_csum_verify`: a no-op without a descriptor checksum.
    pub fn verify(&self, group: u32, csum: DescCsum) -> Result<(), DescError> {
        if !csum.enabled() {
            return Ok(());
        }
        let computed = group_desc_csum(csum, group, &self.encode_raw());
        if computed != self.bg_checksum {
            return Err(DescError::BadChecksum {
                group,
                stored: self.bg_checksum,
                computed,
            });
        }
        Ok(())
    }

    /// The fields written back into the raw bytes, checksum field as stored.
    pub fn encode_raw(&self) -> Vec<u8> {
        let mut b = self.raw.clone();
        let wide = b.len() >= EXT2_MIN_DESC_SIZE_64BIT;
        put32(&mut b, BG_BLOCK_BITMAP_LO, self.bg_block_bitmap as u32);
        put32(&mut b, BG_INODE_BITMAP_LO, self.bg_inode_bitmap as u32);
        put32(&mut b, BG_INODE_TABLE_LO, self.bg_inode_table as u32);
        put16(
            &mut b,
            BG_FREE_BLOCKS_COUNT_LO,
            self.bg_free_blocks_count as u16,
        );
        put16(
            &mut b,
            BG_FREE_INODES_COUNT_LO,
            self.bg_free_inodes_count as u16,
        );
        put16(&mut b, BG_FLAGS, self.bg_flags);
        put16(
            &mut b,
            BG_BLOCK_BITMAP_CSUM_LO,
            self.bg_block_bitmap_csum as u16,
        );
        put16(&mut b, BG_CHECKSUM, self.bg_checksum);
        if wide {
            put32(
                &mut b,
                BG_BLOCK_BITMAP_HI,
                (self.bg_block_bitmap >> 32) as u32,
            );
            put32(
                &mut b,
                BG_INODE_BITMAP_HI,
                (self.bg_inode_bitmap >> 32) as u32,
            );
            put32(
                &mut b,
                BG_INODE_TABLE_HI,
                (self.bg_inode_table >> 32) as u32,
            );
            put16(
                &mut b,
                BG_FREE_BLOCKS_COUNT_HI,
                (self.bg_free_blocks_count >> 16) as u16,
            );
            put16(
                &mut b,
                BG_FREE_INODES_COUNT_HI,
                (self.bg_free_inodes_count >> 16) as u16,
            );
            put16(
                &mut b,
                BG_BLOCK_BITMAP_CSUM_HI,
                (self.bg_block_bitmap_csum >> 16) as u16,
            );
        }
        b
    }

    /// Encode for writing: fields written back and `bg_checksum` recomputed
    /// (`ext2fs_group_desc_csum_set`; left as stored when descriptors carry no checksum).
    pub fn encode(&self, group: u32, csum: DescCsum) -> Vec<u8> {
        let mut b = self.encode_raw();
        if csum.enabled() {
            let c = group_desc_csum(csum, group, &b);
            put16(&mut b, BG_CHECKSUM, c);
        }
        b
    }

    /// The largest free-blocks count this descriptor size can hold.
    pub fn max_free_blocks(&self) -> u32 {
        if self.raw.len() >= EXT2_MIN_DESC_SIZE_64BIT {
            u32::MAX
        } else {
            u32::from(u16::MAX)
        }
    }
}

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
        let desc_size = if sb.is_64bit() {
            let s = usize::from(sb.s_desc_size);
            if s < EXT2_MIN_DESC_SIZE_64BIT || !valid_desc_size(s) || s > block_size as usize {
                return Err(LayoutError::BadDescSize {
                    s_desc_size: sb.s_desc_size,
                });
            }
            s
        } else {
            EXT2_MIN_DESC_SIZE
        };
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
        let s_reserved_gdt_blocks = le16(raw, S_RESERVED_GDT_BLOCKS);
        if u32::from(s_reserved_gdt_blocks) > block_size / 4 {
            return Err(LayoutError::BadReservedGdt {
                s_reserved_gdt_blocks,
            });
        }
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
        let inode_blocks_per_group =
            (u64::from(ipg) * u64::from(inode_size)).div_ceil(u64::from(block_size)) as u32;
        if inode_blocks_per_group > bpg {
            return Err(bad_inodes);
        }
        let sparse_super2 = (sb.s_feature_compat & feature::COMPAT_SPARSE_SUPER2 != 0)
            .then(|| [le32(raw, S_BACKUP_BGS), le32(raw, S_BACKUP_BGS + 4)]);
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

    /// Bytes of a block bitmap covered by its checksum (`EXT2_CLUSTERS_PER_GROUP / 8`).
    pub fn bitmap_bytes(&self) -> usize {
        (self.blocks_per_group / 8) as usize
    }

    /// `ext2fs_block_bitmap_csum_set`: the checksum of a block bitmap, or `None` without
    /// metadata_csum.
    pub fn bitmap_csum(&self, bitmap: &[u8]) -> Option<u32> {
        self.bitmap_csum_seed
            .map(|seed| raw_crc32c(seed, &bitmap[..self.bitmap_bytes()]))
    }

    /// Whether a descriptor's stored bitmap checksum matches `bitmap`. Descriptors of 32 bytes
    /// keep only the low 16 bits (`ext2fs_block_bitmap_csum_verify`).
    pub fn bitmap_csum_matches(&self, desc: &GroupDesc, bitmap: &[u8]) -> bool {
        match self.bitmap_csum(bitmap) {
            None => true,
            Some(c) if self.desc_size >= EXT2_MIN_DESC_SIZE_64BIT => c == desc.bg_block_bitmap_csum,
            Some(c) => c & 0xFFFF == desc.bg_block_bitmap_csum & 0xFFFF,
        }
    }

    /// The on-disk bitmap of a `BLOCK_UNINIT` group, as libext2fs builds it in memory and
    /// writes it once the flag is cleared: the group's superblock, descriptor table and
    /// reserved GDT blocks if it holds a backup (`ext2fs_reserve_super_and_bgd`), every block
    /// bitmap, inode bitmap and inode table block of *any* group that lies in this group (a
    /// superset of `mark_uninit_bg_group_blocks`: with flex_bg another group's metadata could in
    /// principle sit here, and it is in use either way), and the padding bits past the end of
    /// the group set (`write_bitmaps` pads with 0xFF; the kernel's `ext4_mark_bitmap_end`).
    pub fn uninit_bitmap(&self, g: u32, gdt: &GroupTable) -> Vec<u8> {
        let mut bm = vec![0u8; self.block_size as usize];
        let first = self.group_first_block(g);
        let n = u64::from(self.group_blocks(g));
        let mut mark = |start: u64, len: u64| {
            let lo = start.max(first);
            let hi = start.saturating_add(len).min(first + n);
            for b in lo..hi {
                set_bit(&mut bm, (b - first) as usize);
            }
        };
        if self.has_super(g) {
            mark(
                first,
                1 + self.desc_blocks + u64::from(self.reserved_gdt_blocks),
            );
        }
        for h in 0..self.group_count {
            let d = gdt.desc(h);
            if d.bg_block_bitmap != 0 {
                mark(d.bg_block_bitmap, 1);
            }
            if d.bg_inode_bitmap != 0 {
                mark(d.bg_inode_bitmap, 1);
            }
            if d.bg_inode_table != 0 {
                mark(d.bg_inode_table, u64::from(self.inode_blocks_per_group));
            }
        }
        for bit in n as usize..bm.len() * 8 {
            set_bit(&mut bm, bit);
        }
        bm
    }
}

fn is_power_of(mut n: u32, base: u32) -> bool {
    // ext2fs `test_root`: n is base^k for some k >= 1.
    while n > 1 && n % base == 0 {
        n /= base;
    }
    n == 1
}

/// Bit `i` of a bitmap (ext2 bit order: bit `i % 8` of byte `i / 8`).
pub fn test_bit(bm: &[u8], i: usize) -> bool {
    bm[i / 8] & (1 << (i % 8)) != 0
}

pub fn set_bit(bm: &mut [u8], i: usize) {
    bm[i / 8] |= 1 << (i % 8);
}

pub fn clear_bit(bm: &mut [u8], i: usize) {
    bm[i / 8] &= !(1 << (i % 8));
}

/// The first clear bit in `[0, n)`.
pub fn first_zero(bm: &[u8], n: usize) -> Option<usize> {
    (0..n).find(|&i| !test_bit(bm, i))
}

/// Clear bits in `[0, n)`.
pub fn count_zeros(bm: &[u8], n: usize) -> u32 {
    (0..n).filter(|&i| !test_bit(bm, i)).count() as u32
}

/// The primary group descriptor table in memory.
#[derive(Debug, Clone)]
pub struct GroupTable {
    geo: Geometry,
    raw: Vec<u8>,
}

impl GroupTable {
    /// Take the table's bytes (`desc_blocks` blocks from block `s_first_data_block + 1`) and
    /// verify every descriptor's checksum, as `ext2fs_open` does (`EXT2_ET_BAD_DESC_CHECKSUM`).
    pub fn from_bytes(geo: &Geometry, raw: Vec<u8>) -> Result<Self, DescError> {
        if raw.len() < geo.group_count as usize * geo.desc_size {
            return Err(DescError::Truncated {
                len: raw.len(),
                size: geo.group_count as usize * geo.desc_size,
            });
        }
        let t = GroupTable {
            geo: geo.clone(),
            raw,
        };
        for g in 0..geo.group_count {
            t.desc(g).verify(g, geo.desc_csum)?;
        }
        Ok(t)
    }

    /// Group `g`'s descriptor (`g < group_count`).
    pub fn desc(&self, g: u32) -> GroupDesc {
        let off = g as usize * self.geo.desc_size;
        // The size was validated by Geometry and the length by from_bytes.
        GroupDesc::decode(&self.raw[off..off + self.geo.desc_size], self.geo.desc_size)
            .unwrap_or_else(|_| unreachable!("descriptor {g} validated in from_bytes"))
    }

    /// Store group `g`'s descriptor with its checksum recomputed.
    pub fn set_desc(&mut self, g: u32, d: &GroupDesc) {
        let off = g as usize * self.geo.desc_size;
        let enc = d.encode(g, self.geo.desc_csum);
        self.raw[off..off + self.geo.desc_size].copy_from_slice(&enc);
    }

    /// Index, within the table, of the block holding group `g`'s descriptor.
    pub fn block_index_of(&self, g: u32) -> u64 {
        (g as u64 * self.geo.desc_size as u64) / u64::from(self.geo.block_size)
    }

    /// One block of the table.
    pub fn block(&self, index: u64) -> &[u8] {
        let bs = self.geo.block_size as usize;
        let off = index as usize * bs;
        &self.raw[off..off + bs]
    }

    /// The whole table.
    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }
}

/// A backup superblock as `ext2fs_flush` writes it (`write_backup_super`): the primary's bytes
/// with `s_block_group_nr` set to the group (capped at 65535), `EXT2_VALID_FS` and
/// `needs_recovery` cleared (ext2fs_flush clears them before writing the backups), and the
/// checksum recomputed under metadata_csum.
pub fn backup_superblock(primary: &[u8; SUPERBLOCK_SIZE], group: u32) -> [u8; SUPERBLOCK_SIZE] {
    let mut b = *primary;
    let state = le16(&b, S_STATE) & !EXT2_VALID_FS;
    put16(&mut b, S_STATE, state);
    let incompat = le32(&b, 0x060) & !feature::INCOMPAT_RECOVER;
    put32(&mut b, 0x060, incompat);
    put16(
        &mut b,
        S_BLOCK_GROUP_NR,
        group.min(u32::from(u16::MAX)) as u16,
    );
    if le32(&b, 0x064) & feature::RO_COMPAT_METADATA_CSUM != 0 {
        let c = superblock_csum(&b);
        put32(&mut b, 0x3FC, c);
    }
    b
}

/// `s_state` of a superblock's raw bytes.
pub fn superblock_state(raw: &[u8; SUPERBLOCK_SIZE]) -> u16 {
    le16(raw, S_STATE)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const UUID: [u8; 16] = [
        0x4f, 0x25, 0xe8, 0xcf, 0xe7, 0x97, 0x48, 0x23, 0xbe, 0xfa, 0xa7, 0x88, 0x4b, 0xae, 0xec,
        0xdb,
    ];

    /// Known answers from real `mke2fs 1.47.0` images (`-U 4f25e8cf-...`, 1 KiB blocks,
    /// `-g 1024`): the descriptors' bytes as read with xxd and the checksums dumpe2fs printed.
    #[test]
    fn crc16_descriptor_checksums_match_mke2fs() {
        let csum = DescCsum::Crc16 { uuid: UUID };
        let g0 = unhex("030000000400000005000000df03350002000400000000000000000035008e83");
        let g1 = unhex("030400000404000005040000ec0340000000070000000000000000004000a762");
        let d0 = GroupDesc::parse(&g0, 32, 0, csum).unwrap();
        assert_eq!(d0.bg_checksum, 0x838e);
        assert_eq!(d0.bg_block_bitmap, 3);
        assert_eq!(d0.bg_free_blocks_count, 0x03df);
        let d1 = GroupDesc::parse(&g1, 32, 1, csum).unwrap();
        assert_eq!(d1.bg_checksum, 0x62a7);
        assert_eq!(
            d1.bg_flags,
            EXT2_BG_INODE_UNINIT | EXT2_BG_BLOCK_UNINIT | EXT2_BG_INODE_ZEROED
        );
        // The same bytes under the wrong group number do not verify.
        assert!(matches!(
            GroupDesc::parse(&g0, 32, 1, csum),
            Err(DescError::BadChecksum { group: 1, .. })
        ));
    }

    #[test]
    fn crc32c_descriptor_and_bitmap_checksums_match_mke2fs() {
        let seed = raw_crc32c(!0, &UUID);
        let csum = DescCsum::Crc32c { seed };
        let g0 = unhex(concat!(
            "03000000", "0b000000", "13000000", "6103", "3500", "0200", "0400", "00000000", "2ce4",
            "bac3", "3500", "acc5", "00000000", "00000000", "00000000", "0000", "0000", "0000",
            "0000", "00000000", "8014", "6b1b", "00000000"
        ));
        let d0 = GroupDesc::parse(&g0, 64, 0, csum).unwrap();
        assert_eq!(d0.bg_checksum, 0xc5ac);
        assert_eq!(d0.bg_block_bitmap_csum, 0x1480_e42c);
        // Group 0's block bitmap (the first 128 bytes: 1024 blocks per group).
        let mut bm = vec![0xFFu8; 19];
        bm.push(0x7f);
        bm.resize(128, 0);
        assert_eq!(raw_crc32c(seed, &bm), 0x1480_e42c);
    }

    /// The known-answer vector of e2fsprogs' own csum.c self-test (`csum_known = 0xd3a4`).
    #[test]
    fn e2fsprogs_selftest_vector() {
        let mut d = vec![0u8; 32];
        put32(&mut d, BG_BLOCK_BITMAP_LO, 124);
        put32(&mut d, BG_INODE_BITMAP_LO, 125);
        put32(&mut d, BG_INODE_TABLE_LO, 126);
        put16(&mut d, BG_FREE_BLOCKS_COUNT_LO, 31119);
        put16(&mut d, BG_FREE_INODES_COUNT_LO, 15701);
        put16(&mut d, 0x10, 2);
        assert_eq!(
            group_desc_csum(DescCsum::Crc16 { uuid: UUID }, 0, &d),
            0xd3a4
        );
        assert_ne!(
            group_desc_csum(DescCsum::Crc16 { uuid: UUID }, 1, &d),
            0xd3a4
        );
    }

    #[test]
    fn checksum_ignores_its_own_field() {
        for csum in [DescCsum::Crc16 { uuid: UUID }, DescCsum::Crc32c { seed: 7 }] {
            let mut d = vec![0x5Au8; 64];
            let a = group_desc_csum(csum, 3, &d);
            put16(&mut d, BG_CHECKSUM, 0xFFFF);
            assert_eq!(group_desc_csum(csum, 3, &d), a);
        }
    }

    #[test]
    fn bad_sizes_and_short_buffers_are_errors() {
        for size in [0, 31, 33, 48, 96, 2048] {
            assert_eq!(
                GroupDesc::decode(&[0u8; 4096], size),
                Err(DescError::BadSize { size })
            );
        }
        assert_eq!(
            GroupDesc::decode(&[0u8; 40], 64),
            Err(DescError::Truncated { len: 40, size: 64 })
        );
    }

    #[test]
    fn narrow_descriptors_have_no_high_halves() {
        let mut d = GroupDesc::decode(&[0u8; 32], 32).unwrap();
        d.bg_free_blocks_count = 0x1_2345;
        d.bg_block_bitmap = 0x1_0000_0005;
        let back = GroupDesc::decode(&d.encode_raw(), 32).unwrap();
        assert_eq!(back.bg_free_blocks_count, 0x2345);
        assert_eq!(back.bg_block_bitmap, 5);
        assert_eq!(d.max_free_blocks(), 0xFFFF);
    }

    #[test]
    fn backups_follow_sparse_super_rules() {
        let mut geo = test_geometry(1024, 1024, 1024 * 200 + 1, false);
        geo.sparse_super = true;
        assert_eq!(
            geo.backup_groups(),
            vec![1, 3, 5, 7, 9, 25, 27, 49, 81, 125],
            "powers of 3, 5 and 7"
        );
        geo.sparse_super = false;
        assert_eq!(geo.backup_groups().len(), geo.group_count as usize - 1);
        geo.sparse_super2 = Some([1, 150]);
        assert_eq!(geo.backup_groups(), vec![1, 150]);
        geo.sparse_super2 = Some([0, 0]);
        assert!(geo.backup_groups().is_empty());
        geo.sparse_super2 = Some([7, 5000]);
        assert_eq!(
            geo.backup_groups(),
            vec![7],
            "out-of-range backup groups are ignored"
        );
    }

    /// A geometry for tests: `blocks` blocks of `bs` bytes, `bpg` per group.
    pub(crate) fn test_geometry(bs: u32, bpg: u32, blocks: u64, csum: bool) -> Geometry {
        let fdb = u64::from(bs == 1024);
        let group_count = (blocks - fdb).div_ceil(u64::from(bpg)) as u32;
        Geometry {
            block_size: bs,
            first_data_block: fdb,
            blocks_count: blocks,
            blocks_per_group: bpg,
            group_count,
            desc_size: 32,
            desc_blocks: u64::from(group_count).div_ceil(u64::from(bs) / 32),
            reserved_gdt_blocks: 3,
            inode_blocks_per_group: 4,
            sparse_super: true,
            sparse_super2: None,
            desc_csum: if csum {
                DescCsum::Crc32c { seed: 99 }
            } else {
                DescCsum::None
            },
            bitmap_csum_seed: csum.then_some(99),
        }
    }

    #[test]
    fn uninit_bitmap_marks_metadata_and_padding() {
        // 1 KiB blocks, 256 blocks per group, 3 groups, the last one short (200 blocks).
        let geo = test_geometry(1024, 256, 1 + 256 * 2 + 200, true);
        let mut raw = vec![0u8; geo.gdt_bytes()];
        // Each group's bitmaps and inode table at +10, +11, +12..+16 of its own group, except
        // group 2 whose metadata lives in group 1 (as flex_bg could place it).
        let locs = [(11u64, 12u64, 13u64), (267, 268, 269), (280, 281, 282)];
        let mut gt = GroupTable {
            geo: geo.clone(),
            raw: std::mem::take(&mut raw),
        };
        for (g, (bb, ib, it)) in locs.iter().enumerate() {
            let mut d = gt.desc(g as u32);
            d.bg_block_bitmap = *bb;
            d.bg_inode_bitmap = *ib;
            d.bg_inode_table = *it;
            gt.set_desc(g as u32, &d);
        }
        let bm = geo.uninit_bitmap(1, &gt);
        let first = geo.group_first_block(1); // 257: a backup group (1)
        let used: Vec<u64> = (0..256)
            .filter(|&i| test_bit(&bm, i))
            .map(|i| first + i as u64)
            .collect();
        let mut expected: Vec<u64> = (257..257 + 1 + 1 + 3).collect(); // sb, 1 GDT block, 3 reserved
        expected.extend([267, 268, 269, 270, 271, 272]); // own bitmaps + 4 inode table blocks
        expected.extend([280, 281, 282, 283, 284, 285]); // group 2's, which sit in group 1
        assert_eq!(used, expected);
        assert!(
            (256..8192).all(|i| test_bit(&bm, i)),
            "padding after the group is set"
        );
        // The short last group pads from its real end.
        let bm2 = geo.uninit_bitmap(2, &gt);
        assert!(!test_bit(&bm2, 199) && test_bit(&bm2, 200));
        assert_eq!(
            count_zeros(&bm2, 200),
            200,
            "group 2 (no backup, metadata elsewhere) is empty"
        );
    }

    #[test]
    fn backup_superblock_fields() {
        let sb = crate::ondisk::superblock::tests::sample(true);
        let mut primary = [0u8; SUPERBLOCK_SIZE];
        primary.copy_from_slice(&sb);
        put16(&mut primary, S_STATE, EXT2_VALID_FS);
        let c = superblock_csum(&primary);
        put32(&mut primary, 0x3FC, c);
        let b = backup_superblock(&primary, 70_000);
        assert_eq!(le16(&b, S_BLOCK_GROUP_NR), 0xFFFF);
        assert_eq!(superblock_state(&b), 0);
        let parsed = Superblock::parse(&b).unwrap();
        assert_eq!(parsed.s_mmp_block, 1000);
    }

    fn arb_desc(size: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), size)
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), size in 0usize..200, group in any::<u32>(), seed in any::<u32>()) {
            let _ = GroupDesc::parse(&data, size, group, DescCsum::Crc32c { seed });
            let _ = GroupDesc::parse(&data, size, group, DescCsum::Crc16 { uuid: UUID });
        }

        #[test]
        fn round_trip(raw in arb_desc(64), wide in any::<bool>(), group in any::<u32>(), seed in any::<u32>(), free in any::<u32>(), flags in any::<u16>()) {
            let size = if wide { 64 } else { 32 };
            for csum in [DescCsum::None, DescCsum::Crc16 { uuid: UUID }, DescCsum::Crc32c { seed }] {
                let mut d = GroupDesc::decode(&raw[..size], size).unwrap();
                d.bg_free_blocks_count = if wide { free } else { free & 0xFFFF };
                d.bg_flags = flags;
                let enc = d.encode(group, csum);
                let back = GroupDesc::parse(&enc, size, group, csum).unwrap();
                prop_assert_eq!(back.bg_free_blocks_count, d.bg_free_blocks_count);
                prop_assert_eq!(back.bg_flags, flags);
                prop_assert_eq!(back.encode(group, csum), enc);
            }
        }

        /// CRC-16 detects every single-byte error, so any corrupted byte of a gdt_csum
        /// descriptor is caught. (metadata_csum keeps only 16 of the 32 CRC bits, so a
        /// single-byte error is caught unless those 16 bits collide; that is checked
        /// exhaustively for one descriptor below rather than claimed for all.)
        #[test]
        fn corrupt_one_byte_is_detected(raw in arb_desc(64), wide in any::<bool>(), group in any::<u32>(), pos in 0usize..64, flip in 1u8..=255) {
            let size = if wide { 64 } else { 32 };
            let csum = DescCsum::Crc16 { uuid: UUID };
            let d = GroupDesc::decode(&raw[..size], size).unwrap();
            let mut enc = d.encode(group, csum);
            enc[pos % size] ^= flip;
            prop_assert!(GroupDesc::parse(&enc, size, group, csum).is_err());
        }
    }

    #[test]
    fn corrupt_one_byte_exhaustive_metadata_csum() {
        let seed = raw_crc32c(!0, &UUID);
        let csum = DescCsum::Crc32c { seed };
        for size in [32usize, 64] {
            let raw: Vec<u8> = (0..size as u8).map(|i| i.wrapping_mul(37)).collect();
            let d = GroupDesc::decode(&raw, size).unwrap();
            let enc = d.encode(5, csum);
            let mut missed = 0;
            for pos in 0..size {
                for flip in 1..=255u8 {
                    let mut bad = enc.clone();
                    bad[pos] ^= flip;
                    if GroupDesc::parse(&bad, size, 5, csum).is_ok() {
                        missed += 1;
                    }
                }
            }
            assert_eq!(missed, 0, "{size}-byte descriptor");
        }
    }
}
