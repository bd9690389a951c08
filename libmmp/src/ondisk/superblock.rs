//! The ext2/3/4 superblock: the fields MMP needs, parsed from untrusted bytes.
//!
//! Offsets are relative to the start of the superblock, which lives at byte 1024 of the device
//! (`lib/ext2fs/ext2_fs.h` `struct ext2_super_block`, `fs/ext4/ext4.h` `struct ext4_super_block`).
//! Locals are named after the C fields so the code can be held against those headers.

use crate::ondisk::bytes::Le;
use crate::ondisk::crc::raw_crc32c;
use serde::Serialize;
use std::marker::PhantomData;
use std::ops::Range;

/// Byte offset of the primary superblock on the device.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// Size of the on-disk superblock structure.
pub const SUPERBLOCK_SIZE: usize = 1024;
/// `EXT2_SUPER_MAGIC`.
pub const EXT4_SUPER_MAGIC: u16 = 0xEF53;

/// One field of `struct ext4_super_block`: its C name and offset in the superblock; its size is
/// the size of `T` on disk. Every superblock field libmmp reads or writes is one of the constants
/// below: decode, encode, the backup-superblock writer and the test builders all use them.
#[derive(Debug, Clone, Copy)]
pub struct Field<T> {
    pub name: &'static str,
    pub offset: usize,
    _type: PhantomData<T>,
}

/// A field table entry without its type: (C name, offset, size in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldInfo {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

impl<T: Le> Field<T> {
    const fn new(name: &'static str, offset: usize) -> Self {
        Field {
            name,
            offset,
            _type: PhantomData,
        }
    }

    /// The field's value in the superblock bytes `b` (at least [`SUPERBLOCK_SIZE`] long).
    pub fn get(&self, b: &[u8]) -> T {
        T::get(b, self.offset)
    }

    /// Store `v` in the superblock bytes `b`.
    pub fn put(&self, b: &mut [u8], v: T) {
        v.put(b, self.offset)
    }

    /// The bytes the field occupies.
    pub const fn range(&self) -> Range<usize> {
        self.offset..self.offset + T::SIZE
    }

    pub const fn info(&self) -> FieldInfo {
        FieldInfo {
            name: self.name,
            offset: self.offset,
            size: T::SIZE,
        }
    }
}

/// Defines each field constant once and [`FIELDS`], the table of all of them.
macro_rules! field_table {
    ($($konst:ident: $ty:ty = $off:literal, $name:literal;)*) => {
        $(
            #[doc = concat!("`", $name, "`")]
            pub const $konst: Field<$ty> = Field::new($name, $off);
        )*
        /// Every superblock field libmmp reads or writes, in offset order.
        pub const FIELDS: &[FieldInfo] = &[$($konst.info()),*];
    };
}

// Offsets from `struct ext4_super_block` (fs/ext4/ext4.h), `struct ext2_super_block`
// (lib/ext2fs/ext2_fs.h).
field_table! {
    S_INODES_COUNT: u32 = 0x000, "s_inodes_count";
    S_BLOCKS_COUNT_LO: u32 = 0x004, "s_blocks_count_lo";
    S_R_BLOCKS_COUNT_LO: u32 = 0x008, "s_r_blocks_count_lo";
    S_FREE_BLOCKS_COUNT_LO: u32 = 0x00C, "s_free_blocks_count_lo";
    S_FREE_INODES_COUNT: u32 = 0x010, "s_free_inodes_count";
    S_FIRST_DATA_BLOCK: u32 = 0x014, "s_first_data_block";
    S_LOG_BLOCK_SIZE: u32 = 0x018, "s_log_block_size";
    S_LOG_CLUSTER_SIZE: u32 = 0x01C, "s_log_cluster_size";
    S_BLOCKS_PER_GROUP: u32 = 0x020, "s_blocks_per_group";
    S_INODES_PER_GROUP: u32 = 0x028, "s_inodes_per_group";
    S_MNT_COUNT: u16 = 0x034, "s_mnt_count";
    S_MAGIC: u16 = 0x038, "s_magic";
    S_STATE: u16 = 0x03A, "s_state";
    S_LASTCHECK: u32 = 0x040, "s_lastcheck";
    S_REV_LEVEL: u32 = 0x04C, "s_rev_level";
    S_INODE_SIZE: u16 = 0x058, "s_inode_size";
    S_BLOCK_GROUP_NR: u16 = 0x05A, "s_block_group_nr";
    S_FEATURE_COMPAT: u32 = 0x05C, "s_feature_compat";
    S_FEATURE_INCOMPAT: u32 = 0x060, "s_feature_incompat";
    S_FEATURE_RO_COMPAT: u32 = 0x064, "s_feature_ro_compat";
    S_UUID: [u8; 16] = 0x068, "s_uuid";
    S_VOLUME_NAME: [u8; 16] = 0x078, "s_volume_name";
    S_RESERVED_GDT_BLOCKS: u16 = 0x0CE, "s_reserved_gdt_blocks";
    S_DESC_SIZE: u16 = 0x0FE, "s_desc_size";
    S_BLOCKS_COUNT_HI: u32 = 0x150, "s_blocks_count_hi";
    S_FREE_BLOCKS_HI: u32 = 0x158, "s_free_blocks_hi";
    S_MMP_UPDATE_INTERVAL: u16 = 0x166, "s_mmp_update_interval";
    S_MMP_BLOCK: u64 = 0x168, "s_mmp_block";
    S_CHECKSUM_TYPE: u8 = 0x175, "s_checksum_type";
    S_BACKUP_BGS_0: u32 = 0x24C, "s_backup_bgs[0]";
    S_BACKUP_BGS_1: u32 = 0x250, "s_backup_bgs[1]";
    S_CHECKSUM_SEED: u32 = 0x270, "s_checksum_seed";
    S_CHECKSUM: u32 = 0x3FC, "s_checksum";
}

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
    /// Read-write mounts since the last full e2fsck: the kernel adds one at each read-write
    /// mount and writes the superblock at once (`ext4_setup_super`, `ext4_commit_super`);
    /// read-only mounts leave it alone; e2fsck resets it. lockd-recover marks its final lock
    /// ledger with it.
    pub s_mnt_count: u16,
    pub s_magic: u16,
    pub s_state: u16,
    /// When e2fsck last checked the filesystem (low 32 bits of the seconds): e2fsck sets it
    /// where it resets `s_mnt_count` (`e2fsck/unix.c`), so a changed value says the count
    /// started again.
    pub s_lastcheck: u32,
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
        let s_magic = S_MAGIC.get(b);
        if s_magic != EXT4_SUPER_MAGIC {
            return Err(SuperblockError::BadMagic { found: s_magic });
        }
        let s_log_block_size = S_LOG_BLOCK_SIZE.get(b);
        if s_log_block_size > MAX_LOG_BLOCK_SIZE {
            return Err(SuperblockError::BadBlockSize { s_log_block_size });
        }
        let s_feature_incompat = S_FEATURE_INCOMPAT.get(b);
        let is_64bit = s_feature_incompat & feature::INCOMPAT_64BIT != 0;
        // The high halves count only with the 64bit feature (`ext4_blocks_count`).
        let lo_hi = |lo: Field<u32>, hi: Field<u32>| -> u64 {
            let hi = if is_64bit { hi.get(b) } else { 0 };
            u64::from(lo.get(b)) | (u64::from(hi) << 32)
        };
        let blocks_count = lo_hi(S_BLOCKS_COUNT_LO, S_BLOCKS_COUNT_HI);
        let free_blocks_count = lo_hi(S_FREE_BLOCKS_COUNT_LO, S_FREE_BLOCKS_HI);
        let s_first_data_block = S_FIRST_DATA_BLOCK.get(b);
        if blocks_count == 0 || u64::from(s_first_data_block) >= blocks_count {
            return Err(SuperblockError::BadBlocksCount {
                blocks_count,
                s_first_data_block,
            });
        }
        let s_feature_ro_compat = S_FEATURE_RO_COMPAT.get(b);
        let s_checksum_type = S_CHECKSUM_TYPE.get(b);
        let s_checksum = S_CHECKSUM.get(b);
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
        Ok(Superblock {
            s_inodes_count: S_INODES_COUNT.get(b),
            blocks_count,
            s_r_blocks_count_lo: S_R_BLOCKS_COUNT_LO.get(b),
            free_blocks_count,
            s_free_inodes_count: S_FREE_INODES_COUNT.get(b),
            s_first_data_block,
            s_log_block_size,
            s_log_cluster_size: S_LOG_CLUSTER_SIZE.get(b),
            s_blocks_per_group: S_BLOCKS_PER_GROUP.get(b),
            s_inodes_per_group: S_INODES_PER_GROUP.get(b),
            s_mnt_count: S_MNT_COUNT.get(b),
            s_magic,
            s_state: S_STATE.get(b),
            s_lastcheck: S_LASTCHECK.get(b),
            s_rev_level: S_REV_LEVEL.get(b),
            s_inode_size: S_INODE_SIZE.get(b),
            s_feature_compat: S_FEATURE_COMPAT.get(b),
            s_feature_incompat,
            s_feature_ro_compat,
            s_uuid: S_UUID.get(b),
            s_volume_name: S_VOLUME_NAME.get(b),
            s_desc_size: S_DESC_SIZE.get(b),
            s_mmp_update_interval: S_MMP_UPDATE_INTERVAL.get(b),
            s_mmp_block: S_MMP_BLOCK.get(b),
            s_checksum_type,
            s_checksum_seed: S_CHECKSUM_SEED.get(b),
            s_checksum,
            raw: Box::new(<[u8; SUPERBLOCK_SIZE]>::get(b, 0)),
        })
    }

    /// Encode: the raw bytes with every field of this struct written back, and the superblock
    /// checksum recomputed when `metadata_csum` is set. Mirrors [`Superblock::parse`].
    pub fn encode(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = *self.raw;
        S_INODES_COUNT.put(&mut b, self.s_inodes_count);
        S_BLOCKS_COUNT_LO.put(&mut b, self.blocks_count as u32);
        S_R_BLOCKS_COUNT_LO.put(&mut b, self.s_r_blocks_count_lo);
        S_FREE_BLOCKS_COUNT_LO.put(&mut b, self.free_blocks_count as u32);
        if self.is_64bit() {
            S_BLOCKS_COUNT_HI.put(&mut b, (self.blocks_count >> 32) as u32);
            S_FREE_BLOCKS_HI.put(&mut b, (self.free_blocks_count >> 32) as u32);
        }
        S_FREE_INODES_COUNT.put(&mut b, self.s_free_inodes_count);
        S_FIRST_DATA_BLOCK.put(&mut b, self.s_first_data_block);
        S_LOG_BLOCK_SIZE.put(&mut b, self.s_log_block_size);
        S_LOG_CLUSTER_SIZE.put(&mut b, self.s_log_cluster_size);
        S_BLOCKS_PER_GROUP.put(&mut b, self.s_blocks_per_group);
        S_INODES_PER_GROUP.put(&mut b, self.s_inodes_per_group);
        S_MNT_COUNT.put(&mut b, self.s_mnt_count);
        S_MAGIC.put(&mut b, self.s_magic);
        S_STATE.put(&mut b, self.s_state);
        S_LASTCHECK.put(&mut b, self.s_lastcheck);
        S_REV_LEVEL.put(&mut b, self.s_rev_level);
        S_INODE_SIZE.put(&mut b, self.s_inode_size);
        S_FEATURE_COMPAT.put(&mut b, self.s_feature_compat);
        S_FEATURE_INCOMPAT.put(&mut b, self.s_feature_incompat);
        S_FEATURE_RO_COMPAT.put(&mut b, self.s_feature_ro_compat);
        S_UUID.put(&mut b, self.s_uuid);
        S_VOLUME_NAME.put(&mut b, self.s_volume_name);
        S_DESC_SIZE.put(&mut b, self.s_desc_size);
        S_MMP_UPDATE_INTERVAL.put(&mut b, self.s_mmp_update_interval);
        S_MMP_BLOCK.put(&mut b, self.s_mmp_block);
        S_CHECKSUM_TYPE.put(&mut b, self.s_checksum_type);
        S_CHECKSUM_SEED.put(&mut b, self.s_checksum_seed);
        let s_checksum = if self.has_metadata_csum() {
            superblock_csum(&b)
        } else {
            self.s_checksum
        };
        S_CHECKSUM.put(&mut b, s_checksum);
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
    raw_crc32c(!0, &sb[..S_CHECKSUM.offset])
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

/// `EXT2_VALID_FS` in `s_state`.
pub const EXT2_VALID_FS: u16 = 0x0001;
/// `EXT2_ERROR_FS` in `s_state`: the kernel recorded an error.
pub const EXT2_ERROR_FS: u16 = 0x0002;

/// A backup superblock as `ext2fs_flush` writes it (`write_backup_super`): the primary's bytes
/// with `s_block_group_nr` set to the group (capped at 65535), `EXT2_VALID_FS` and
/// `needs_recovery` cleared (ext2fs_flush clears them before writing the backups), and the
/// checksum recomputed under metadata_csum.
pub fn backup_superblock(primary: &[u8; SUPERBLOCK_SIZE], group: u32) -> [u8; SUPERBLOCK_SIZE] {
    let mut b = *primary;
    let s_state = S_STATE.get(&b) & !EXT2_VALID_FS;
    S_STATE.put(&mut b, s_state);
    let s_feature_incompat = S_FEATURE_INCOMPAT.get(&b) & !feature::INCOMPAT_RECOVER;
    S_FEATURE_INCOMPAT.put(&mut b, s_feature_incompat);
    S_BLOCK_GROUP_NR.put(&mut b, group.min(u32::from(u16::MAX)) as u16);
    if S_FEATURE_RO_COMPAT.get(&b) & feature::RO_COMPAT_METADATA_CSUM != 0 {
        let s_checksum = superblock_csum(&b);
        S_CHECKSUM.put(&mut b, s_checksum);
    }
    b
}

/// `s_state` of a superblock's raw bytes.
pub fn superblock_state(raw: &[u8; SUPERBLOCK_SIZE]) -> u16 {
    S_STATE.get(raw)
}

#[cfg(test)]
pub(crate) mod tests;
