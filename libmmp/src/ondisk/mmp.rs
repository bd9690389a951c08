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

use crate::ondisk::crc::raw_crc32c;
use serde::Serialize;

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
const MMP_PAD2: usize = 0x074;
const MMP_CHECKSUM: usize = 0x3FC;

/// Where our self-fence tag lives: the first 28 bytes of `mmp_pad2` (see [`FenceTag`]).
const TAG: usize = MMP_PAD2;
const TAG_SEQ: usize = TAG + 8;
const TAG_BOUND: usize = TAG + 12;
const TAG_INTERVAL: usize = TAG + 16;
const TAG_KIND: usize = TAG + 20;
const TAG_CRC: usize = TAG + 24;
const TAG_END: usize = TAG + 28;
/// `"mmpdFB01"`: mmpd fence bound, layout version 1.
pub const FENCE_TAG_MAGIC: [u8; 8] = *b"mmpdFB01";
/// Largest fence bound a reader accepts (longer ones could never shorten a wait anyway).
pub const FENCE_TAG_MAX_BOUND_MS: u32 = 600_000;

/// How a holder enforces its fence bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceKind {
    /// A watchdog device that the holder pets only while its heartbeats succeed: a hung,
    /// stopped or partitioned holder is reset by the hardware (or the kernel's softdog timer)
    /// without its own cooperation.
    Watchdog,
}

impl FenceKind {
    fn code(self) -> u32 {
        match self {
            FenceKind::Watchdog => 1,
        }
    }
    fn from_code(c: u32) -> Option<Self> {
        (c == 1).then_some(FenceKind::Watchdog)
    }
}

/// A holder's promise, written in the MMP block with every heartbeat: "if this block stops
/// changing, I have stopped writing to the device within `bound_ms` of the last change".
///
/// mmpd writes it only when its fence is enforced without its cooperation (the watchdog); a
/// reader that finds a **valid** tag may call the block stale after the bound (plus a margin)
/// instead of the kernel's `min(2*CI + 1, CI + 60)` s. Valid means: the tag's magic, a live
/// sequence, a copy of `mmp_seq` equal to `mmp_seq`, and a crc32c over the whole record up to
/// the tag's own checksum (magic, sequence, time, node and device names, check interval, the
/// tag). Nothing but mmpd writes it, and a block held by a writer that does not fence cannot
/// carry a valid one:
///
/// - kmmpd and `ext4_multi_mount_protect` keep the padding they read but write a new sequence
///   (random at mount, +1 every interval) and kmmpd a new time: the sequence copy and the
///   checksum no longer match. The one way to a valid-looking tag is a kernel mount that draws
///   the very sequence our holder last wrote (1 in 2^32) before kmmpd's first update; that
///   mount still waits and re-reads the block, so a claim racing it makes the kernel refuse.
/// - e2fsprogs (`ext2fs_mmp_start`, `e2fsck`, `tune2fs`, `debugfs`) zero the block
///   (`ext2fs_mmp_reset`) or write a new sequence and time: invalid, as above.
/// - CLEAN, FSCK and unknown sequences are never valid.
///
/// The kernel and e2fsprogs ignore `mmp_pad2` (documented as zero, never checked): a tagged
/// block mounts, checks (`e2fsck -fn`) and dumps (`debugfs dump_mmp`) as any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FenceTag {
    /// Longest time from the *submission* of the holder's last write that reached the disk to
    /// the moment the holder can no longer write to the device (reset by its watchdog).
    pub bound_ms: u32,
    /// The holder's heartbeat interval (informational).
    pub interval_ms: u32,
    pub kind: FenceKind,
}

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

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Fixed-size name field to text: up to the first NUL, or the whole field when it has none.
fn name_to_string(b: &[u8]) -> String {
    crate::ondisk::superblock::c_string(b)
}

/// Text to a fixed-size name field: truncated to the field, NUL-padded.
fn string_to_name<const N: usize>(s: &str) -> [u8; N] {
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
            mmp_time: u64::from(le32(b, MMP_TIME)) | (u64::from(le32(b, MMP_TIME + 4)) << 32),
            mmp_nodename,
            mmp_bdevname,
            mmp_check_interval: u16::from_le_bytes([
                b[MMP_CHECK_INTERVAL],
                b[MMP_CHECK_INTERVAL + 1],
            ]),
            mmp_pad1: u16::from_le_bytes([b[MMP_PAD1], b[MMP_PAD1 + 1]]),
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
        b[MMP_MAGIC..MMP_MAGIC + 4].copy_from_slice(&self.mmp_magic.to_le_bytes());
        b[MMP_SEQ..MMP_SEQ + 4].copy_from_slice(&self.mmp_seq.to_le_bytes());
        b[MMP_TIME..MMP_TIME + 8].copy_from_slice(&self.mmp_time.to_le_bytes());
        b[MMP_NODENAME..MMP_NODENAME + MMP_NODENAME_LEN].copy_from_slice(&self.mmp_nodename);
        b[MMP_BDEVNAME..MMP_BDEVNAME + MMP_BDEVNAME_LEN].copy_from_slice(&self.mmp_bdevname);
        b[MMP_CHECK_INTERVAL..MMP_CHECK_INTERVAL + 2]
            .copy_from_slice(&self.mmp_check_interval.to_le_bytes());
        b[MMP_PAD1..MMP_PAD1 + 2].copy_from_slice(&self.mmp_pad1.to_le_bytes());
        b[MMP_PAD2..MMP_CHECKSUM].copy_from_slice(&self.mmp_pad2[..]);
        b[MMP_CHECKSUM..].copy_from_slice(&self.mmp_checksum.to_le_bytes());
        b
    }

    /// Encode for writing: the checksum is recomputed when `csum_seed` is given (metadata_csum),
    /// and written as 0 otherwise, as e2fsprogs and the kernel do.
    pub fn encode(&self, csum_seed: Option<u32>) -> [u8; MMP_STRUCT_SIZE] {
        let mut b = self.encode_raw();
        let csum = csum_seed.map_or(0, |seed| mmp_csum(seed, &b));
        b[MMP_CHECKSUM..].copy_from_slice(&csum.to_le_bytes());
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

    /// The holder's self-fence tag, if this block carries a valid one (see [`FenceTag`]).
    pub fn fence_tag(&self) -> Option<FenceTag> {
        let raw = self.encode_raw();
        if raw[TAG..TAG_SEQ] != FENCE_TAG_MAGIC {
            return None;
        }
        if !matches!(self.seq_class(), SeqClass::Live(_)) || le32(&raw, TAG_SEQ) != self.mmp_seq {
            return None;
        }
        if le32(&raw, TAG_CRC) != raw_crc32c(!0, &raw[..TAG_CRC]) {
            return None;
        }
        let bound_ms = le32(&raw, TAG_BOUND);
        if bound_ms == 0 || bound_ms > FENCE_TAG_MAX_BOUND_MS {
            return None;
        }
        Some(FenceTag {
            bound_ms,
            interval_ms: le32(&raw, TAG_INTERVAL),
            kind: FenceKind::from_code(le32(&raw, TAG_KIND))?,
        })
    }

    /// Write (or, with `None`, zero) our fence tag. Call it after setting the sequence, time,
    /// names and check interval: the tag's checksum covers them.
    pub fn set_fence_tag(&mut self, tag: Option<FenceTag>) {
        let p = |off: usize| off - MMP_PAD2;
        self.mmp_pad2[p(TAG)..p(TAG_END)].fill(0);
        let Some(t) = tag else { return };
        self.mmp_pad2[p(TAG)..p(TAG_SEQ)].copy_from_slice(&FENCE_TAG_MAGIC);
        for (off, v) in [
            (TAG_SEQ, self.mmp_seq),
            (TAG_BOUND, t.bound_ms),
            (TAG_INTERVAL, t.interval_ms),
            (TAG_KIND, t.kind.code()),
        ] {
            self.mmp_pad2[p(off)..p(off) + 4].copy_from_slice(&v.to_le_bytes());
        }
        let crc = raw_crc32c(!0, &self.encode_raw()[..TAG_CRC]);
        self.mmp_pad2[p(TAG_CRC)..p(TAG_END)].copy_from_slice(&crc.to_le_bytes());
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seq_classes() {
        assert_eq!(SeqClass::of(EXT4_MMP_SEQ_CLEAN), SeqClass::Clean);
        assert_eq!(SeqClass::of(EXT4_MMP_SEQ_FSCK), SeqClass::Fsck);
        assert_eq!(SeqClass::of(0), SeqClass::Live(0));
        assert_eq!(
            SeqClass::of(EXT4_MMP_SEQ_MAX),
            SeqClass::Live(EXT4_MMP_SEQ_MAX)
        );
        assert_eq!(
            SeqClass::of(EXT4_MMP_SEQ_FSCK + 1),
            SeqClass::Unknown(EXT4_MMP_SEQ_FSCK + 1)
        );
        assert_eq!(SeqClass::of(u32::MAX), SeqClass::Unknown(u32::MAX));
    }

    /// A block from a real `mkfs.ext4 -O mmp,metadata_csum` image (1 KiB blocks), checked
    /// against the checksum debugfs printed for it. Rebuilt from its fields and the UUID.
    #[test]
    fn checksum_matches_kernel_convention() {
        // !crc32c(uuid ‖ mmp[0..1020]) == raw(raw(~0, uuid), mmp[0..1020]) (reference §1.4).
        let uuid = [7u8; 16];
        let blk = MmpBlock::new(EXT4_MMP_SEQ_CLEAN, 1_795_290_023, "vm", "t1.img", 5);
        let seed = raw_crc32c(!0, &uuid);
        let enc = blk.encode(Some(seed));
        let mut joined = uuid.to_vec();
        joined.extend_from_slice(&enc[..MMP_CHECKSUM]);
        let expected = !crc32c::crc32c(&joined);
        assert_eq!(le32(&enc, MMP_CHECKSUM), expected);
        assert!(MmpBlock::parse(&enc, Some(seed)).is_ok());
    }

    fn tag() -> FenceTag {
        FenceTag {
            bound_ms: 5_000,
            interval_ms: 1_000,
            kind: FenceKind::Watchdog,
        }
    }

    #[test]
    fn fence_tag_round_trips_and_survives_the_checksum() {
        let mut blk = MmpBlock::new(42, 1_795_290_023, "nodeA", "sdb", 5);
        assert_eq!(blk.fence_tag(), None);
        blk.set_fence_tag(Some(tag()));
        let seed = Some(0x1234_5678);
        let back = MmpBlock::parse(&blk.encode(seed), seed).unwrap();
        assert_eq!(back.fence_tag(), Some(tag()));
        blk.set_fence_tag(None);
        assert_eq!(blk.fence_tag(), None);
        assert!(
            blk.mmp_pad2.iter().all(|&b| b == 0),
            "clearing zeroes the tag"
        );
    }

    /// What kmmpd, a kernel mount and e2fsprogs do to a block they took over from mmpd: keep
    /// the padding (tag included) and change the sequence and/or the time, names, interval.
    #[test]
    fn fence_tag_is_invalid_once_anyone_else_writes_the_block() {
        let mut ours = MmpBlock::new(42, 1_795_290_023, "nodeA", "sdb", 5);
        ours.set_fence_tag(Some(tag()));
        assert!(ours.fence_tag().is_some());
        type Edit = fn(&mut MmpBlock);
        let edits: [(&str, Edit); 9] = [
            ("kmmpd: seq + 1 and time", |b| {
                b.mmp_seq += 1;
                b.mmp_time += 1;
            }),
            ("kmmpd: seq + 1, same second", |b| b.mmp_seq += 1),
            ("kernel mount: random seq", |b| b.mmp_seq = 0x0BAD_CAFE),
            ("kernel mount: nodename of the new node", |b| {
                b.mmp_nodename = string_to_name("nodeB")
            }),
            ("kmmpd: bdevname", |b| {
                b.mmp_bdevname = string_to_name("dm-3")
            }),
            ("kmmpd: check interval", |b| b.mmp_check_interval = 7),
            ("time only", |b| b.mmp_time += 1),
            ("e2fsck: FSCK", |b| b.mmp_seq = EXT4_MMP_SEQ_FSCK),
            ("umount: CLEAN", |b| b.mmp_seq = EXT4_MMP_SEQ_CLEAN),
        ];
        for (what, edit) in edits {
            let mut b = ours.clone();
            edit(&mut b);
            assert_eq!(b.fence_tag(), None, "{what}");
        }
        // A tag with the sequence copy rewritten to match (a forged or random-looking tag) is
        // still caught by its checksum.
        let mut b = ours.clone();
        b.mmp_seq += 1;
        b.mmp_pad2[TAG_SEQ - MMP_PAD2..TAG_SEQ - MMP_PAD2 + 4]
            .copy_from_slice(&b.mmp_seq.to_le_bytes());
        assert_eq!(b.fence_tag(), None);
        // ext2fs_mmp_reset: a zeroed block.
        let reset = MmpBlock::new(7, 1, "nodeB", "sdb", 5);
        assert_eq!(reset.fence_tag(), None);
    }

    #[test]
    fn fence_tag_rejects_zero_huge_bounds_and_unknown_kinds() {
        for bound_ms in [0, FENCE_TAG_MAX_BOUND_MS + 1] {
            let mut b = MmpBlock::new(42, 1, "n", "d", 5);
            b.set_fence_tag(Some(FenceTag { bound_ms, ..tag() }));
            assert_eq!(b.fence_tag(), None, "bound {bound_ms}");
        }
        let mut b = MmpBlock::new(42, 1, "n", "d", 5);
        b.set_fence_tag(Some(tag()));
        let p = TAG_KIND - MMP_PAD2;
        b.mmp_pad2[p..p + 4].copy_from_slice(&9u32.to_le_bytes());
        let crc = raw_crc32c(!0, &b.encode_raw()[..TAG_CRC]);
        let p = TAG_CRC - MMP_PAD2;
        b.mmp_pad2[p..p + 4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(b.fence_tag(), None, "unknown kind");
    }

    proptest! {
        /// No block that did not get its tag from set_fence_tag of that very content is
        /// accepted: random padding and fields never validate.
        #[test]
        fn random_blocks_never_carry_a_valid_fence_tag(raw in proptest::collection::vec(any::<u8>(), MMP_STRUCT_SIZE)) {
            let mut raw = raw;
            raw[TAG..TAG_SEQ].copy_from_slice(&FENCE_TAG_MAGIC);
            let b = MmpBlock::decode(&raw).unwrap();
            prop_assert_eq!(b.fence_tag(), None);
        }
    }

    #[test]
    fn full_length_names_are_not_nul_terminated() {
        let node = "n".repeat(64);
        let dev = "d".repeat(40);
        let blk = MmpBlock::new(1, 0, &node, &dev, 5);
        let back = MmpBlock::decode(&blk.encode(None)).unwrap();
        assert_eq!(back.nodename(), node);
        assert_eq!(back.bdevname(), "d".repeat(32));
    }

    #[test]
    fn verify_order_magic_wins_over_checksum() {
        let seed = 0x1234_5678;
        let mut blk = MmpBlock::new(1, 0, "a", "b", 5);
        blk.mmp_magic = 0x1234_5678;
        // Valid checksum over a bad magic: bad magic (e2mmpstatus exit 2).
        let enc = blk.encode(Some(seed));
        assert_eq!(
            MmpBlock::parse(&enc, Some(seed)),
            Err(MmpError::BadMagic { found: 0x1234_5678 })
        );
        // Bad checksum and bad magic: the magic wins, as in ext2fs_mmp_read (e2mmpstatus exit 2).
        let mut enc2 = enc;
        enc2[MMP_CHECKSUM] ^= 0xFF;
        assert_eq!(
            MmpBlock::parse(&enc2, Some(seed)),
            Err(MmpError::BadMagic { found: 0x1234_5678 })
        );
        // Bad checksum over a good magic: bad checksum (e2mmpstatus exit 1).
        let mut enc4 = MmpBlock::new(1, 0, "a", "b", 5).encode(Some(seed));
        enc4[MMP_CHECKSUM] ^= 0xFF;
        assert!(matches!(
            MmpBlock::parse(&enc4, Some(seed)),
            Err(MmpError::BadChecksum { .. })
        ));
        // Without metadata_csum the checksum field is ignored.
        let good = MmpBlock::new(1, 0, "a", "b", 5);
        let mut enc3 = good.encode(None);
        enc3[MMP_CHECKSUM] = 0x55;
        assert!(MmpBlock::parse(&enc3, None).is_ok());
        assert_eq!(
            MmpBlock::decode(&[0u8; 10]),
            Err(MmpError::Truncated { len: 10 })
        );
    }

    fn arb_block() -> impl Strategy<Value = MmpBlock> {
        (
            any::<u32>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 64),
            proptest::collection::vec(any::<u8>(), 32),
            any::<u16>(),
        )
            .prop_map(|(seq, time, node, dev, ci)| {
                let mut b = MmpBlock::new(seq, time, "", "", ci);
                b.mmp_nodename.copy_from_slice(&node);
                b.mmp_bdevname.copy_from_slice(&dev);
                b
            })
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1200), seed in any::<Option<u32>>()) {
            let _ = MmpBlock::parse(&data, seed);
        }

        #[test]
        fn round_trip(blk in arb_block(), seed in any::<u32>()) {
            let enc = blk.encode(Some(seed));
            let back = MmpBlock::parse(&enc, Some(seed)).unwrap();
            prop_assert_eq!(back.encode(Some(seed)), enc);
            prop_assert_eq!(back.mmp_seq, blk.mmp_seq);
            prop_assert_eq!(back.mmp_time, blk.mmp_time);
            prop_assert_eq!(back.mmp_nodename, blk.mmp_nodename);
            prop_assert_eq!(back.mmp_bdevname, blk.mmp_bdevname);
            prop_assert_eq!(back.mmp_check_interval, blk.mmp_check_interval);
        }

        #[test]
        fn corrupt_one_byte_is_detected(blk in arb_block(), seed in any::<u32>(), pos in 0usize..MMP_STRUCT_SIZE, flip in 1u8..=255) {
            let mut enc = blk.encode(Some(seed));
            enc[pos] ^= flip;
            prop_assert!(MmpBlock::parse(&enc, Some(seed)).is_err());
        }
    }
}
