//! Group descriptors (`struct ext4_group_desc`, `lib/ext2fs/ext2_fs.h`, `fs/ext4/ext4.h`) and
//! the primary descriptor table: decode, verify, encode, with the checksums of
//! `ext2fs_group_desc_csum` (`lib/ext2fs/csum.c`) and `ext4_group_desc_csum` (`fs/ext4/super.c`).
//!
//! Everything here is pure: bytes in, values out, so it is tested in memory and fuzzed.

use crate::ondisk::bytes::{le16, le32, put16, put32};
use crate::ondisk::crc::{crc16, raw_crc32c};
use crate::ondisk::geometry::Geometry;
use crate::ondisk::superblock::{feature, Superblock};

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

/// The primary group descriptor table in memory.
#[derive(Debug, Clone)]
pub struct GroupTable {
    geo: Geometry,
    raw: Vec<u8>,
}

impl GroupTable {
    /// A table taken as is, without verifying its descriptors (tests build one field by field).
    #[cfg(test)]
    pub(crate) fn unverified(geo: &Geometry, raw: Vec<u8>) -> Self {
        GroupTable {
            geo: geo.clone(),
            raw,
        }
    }

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

#[cfg(test)]
mod tests;
