//! The ext2/3/4 superblock: the fields MMP needs, parsed from untrusted bytes.
//!
//! Offsets are relative to the start of the superblock, which lives at byte 1024 of the device
//! (`lib/ext2fs/ext2_fs.h` `struct ext2_super_block`, `fs/ext4/ext4.h` `struct ext4_super_block`).
//! Locals are named after the C fields so the code can be held against those headers.

use crate::ondisk::crc::raw_crc32c;
use serde::Serialize;

/// Byte offset of the primary superblock on the device.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// Size of the on-disk superblock structure.
pub const SUPERBLOCK_SIZE: usize = 1024;
/// `EXT2_SUPER_MAGIC`.
pub const EXT4_SUPER_MAGIC: u16 = 0xEF53;

const S_INODES_COUNT: usize = 0x000;
const S_BLOCKS_COUNT_LO: usize = 0x004;
const S_R_BLOCKS_COUNT_LO: usize = 0x008;
const S_FREE_BLOCKS_COUNT_LO: usize = 0x00C;
const S_FREE_INODES_COUNT: usize = 0x010;
const S_FIRST_DATA_BLOCK: usize = 0x014;
const S_LOG_BLOCK_SIZE: usize = 0x018;
const S_LOG_CLUSTER_SIZE: usize = 0x01C;
const S_BLOCKS_PER_GROUP: usize = 0x020;
const S_INODES_PER_GROUP: usize = 0x028;
const S_MAGIC: usize = 0x038;
const S_STATE: usize = 0x03A;
const S_REV_LEVEL: usize = 0x04C;
const S_INODE_SIZE: usize = 0x058;
const S_FEATURE_COMPAT: usize = 0x05C;
const S_FEATURE_INCOMPAT: usize = 0x060;
const S_FEATURE_RO_COMPAT: usize = 0x064;
const S_UUID: usize = 0x068;
const S_VOLUME_NAME: usize = 0x078;
const S_DESC_SIZE: usize = 0x0FE;
const S_BLOCKS_COUNT_HI: usize = 0x150;
const S_FREE_BLOCKS_HI: usize = 0x158;
const S_MMP_UPDATE_INTERVAL: usize = 0x166;
const S_MMP_BLOCK: usize = 0x168;
const S_CHECKSUM_TYPE: usize = 0x175;
const S_CHECKSUM_SEED: usize = 0x270;
const S_CHECKSUM: usize = 0x3FC;

/// Feature bits (`EXT4_FEATURE_*` in `fs/ext4/ext4.h`).
pub mod feature {
    pub const COMPAT_HAS_JOURNAL: u32 = 0x0004;
    pub const COMPAT_RESIZE_INODE: u32 = 0x0010;
    pub const COMPAT_SPARSE_SUPER2: u32 = 0x0200;

    pub const INCOMPAT_RECOVER: u32 = 0x0004;
    pub const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
    pub const INCOMPAT_META_BG: u32 = 0x0010;
    pub const INCOMPAT_64BIT: u32 = 0x0080;
    pub const INCOMPAT_MMP: u32 = 0x0100;
    pub const INCOMPAT_FLEX_BG: u32 = 0x0200;
    pub const INCOMPAT_CSUM_SEED: u32 = 0x2000;

    pub const RO_COMPAT_GDT_CSUM: u32 = 0x0010;
    pub const RO_COMPAT_BIGALLOC: u32 = 0x0200;
    pub const RO_COMPAT_METADATA_CSUM: u32 = 0x0400;
}

/// `EXT4_CRC32C_CHKSUM`: the only checksum type the kernel accepts with metadata_csum.
pub const EXT4_CRC32C_CHKSUM: u8 = 1;
/// Largest block size ext4 supports (64 KiB, `EXT4_MAX_BLOCK_LOG_SIZE` = 16).
pub const MAX_LOG_BLOCK_SIZE: u32 = 6;

/// What is wrong with a superblock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    #[error("too short for an ext2/3/4 superblock ({len} bytes, need {SUPERBLOCK_SIZE} at offset {SUPERBLOCK_OFFSET})")]
    Truncated { len: usize },
    #[error("no ext2/3/4 superblock (magic {found:#06x}, expected {EXT4_SUPER_MAGIC:#06x})")]
    BadMagic { found: u16 },
    #[error("superblock has an impossible block size (s_log_block_size = {s_log_block_size})")]
    BadBlockSize { s_log_block_size: u32 },
    #[error("superblock has an invalid block count ({blocks_count}, first data block {s_first_data_block})")]
    BadBlocksCount {
        blocks_count: u64,
        s_first_data_block: u32,
    },
    #[error("superblock uses metadata_csum with unknown checksum type {found}")]
    BadChecksumType { found: u8 },
    #[error(
        "superblock checksum does not match (stored {stored:#010x}, computed {computed:#010x})"
    )]
    BadChecksum { stored: u32, computed: u32 },
}

/// The superblock fields this toolkit uses, plus the raw bytes for re-encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub s_inodes_count: u32,
    pub blocks_count: u64,
    pub s_r_blocks_count_lo: u32,
    pub free_blocks_count: u64,
    pub s_free_inodes_count: u32,
    pub s_first_data_block: u32,
    pub s_log_block_size: u32,
    pub s_log_cluster_size: u32,
    pub s_blocks_per_group: u32,
    pub s_inodes_per_group: u32,
    pub s_magic: u16,
    pub s_state: u16,
    pub s_rev_level: u32,
    pub s_inode_size: u16,
    pub s_feature_compat: u32,
    pub s_feature_incompat: u32,
    pub s_feature_ro_compat: u32,
    pub s_uuid: [u8; 16],
    pub s_volume_name: [u8; 16],
    pub s_desc_size: u16,
    pub s_mmp_update_interval: u16,
    pub s_mmp_block: u64,
    pub s_checksum_type: u8,
    pub s_checksum_seed: u32,
    pub s_checksum: u32,
    /// The 1024 bytes this was parsed from.
    pub raw: Box<[u8; SUPERBLOCK_SIZE]>,
}

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from(le32(b, off)) | (u64::from(le32(b, off + 4)) << 32)
}

impl Superblock {
    /// Parse and validate a superblock from the 1024 bytes at device offset 1024.
    ///
    /// Order: magic, then geometry, then the checksum (when `metadata_csum` is set), as the
    /// kernel's `ext4_fill_super` does. Never panics.
    pub fn parse(buf: &[u8]) -> Result<Self, SuperblockError> {
        if buf.len() < SUPERBLOCK_SIZE {
            return Err(SuperblockError::Truncated { len: buf.len() });
        }
        let b = &buf[..SUPERBLOCK_SIZE];
        let s_magic = le16(b, S_MAGIC);
        if s_magic != EXT4_SUPER_MAGIC {
            return Err(SuperblockError::BadMagic { found: s_magic });
        }
        let s_log_block_size = le32(b, S_LOG_BLOCK_SIZE);
        if s_log_block_size > MAX_LOG_BLOCK_SIZE {
            return Err(SuperblockError::BadBlockSize { s_log_block_size });
        }
        let s_feature_incompat = le32(b, S_FEATURE_INCOMPAT);
        let is_64bit = s_feature_incompat & feature::INCOMPAT_64BIT != 0;
        let hi = |off: usize| -> u64 {
            if is_64bit {
                u64::from(le32(b, off)) << 32
            } else {
                0
            }
        };
        let blocks_count = u64::from(le32(b, S_BLOCKS_COUNT_LO)) | hi(S_BLOCKS_COUNT_HI);
        let free_blocks_count = u64::from(le32(b, S_FREE_BLOCKS_COUNT_LO)) | hi(S_FREE_BLOCKS_HI);
        let s_first_data_block = le32(b, S_FIRST_DATA_BLOCK);
        if blocks_count == 0 || u64::from(s_first_data_block) >= blocks_count {
            return Err(SuperblockError::BadBlocksCount {
                blocks_count,
                s_first_data_block,
            });
        }
        let s_feature_ro_compat = le32(b, S_FEATURE_RO_COMPAT);
        let s_checksum_type = b[S_CHECKSUM_TYPE];
        let s_checksum = le32(b, S_CHECKSUM);
        if s_feature_ro_compat & feature::RO_COMPAT_METADATA_CSUM != 0 {
            if s_checksum_type != EXT4_CRC32C_CHKSUM {
                return Err(SuperblockError::BadChecksumType {
                    found: s_checksum_type,
                });
            }
            let computed = superblock_csum(b);
            if computed != s_checksum {
                return Err(SuperblockError::BadChecksum {
                    stored: s_checksum,
                    computed,
                });
            }
        }
        let mut raw = Box::new([0u8; SUPERBLOCK_SIZE]);
        raw.copy_from_slice(b);
        let mut s_uuid = [0u8; 16];
        s_uuid.copy_from_slice(&b[S_UUID..S_UUID + 16]);
        let mut s_volume_name = [0u8; 16];
        s_volume_name.copy_from_slice(&b[S_VOLUME_NAME..S_VOLUME_NAME + 16]);
        Ok(Superblock {
            s_inodes_count: le32(b, S_INODES_COUNT),
            blocks_count,
            s_r_blocks_count_lo: le32(b, S_R_BLOCKS_COUNT_LO),
            free_blocks_count,
            s_free_inodes_count: le32(b, S_FREE_INODES_COUNT),
            s_first_data_block,
            s_log_block_size,
            s_log_cluster_size: le32(b, S_LOG_CLUSTER_SIZE),
            s_blocks_per_group: le32(b, S_BLOCKS_PER_GROUP),
            s_inodes_per_group: le32(b, S_INODES_PER_GROUP),
            s_magic,
            s_state: le16(b, S_STATE),
            s_rev_level: le32(b, S_REV_LEVEL),
            s_inode_size: le16(b, S_INODE_SIZE),
            s_feature_compat: le32(b, S_FEATURE_COMPAT),
            s_feature_incompat,
            s_feature_ro_compat,
            s_uuid,
            s_volume_name,
            s_desc_size: le16(b, S_DESC_SIZE),
            s_mmp_update_interval: le16(b, S_MMP_UPDATE_INTERVAL),
            s_mmp_block: le64(b, S_MMP_BLOCK),
            s_checksum_type,
            s_checksum_seed: le32(b, S_CHECKSUM_SEED),
            s_checksum,
            raw,
        })
    }

    /// Encode: the raw bytes with every field of this struct written back, and the superblock
    /// checksum recomputed when `metadata_csum` is set. Mirrors [`Superblock::parse`].
    pub fn encode(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = *self.raw;
        let put16 =
            |b: &mut [u8], off: usize, v: u16| b[off..off + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |b: &mut [u8], off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
        put32(&mut b, S_INODES_COUNT, self.s_inodes_count);
        put32(&mut b, S_BLOCKS_COUNT_LO, self.blocks_count as u32);
        put32(&mut b, S_R_BLOCKS_COUNT_LO, self.s_r_blocks_count_lo);
        put32(
            &mut b,
            S_FREE_BLOCKS_COUNT_LO,
            self.free_blocks_count as u32,
        );
        if self.is_64bit() {
            put32(&mut b, S_BLOCKS_COUNT_HI, (self.blocks_count >> 32) as u32);
            put32(
                &mut b,
                S_FREE_BLOCKS_HI,
                (self.free_blocks_count >> 32) as u32,
            );
        }
        put32(&mut b, S_FREE_INODES_COUNT, self.s_free_inodes_count);
        put32(&mut b, S_FIRST_DATA_BLOCK, self.s_first_data_block);
        put32(&mut b, S_LOG_BLOCK_SIZE, self.s_log_block_size);
        put32(&mut b, S_LOG_CLUSTER_SIZE, self.s_log_cluster_size);
        put32(&mut b, S_BLOCKS_PER_GROUP, self.s_blocks_per_group);
        put32(&mut b, S_INODES_PER_GROUP, self.s_inodes_per_group);
        put16(&mut b, S_MAGIC, self.s_magic);
        put16(&mut b, S_STATE, self.s_state);
        put32(&mut b, S_REV_LEVEL, self.s_rev_level);
        put16(&mut b, S_INODE_SIZE, self.s_inode_size);
        put32(&mut b, S_FEATURE_COMPAT, self.s_feature_compat);
        put32(&mut b, S_FEATURE_INCOMPAT, self.s_feature_incompat);
        put32(&mut b, S_FEATURE_RO_COMPAT, self.s_feature_ro_compat);
        b[S_UUID..S_UUID + 16].copy_from_slice(&self.s_uuid);
        b[S_VOLUME_NAME..S_VOLUME_NAME + 16].copy_from_slice(&self.s_volume_name);
        put16(&mut b, S_DESC_SIZE, self.s_desc_size);
        put16(&mut b, S_MMP_UPDATE_INTERVAL, self.s_mmp_update_interval);
        put32(&mut b, S_MMP_BLOCK, self.s_mmp_block as u32);
        put32(&mut b, S_MMP_BLOCK + 4, (self.s_mmp_block >> 32) as u32);
        b[S_CHECKSUM_TYPE] = self.s_checksum_type;
        put32(&mut b, S_CHECKSUM_SEED, self.s_checksum_seed);
        let s_checksum = if self.has_metadata_csum() {
            superblock_csum(&b)
        } else {
            self.s_checksum
        };
        put32(&mut b, S_CHECKSUM, s_checksum);
        b
    }

    /// Block size in bytes (`1024 << s_log_block_size`).
    pub fn block_size(&self) -> u32 {
        1024u32 << self.s_log_block_size
    }

    pub fn is_64bit(&self) -> bool {
        self.s_feature_incompat & feature::INCOMPAT_64BIT != 0
    }

    pub fn has_mmp(&self) -> bool {
        self.s_feature_incompat & feature::INCOMPAT_MMP != 0
    }

    pub fn has_metadata_csum(&self) -> bool {
        self.s_feature_ro_compat & feature::RO_COMPAT_METADATA_CSUM != 0
    }

    pub fn has_csum_seed(&self) -> bool {
        self.s_feature_incompat & feature::INCOMPAT_CSUM_SEED != 0
    }

    /// The seed for metadata checksums (`ext2fs_init_csum_seed`): `s_checksum_seed` with the
    /// `metadata_csum_seed` feature, otherwise `crc32c(~0, s_uuid)`.
    pub fn csum_seed(&self) -> u32 {
        if self.has_csum_seed() {
            self.s_checksum_seed
        } else {
            raw_crc32c(!0, &self.s_uuid)
        }
    }

    /// The seed to checksum the MMP block with, or `None` when the filesystem has no
    /// `metadata_csum` (then neither the kernel nor e2fsprogs sets or verifies the field).
    pub fn mmp_csum_seed(&self) -> Option<u32> {
        self.has_metadata_csum().then(|| self.csum_seed())
    }

    /// The UUID in its usual text form.
    pub fn uuid_string(&self) -> String {
        format_uuid(&self.s_uuid)
    }

    /// The volume label (up to the first NUL).
    pub fn label(&self) -> String {
        c_string(&self.s_volume_name)
    }

    /// Validate `s_mmp_block`. e2fsprogs (`ext2fs_mmp_read`) rejects
    /// `s_mmp_block <= s_first_data_block || s_mmp_block >= blocks_count`. The kernel
    /// (`ext4_multi_mount_protect`) uses `<` for the first bound, which lets the MMP block be the
    /// superblock's own block; we take the stricter rule, so we never treat the superblock as an
    /// MMP block, and our verdicts match e2mmpstatus.
    pub fn mmp_block_in_range(&self) -> bool {
        self.s_mmp_block > u64::from(self.s_first_data_block)
            && self.s_mmp_block < self.blocks_count
            // A 64-bit block count allows block numbers whose byte offset overflows u64.
            && self
                .s_mmp_block
                .checked_mul(u64::from(self.block_size()))
                .is_some()
    }

    /// Byte offset of the MMP block on the device (valid only if [`Self::mmp_block_in_range`]).
    pub fn mmp_offset(&self) -> u64 {
        self.s_mmp_block * u64::from(self.block_size())
    }
}

/// `ext4_superblock_csum`: raw crc32c with seed ~0 over the bytes before `s_checksum`.
pub fn superblock_csum(sb: &[u8]) -> u32 {
    raw_crc32c(!0, &sb[..S_CHECKSUM])
}

/// Format 16 bytes as a UUID string.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// A fixed-size C char array: up to the first NUL, or the whole array if it has none.
pub fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Superblock facts shown to users (`status --json`).
#[derive(Debug, Clone, Serialize)]
pub struct SuperblockSummary {
    pub uuid: String,
    pub label: String,
    pub block_size: u32,
    pub blocks_count: u64,
    pub mmp_enabled: bool,
    pub mmp_block: u64,
    pub mmp_update_interval: u16,
    pub metadata_csum: bool,
    pub csum_seed_feature: bool,
}

impl From<&Superblock> for SuperblockSummary {
    fn from(sb: &Superblock) -> Self {
        SuperblockSummary {
            uuid: sb.uuid_string(),
            label: sb.label(),
            block_size: sb.block_size(),
            blocks_count: sb.blocks_count,
            mmp_enabled: sb.has_mmp(),
            mmp_block: sb.s_mmp_block,
            mmp_update_interval: sb.s_mmp_update_interval,
            metadata_csum: sb.has_metadata_csum(),
            csum_seed_feature: sb.has_csum_seed(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal valid superblock: 4 KiB blocks, MMP at block 1000, optional metadata_csum.
    pub(crate) fn sample(metadata_csum: bool) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        b[S_BLOCKS_COUNT_LO..S_BLOCKS_COUNT_LO + 4].copy_from_slice(&16384u32.to_le_bytes());
        b[S_LOG_BLOCK_SIZE..S_LOG_BLOCK_SIZE + 4].copy_from_slice(&2u32.to_le_bytes());
        b[S_BLOCKS_PER_GROUP..S_BLOCKS_PER_GROUP + 4].copy_from_slice(&32768u32.to_le_bytes());
        b[S_MAGIC..S_MAGIC + 2].copy_from_slice(&EXT4_SUPER_MAGIC.to_le_bytes());
        b[S_FEATURE_INCOMPAT..S_FEATURE_INCOMPAT + 4]
            .copy_from_slice(&feature::INCOMPAT_MMP.to_le_bytes());
        for (i, x) in b[S_UUID..S_UUID + 16].iter_mut().enumerate() {
            *x = 0x10 + i as u8;
        }
        b[S_MMP_UPDATE_INTERVAL..S_MMP_UPDATE_INTERVAL + 2].copy_from_slice(&5u16.to_le_bytes());
        b[S_MMP_BLOCK..S_MMP_BLOCK + 8].copy_from_slice(&1000u64.to_le_bytes());
        if metadata_csum {
            b[S_FEATURE_RO_COMPAT..S_FEATURE_RO_COMPAT + 4]
                .copy_from_slice(&feature::RO_COMPAT_METADATA_CSUM.to_le_bytes());
            b[S_CHECKSUM_TYPE] = EXT4_CRC32C_CHKSUM;
            let c = superblock_csum(&b);
            b[S_CHECKSUM..].copy_from_slice(&c.to_le_bytes());
        }
        b
    }

    /// A 64-bit block count lets `s_mmp_block * block_size` overflow u64: such a block number
    /// is out of range (no device is that large), never a panic or a wrapped offset that a
    /// claim would then write to.
    #[test]
    fn mmp_block_whose_offset_overflows_is_out_of_range() {
        let mut b = sample(false);
        b[S_LOG_BLOCK_SIZE..S_LOG_BLOCK_SIZE + 4].copy_from_slice(&6u32.to_le_bytes());
        let incompat = feature::INCOMPAT_MMP | feature::INCOMPAT_64BIT;
        b[S_FEATURE_INCOMPAT..S_FEATURE_INCOMPAT + 4].copy_from_slice(&incompat.to_le_bytes());
        b[S_BLOCKS_COUNT_HI..S_BLOCKS_COUNT_HI + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        // 2^50 blocks of 64 KiB: byte offset 2^66, which wraps to 0.
        b[S_MMP_BLOCK..S_MMP_BLOCK + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
        let sb = Superblock::parse(&b).unwrap();
        assert!(!sb.mmp_block_in_range());
        let mut img = vec![0u8; 8192];
        img[1024..2048].copy_from_slice(&b);
        let fs = crate::fs::MmpFs::open(crate::io::device::MemDevice::new("big.img", img)).unwrap();
        assert!(matches!(
            fs.read_mmp_raw(),
            Err(crate::Error::MmpBlockOutOfRange { .. })
        ));
    }

    #[test]
    fn parses_sample() {
        let sb = Superblock::parse(&sample(true)).unwrap();
        assert_eq!(sb.block_size(), 4096);
        assert_eq!(sb.s_mmp_block, 1000);
        assert!(sb.has_mmp() && sb.has_metadata_csum());
        assert!(sb.mmp_block_in_range());
        assert_eq!(sb.mmp_offset(), 1000 * 4096);
        assert_eq!(sb.uuid_string(), "10111213-1415-1617-1819-1a1b1c1d1e1f");
        assert_eq!(sb.csum_seed(), raw_crc32c(!0, &sb.s_uuid));
    }

    #[test]
    fn csum_seed_feature_uses_stored_seed() {
        let mut b = sample(false);
        let incompat = feature::INCOMPAT_MMP | feature::INCOMPAT_CSUM_SEED;
        b[S_FEATURE_INCOMPAT..S_FEATURE_INCOMPAT + 4].copy_from_slice(&incompat.to_le_bytes());
        b[S_CHECKSUM_SEED..S_CHECKSUM_SEED + 4].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        let sb = Superblock::parse(&b).unwrap();
        assert_eq!(sb.csum_seed(), 0xDEAD_BEEF);
        assert_eq!(
            sb.mmp_csum_seed(),
            None,
            "no metadata_csum, no MMP checksum"
        );
    }

    #[test]
    fn rejects_each_corrupt_kind() {
        assert_eq!(
            Superblock::parse(&[0u8; 100]),
            Err(SuperblockError::Truncated { len: 100 })
        );
        let mut b = sample(false);
        b[S_MAGIC] = 0;
        assert!(matches!(
            Superblock::parse(&b),
            Err(SuperblockError::BadMagic { .. })
        ));
        let mut b = sample(false);
        b[S_LOG_BLOCK_SIZE] = 7;
        assert!(matches!(
            Superblock::parse(&b),
            Err(SuperblockError::BadBlockSize { .. })
        ));
        let mut b = sample(false);
        b[S_BLOCKS_COUNT_LO..S_BLOCKS_COUNT_LO + 4].fill(0);
        assert!(matches!(
            Superblock::parse(&b),
            Err(SuperblockError::BadBlocksCount { .. })
        ));
        let mut b = sample(true);
        b[S_CHECKSUM_TYPE] = 2;
        assert!(matches!(
            Superblock::parse(&b),
            Err(SuperblockError::BadChecksumType { found: 2 })
        ));
        let mut b = sample(true);
        b[S_CHECKSUM] ^= 1;
        assert!(matches!(
            Superblock::parse(&b),
            Err(SuperblockError::BadChecksum { .. })
        ));
    }

    #[test]
    fn mmp_block_range_follows_e2fsprogs() {
        let mut sb = Superblock::parse(&sample(false)).unwrap();
        sb.s_mmp_block = 0; // first data block on a 4k fs: the superblock's own block
        assert!(!sb.mmp_block_in_range());
        sb.s_mmp_block = 16384;
        assert!(!sb.mmp_block_in_range());
        sb.s_mmp_block = 16383;
        assert!(sb.mmp_block_in_range());
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let _ = Superblock::parse(&data);
        }

        #[test]
        fn round_trip(interval in 1u16..=300, block in 1u64..16384, csum in any::<bool>(), label in any::<[u8; 16]>()) {
            let mut sb = Superblock::parse(&sample(csum)).unwrap();
            sb.s_mmp_update_interval = interval;
            sb.s_mmp_block = block;
            sb.s_volume_name = label;
            let again = Superblock::parse(&sb.encode()).unwrap();
            prop_assert_eq!(again.s_mmp_update_interval, interval);
            prop_assert_eq!(again.s_mmp_block, block);
            prop_assert_eq!(again.s_volume_name, label);
            prop_assert_eq!(&again.encode()[..], &sb.encode()[..]);
        }

        /// With metadata_csum, any single corrupted byte is caught (CRC32C detects every
        /// single-byte error). The one escape is a flip that clears the metadata_csum bit
        /// itself, which leaves a superblock that claims no checksum.
        #[test]
        fn corrupt_one_byte_is_detected(pos in 0usize..SUPERBLOCK_SIZE, flip in 1u8..=255) {
            let mut b = sample(true);
            b[pos] ^= flip;
            match Superblock::parse(&b) {
                Err(_) => {}
                Ok(sb) => prop_assert!(!sb.has_metadata_csum(), "undetected corruption at {pos}"),
            }
        }
    }
}
