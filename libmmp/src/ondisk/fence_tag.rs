//! The self-fence tag: mmpd's promise in the padding of the MMP block (`mmp_pad2`), which the
//! kernel and e2fsprogs never read. See [`FenceTag`] for why a block written by anyone else
//! cannot carry a valid one.

use crate::ondisk::bytes::{le32, put32};
use crate::ondisk::crc::raw_crc32c;
use crate::ondisk::mmp::{MmpBlock, SeqClass, MMP_PAD2};
use serde::Serialize;

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

impl MmpBlock {
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
            put32(&mut self.mmp_pad2[..], p(off), v);
        }
        let crc = raw_crc32c(!0, &self.encode_raw()[..TAG_CRC]);
        put32(&mut self.mmp_pad2[..], p(TAG_CRC), crc);
    }
}

#[cfg(test)]
mod tests;
