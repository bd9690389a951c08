//! `struct mmp_struct`: the 1024-byte MMP record at the start of the MMP block.
//!
//! Layout (`lib/ext2fs/ext2_fs.h`, `fs/ext4/ext4.h`, `Documentation/filesystems/ext4/mmp.rst`),
//! all integers little-endian:
//!
//! | off   | size | field                |
//! |-------|------|----------------------|
//! | 0x000 | 4    | `mmp_magic`          |
//! | 0x004 | 4    | `mmp_seq`            |
//! | 0x008 | 8    | `mmp_time`           |
//! | 0x010 | 64   | `mmp_nodename`       |
//! | 0x050 | 32   | `mmp_bdevname`       |
//! | 0x070 | 2    | `mmp_check_interval` |
//! | 0x072 | 2    | `mmp_pad1`           |
//! | 0x074 | 904  | `mmp_pad2[226]`      |
//! | 0x3FC | 4    | `mmp_checksum`       |
//!
//! Decoding is total: any 1024 bytes decode into fields, so `status` and `dump` can show a
//! corrupt block. [`MmpBlock::verify`] then says whether the block may be trusted, with the
//! precedence of e2fsprogs' `ext2fs_mmp_read` (a bad magic wins over a bad checksum), so our
//! verdicts match e2mmpstatus.

use crate::ondisk::bytes::{le16, le32, le64, put16, put32, put64};
use crate::ondisk::crc::raw_crc32c;
use serde::Serialize;

// The self-fence tag, kept where callers have always found it.

/// Size of `struct mmp_struct`.
pub const MMP_STRUCT_SIZE: usize = 1024;
/// `EXT4_MMP_MAGIC`.
pub const EXT4_MMP_MAGIC: u32 = 0x004D_4D50;
/// `EXT4_MMP_SEQ_CLEAN`: cleanly unmounted.
pub const EXT4_MMP_SEQ_CLEAN: u32 = 0xFF4D_4D50;
/// `EXT4_MMP_SEQ_FSCK`: e2fsck, tune2fs or debugfs has the filesystem open read-write.
pub const EXT4_MMP_SEQ_FSCK: u32 = 0xE24D_4D50;
/// `EXT4_MMP_SEQ_MAX`: the largest sequence a live updater writes.
pub const EXT4_MMP_SEQ_MAX: u32 = 0xE24D_4D4F;
/// `EXT4_MMP_UPDATE_INTERVAL`: the default `s_mmp_update_interval`.
pub const EXT4_MMP_UPDATE_INTERVAL: u16 = 5;
/// `EXT4_MMP_MAX_UPDATE_INTERVAL`.
pub const EXT4_MMP_MAX_UPDATE_INTERVAL: u16 = 300;
/// `EXT4_MMP_MIN_CHECK_INTERVAL`.
pub const EXT4_MMP_MIN_CHECK_INTERVAL: u16 = 5;

const MMP_MAGIC: usize = 0x000;
const MMP_SEQ: usize = 0x004;
const MMP_TIME: usize = 0x008;
const MMP_NODENAME: usize = 0x010;
const MMP_NODENAME_LEN: usize = 64;
const MMP_BDEVNAME: usize = 0x050;
const MMP_BDEVNAME_LEN: usize = 32;
const MMP_CHECK_INTERVAL: usize = 0x070;
const MMP_PAD1: usize = 0x072;
pub(crate) const MMP_PAD2: usize = 0x074;
pub(crate) const MMP_CHECKSUM: usize = 0x3FC;

/// What an `mmp_seq` value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "class", content = "value")]
pub enum SeqClass {
    /// `SEQ_CLEAN`: nobody has the filesystem mounted (as of the last clean unmount).
    Clean,
    /// `SEQ_FSCK`: an e2fsprogs tool holds it read-write; never safe, however old.
    Fsck,
    /// 0..=SEQ_MAX: written by a live updater (kmmpd, mmpd) or left by a crashed one.
    Live(u32),
    /// Above SEQ_MAX and not a known code. e2fsprogs: "NOT safe to use the filesystem,
    /// regardless of how old the timestamp is" (the kernel is laxer; we are not).
    Unknown(u32),
}

impl SeqClass {
    pub fn of(seq: u32) -> Self {
        match seq {
            EXT4_MMP_SEQ_CLEAN => SeqClass::Clean,
            EXT4_MMP_SEQ_FSCK => SeqClass::Fsck,
            s if s <= EXT4_MMP_SEQ_MAX => SeqClass::Live(s),
            s => SeqClass::Unknown(s),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SeqClass::Clean => "clean",
            SeqClass::Fsck => "fsck",
            SeqClass::Live(_) => "live",
            SeqClass::Unknown(_) => "unknown",
        }
    }
}

/// Why an MMP block cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MmpError {
    #[error("MMP block is truncated ({len} bytes, need {MMP_STRUCT_SIZE})")]
    Truncated { len: usize },
    #[error(
        "MMP block checksum does not match (stored {stored:#010x}, computed {computed:#010x})"
    )]
    BadChecksum { stored: u32, computed: u32 },
    #[error(
        "MMP block has an invalid magic number ({found:#010x}, expected {EXT4_MMP_MAGIC:#010x})"
    )]
    BadMagic { found: u32 },
}

/// A decoded `struct mmp_struct`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmpBlock {
    pub mmp_magic: u32,
    pub mmp_seq: u32,
    pub mmp_time: u64,
    /// Raw bytes: not NUL-terminated when full (e2fsprogs 6b430d60).
    pub mmp_nodename: [u8; MMP_NODENAME_LEN],
    /// Raw bytes: not NUL-terminated when full.
    pub mmp_bdevname: [u8; MMP_BDEVNAME_LEN],
    pub mmp_check_interval: u16,
    pub mmp_pad1: u16,
    /// `mmp_pad2[226]`, kept so that re-encoding a foreign block is byte-exact.
    pub mmp_pad2: Box<[u8; MMP_CHECKSUM - MMP_PAD2]>,
    pub mmp_checksum: u32,
}

/// Fixed-size name field to text: up to the first NUL, or the whole field when it has none.
fn name_to_string(b: &[u8]) -> String {
    crate::ondisk::superblock::c_string(b)
}

/// Text to a fixed-size name field: truncated to the field, NUL-padded.
pub(crate) fn string_to_name<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let n = s.len().min(N);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

/// `ext4_mmp_csum`: raw crc32c of everything before `mmp_checksum`.
pub fn mmp_csum(seed: u32, raw: &[u8]) -> u32 {
    raw_crc32c(seed, &raw[..MMP_CHECKSUM])
}

impl MmpBlock {
    /// Decode the first 1024 bytes of `buf`. Fails only if `buf` is too short.
    pub fn decode(buf: &[u8]) -> Result<Self, MmpError> {
        if buf.len() < MMP_STRUCT_SIZE {
            return Err(MmpError::Truncated { len: buf.len() });
        }
        let b = &buf[..MMP_STRUCT_SIZE];
        let mut mmp_nodename = [0u8; MMP_NODENAME_LEN];
        mmp_nodename.copy_from_slice(&b[MMP_NODENAME..MMP_NODENAME + MMP_NODENAME_LEN]);
        let mut mmp_bdevname = [0u8; MMP_BDEVNAME_LEN];
        mmp_bdevname.copy_from_slice(&b[MMP_BDEVNAME..MMP_BDEVNAME + MMP_BDEVNAME_LEN]);
        let mut mmp_pad2 = Box::new([0u8; MMP_CHECKSUM - MMP_PAD2]);
        mmp_pad2.copy_from_slice(&b[MMP_PAD2..MMP_CHECKSUM]);
        Ok(MmpBlock {
            mmp_magic: le32(b, MMP_MAGIC),
            mmp_seq: le32(b, MMP_SEQ),
            mmp_time: le64(b, MMP_TIME),
            mmp_nodename,
            mmp_bdevname,
            mmp_check_interval: le16(b, MMP_CHECK_INTERVAL),
            mmp_pad1: le16(b, MMP_PAD1),
            mmp_pad2,
            mmp_checksum: le32(b, MMP_CHECKSUM),
        })
    }

    /// Decode and verify: the strict reader used by the check protocol. `csum_seed` is
    /// `Superblock::mmp_csum_seed()`: `None` when the filesystem has no metadata_csum.
    pub fn parse(buf: &[u8], csum_seed: Option<u32>) -> Result<Self, MmpError> {
        let block = Self::decode(buf)?;
        block.verify(csum_seed)?;
        Ok(block)
    }

    /// A bad magic wins over a bad checksum, as in e2fsprogs' `ext2fs_mmp_read`
    /// (lib/ext2fs/mmp.c): it sets `EXT2_ET_MMP_CSUM_INVALID` when the checksum fails, then
    /// overwrites it with `EXT2_ET_MMP_MAGIC_INVALID` when the magic is wrong. A block that is
    /// not an MMP block is a corrupt state (e2mmpstatus exit 2), not a live holder whose write
    /// we caught half done (exit 1).
    pub fn verify(&self, csum_seed: Option<u32>) -> Result<(), MmpError> {
        if self.mmp_magic != EXT4_MMP_MAGIC {
            return Err(MmpError::BadMagic {
                found: self.mmp_magic,
            });
        }
        if let Some(seed) = csum_seed {
            let computed = self.computed_checksum(seed);
            if computed != self.mmp_checksum {
                return Err(MmpError::BadChecksum {
                    stored: self.mmp_checksum,
                    computed,
                });
            }
        }
        Ok(())
    }

    /// The checksum this block should carry under `seed`.
    pub fn computed_checksum(&self, seed: u32) -> u32 {
        mmp_csum(seed, &self.encode_raw())
    }

    /// Encode exactly as stored, without touching the checksum field.
    pub fn encode_raw(&self) -> [u8; MMP_STRUCT_SIZE] {
        let mut b = [0u8; MMP_STRUCT_SIZE];
        put32(&mut b, MMP_MAGIC, self.mmp_magic);
        put32(&mut b, MMP_SEQ, self.mmp_seq);
        put64(&mut b, MMP_TIME, self.mmp_time);
        b[MMP_NODENAME..MMP_NODENAME + MMP_NODENAME_LEN].copy_from_slice(&self.mmp_nodename);
        b[MMP_BDEVNAME..MMP_BDEVNAME + MMP_BDEVNAME_LEN].copy_from_slice(&self.mmp_bdevname);
        put16(&mut b, MMP_CHECK_INTERVAL, self.mmp_check_interval);
        put16(&mut b, MMP_PAD1, self.mmp_pad1);
        b[MMP_PAD2..MMP_CHECKSUM].copy_from_slice(&self.mmp_pad2[..]);
        put32(&mut b, MMP_CHECKSUM, self.mmp_checksum);
        b
    }

    /// Encode for writing: the checksum is recomputed when `csum_seed` is given (metadata_csum),
    /// and written as 0 otherwise, as e2fsprogs and the kernel do.
    pub fn encode(&self, csum_seed: Option<u32>) -> [u8; MMP_STRUCT_SIZE] {
        let mut b = self.encode_raw();
        let csum = csum_seed.map_or(0, |seed| mmp_csum(seed, &b));
        put32(&mut b, MMP_CHECKSUM, csum);
        b
    }

    /// A fresh block as `ext2fs_mmp_reset` builds it: zeroed, magic, the given sequence,
    /// node and device names, check interval.
    pub fn new(seq: u32, time: u64, nodename: &str, bdevname: &str, check_interval: u16) -> Self {
        MmpBlock {
            mmp_magic: EXT4_MMP_MAGIC,
            mmp_seq: seq,
            mmp_time: time,
            mmp_nodename: string_to_name(nodename),
            mmp_bdevname: string_to_name(bdevname),
            mmp_check_interval: check_interval,
            mmp_pad1: 0,
            mmp_pad2: Box::new([0u8; MMP_CHECKSUM - MMP_PAD2]),
            mmp_checksum: 0,
        }
    }

    pub fn seq_class(&self) -> SeqClass {
        SeqClass::of(self.mmp_seq)
    }

    pub fn nodename(&self) -> String {
        name_to_string(&self.mmp_nodename)
    }

    pub fn bdevname(&self) -> String {
        name_to_string(&self.mmp_bdevname)
    }
}

#[cfg(test)]
mod tests;
