//! The handoff record: a planned move's state in the padding of the MMP block (`mmp_pad2`,
//! right after mmpd's self-fence tag), which the kernel and e2fsprogs never read. The protocol
//! that writes it is [`crate::protocol::handoff`].
//!
//! Layout (little-endian), at `mmp_pad2 + 28`:
//!
//! | off | size | field |
//! |-----|------|-------|
//! | 0   | 8    | magic `"mmpHndOf"` |
//! | 8   | 4    | version (1) |
//! | 12  | 4    | step: 1 offered, 2 claimed, 3 rolled back |
//! | 16  | 4    | copy of `mmp_seq` |
//! | 20  | 8    | nonce |
//! | 28  | 8    | when the source offered (wall clock, seconds; informational) |
//! | 36  | 64   | source node (the MMP name of the node that let go) |
//! | 100 | 64   | target node |
//! | 164 | 4    | crc32c of the whole MMP record up to here |
//!
//! **Valid** means: the magic, version 1, a known step, a live `mmp_seq` equal to the copy, and
//! the checksum over everything before it (magic, sequence, time, node and device names, check
//! interval, the fence tag's bytes and the record). Any later write by a kernel, e2fsprogs or a
//! holder changes the sequence and the time, so what it leaves in the padding is a **remnant**
//! ([`HandoffRead::Remnant`]): shown by `status` and used by `handoff --confirm` to recognise
//! the target's heartbeat, never a reason to skip a wait.
//!
//! **Versions**: a record whose magic matches but whose version is higher than this release
//! reads is [`HandoffRead::Newer`]: every command that would act on a handoff refuses it
//! naming both versions (a node running an older release during a rolling upgrade), and the
//! normal claim treats the block as any live block (the full wait), never as a handoff.

use crate::ondisk::bytes::{le32, le64, put32, put64};
use crate::ondisk::crc::raw_crc32c;
use crate::ondisk::mmp::{string_to_name, MmpBlock, SeqClass, MMP_PAD2};
use serde::Serialize;

const REC: usize = MMP_PAD2 + 28;
const REC_VERSION: usize = REC + 8;
const REC_STEP: usize = REC + 12;
const REC_SEQ: usize = REC + 16;
const REC_NONCE: usize = REC + 20;
const REC_OFFERED_AT: usize = REC + 28;
const REC_SOURCE: usize = REC + 36;
const REC_TARGET: usize = REC + 100;
const REC_CRC: usize = REC + 164;
const REC_END: usize = REC + 168;
const NAME_LEN: usize = 64;

/// `"mmpHndOf"`: the handoff record's magic (the version is a field of its own).
pub const HANDOFF_MAGIC: [u8; 8] = *b"mmpHndOf";
/// The record version this release writes and reads.
pub const HANDOFF_VERSION: u32 = 1;

/// Where a planned move stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffStep {
    /// The source has let go (unmounted or released) and offers the device to the target.
    Offered,
    /// The target took it with the nonce; its holder follows at once.
    Claimed,
    /// The offer was withdrawn before the target took it (by the source, or cancelled by
    /// another node when the source is gone).
    RolledBack,
}

impl HandoffStep {
    fn code(self) -> u32 {
        match self {
            HandoffStep::Offered => 1,
            HandoffStep::Claimed => 2,
            HandoffStep::RolledBack => 3,
        }
    }
    fn from_code(c: u32) -> Option<Self> {
        match c {
            1 => Some(HandoffStep::Offered),
            2 => Some(HandoffStep::Claimed),
            3 => Some(HandoffStep::RolledBack),
            _ => None,
        }
    }
    /// `offered`, `claimed`, `rolled_back`.
    pub fn name(self) -> &'static str {
        match self {
            HandoffStep::Offered => "offered",
            HandoffStep::Claimed => "claimed",
            HandoffStep::RolledBack => "rolled_back",
        }
    }
}

/// A handoff record's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandoffRecord {
    pub step: HandoffStep,
    /// The secret the source hands the target (through the cluster) only after its offer was
    /// written and verified; the target claims with it.
    #[serde(serialize_with = "ser_nonce")]
    pub nonce: u64,
    /// Wall-clock seconds of the offer (informational, like `mmp_time`).
    pub offered_at: u64,
    pub source: String,
    pub target: String,
}

fn ser_nonce<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_nonce(*n))
}

/// A nonce as users type it: 16 lowercase hex digits.
pub fn format_nonce(n: u64) -> String {
    format!("{n:016x}")
}

/// Parse a nonce as printed by [`format_nonce`] (1 to 16 hex digits).
pub fn parse_nonce(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() || t.len() > 16 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "'{s}' is not a handoff nonce (16 hex digits, as `mmp-tool handoff --to` prints it)"
        ));
    }
    u64::from_str_radix(t, 16).map_err(|e| format!("'{s}': {e}"))
}

/// What the padding of a block holds in the handoff record's place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "record")]
pub enum HandoffRead {
    /// No record (no magic).
    None,
    /// A valid record, written with this very block.
    Valid(HandoffRecord),
    /// A version-1 record left behind by a later write (kernel, e2fsprogs, a holder): it says
    /// which handoff happened before, nothing about now.
    Remnant(HandoffRecord),
    /// A record of a version this release does not read.
    Newer { version: u32 },
}

impl HandoffRead {
    /// The valid record, if any.
    pub fn valid(&self) -> Option<&HandoffRecord> {
        match self {
            HandoffRead::Valid(r) => Some(r),
            _ => None,
        }
    }
}

fn name_at(raw: &[u8], off: usize) -> String {
    crate::ondisk::superblock::c_string(&raw[off..off + NAME_LEN])
}

impl MmpBlock {
    /// The handoff record this block carries (see the module documentation).
    pub fn handoff(&self) -> HandoffRead {
        let raw = self.encode_raw();
        if raw[REC..REC_VERSION] != HANDOFF_MAGIC {
            return HandoffRead::None;
        }
        let version = le32(&raw, REC_VERSION);
        if version != HANDOFF_VERSION {
            // Version 0 was never written: treat it like a newer one (refuse, never misread).
            return HandoffRead::Newer { version };
        }
        let Some(step) = HandoffStep::from_code(le32(&raw, REC_STEP)) else {
            return HandoffRead::None;
        };
        let rec = HandoffRecord {
            step,
            nonce: le64(&raw, REC_NONCE),
            offered_at: le64(&raw, REC_OFFERED_AT),
            source: name_at(&raw, REC_SOURCE),
            target: name_at(&raw, REC_TARGET),
        };
        let bound = matches!(self.seq_class(), SeqClass::Live(_))
            && le32(&raw, REC_SEQ) == self.mmp_seq
            && le32(&raw, REC_CRC) == raw_crc32c(!0, &raw[..REC_CRC]);
        if bound {
            HandoffRead::Valid(rec)
        } else {
            HandoffRead::Remnant(rec)
        }
    }

    /// Write (or, with `None`, zero) the handoff record. Clears the self-fence tag (a block in
    /// a handoff never promises a fence bound). Call it after setting the sequence, time, names
    /// and check interval: the record's checksum covers them.
    pub fn set_handoff(&mut self, rec: Option<&HandoffRecord>) {
        self.set_fence_tag(None);
        let p = |off: usize| off - MMP_PAD2;
        self.mmp_pad2[p(REC)..p(REC_END)].fill(0);
        let Some(r) = rec else { return };
        self.mmp_pad2[p(REC)..p(REC_VERSION)].copy_from_slice(&HANDOFF_MAGIC);
        let pad = &mut self.mmp_pad2[..];
        put32(pad, p(REC_VERSION), HANDOFF_VERSION);
        put32(pad, p(REC_STEP), r.step.code());
        put32(pad, p(REC_SEQ), self.mmp_seq);
        put64(pad, p(REC_NONCE), r.nonce);
        put64(pad, p(REC_OFFERED_AT), r.offered_at);
        let src: [u8; NAME_LEN] = string_to_name(&r.source);
        let tgt: [u8; NAME_LEN] = string_to_name(&r.target);
        pad[p(REC_SOURCE)..p(REC_SOURCE) + NAME_LEN].copy_from_slice(&src);
        pad[p(REC_TARGET)..p(REC_TARGET) + NAME_LEN].copy_from_slice(&tgt);
        let crc = raw_crc32c(!0, &self.encode_raw()[..REC_CRC]);
        put32(&mut self.mmp_pad2[..], p(REC_CRC), crc);
    }

    /// Test support and the fuzz target: write a record with an arbitrary version number.
    #[doc(hidden)]
    pub fn set_handoff_version_for_test(&mut self, version: u32) {
        let p = |off: usize| off - MMP_PAD2;
        put32(&mut self.mmp_pad2[..], p(REC_VERSION), version);
        let crc = raw_crc32c(!0, &self.encode_raw()[..REC_CRC]);
        put32(&mut self.mmp_pad2[..], p(REC_CRC), crc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;

    fn rec(step: HandoffStep) -> HandoffRecord {
        HandoffRecord {
            step,
            nonce: 0x0123_4567_89ab_cdef,
            offered_at: 1_700_000_000,
            source: "node-a".into(),
            target: "node-b".into(),
        }
    }

    #[test]
    fn round_trip_every_step_and_clear() {
        for step in [
            HandoffStep::Offered,
            HandoffStep::Claimed,
            HandoffStep::RolledBack,
        ] {
            let mut b = MmpBlock::new(0x1234, 99, "node-a", "sdb", 5);
            b.set_handoff(Some(&rec(step)));
            let again = MmpBlock::decode(&b.encode(Some(7))).unwrap();
            assert_eq!(again.handoff(), HandoffRead::Valid(rec(step)));
            assert!(again.fence_tag().is_none());
            b.set_handoff(None);
            assert_eq!(b.handoff(), HandoffRead::None);
            assert!(b.mmp_pad2.iter().all(|&x| x == 0));
        }
    }

    /// kmmpd and e2fsprogs keep the padding but write a new sequence and time: what they
    /// leave is a remnant, never a valid record; CLEAN and FSCK never carry a valid one.
    #[test]
    fn later_writes_leave_only_a_remnant() {
        let mut b = MmpBlock::new(0x1234, 99, "node-a", "sdb", 5);
        b.set_handoff(Some(&rec(HandoffStep::Claimed)));
        let mut kmmpd = b.clone();
        kmmpd.mmp_seq = 1;
        assert_eq!(
            kmmpd.handoff(),
            HandoffRead::Remnant(rec(HandoffStep::Claimed))
        );
        let mut same_seq_new_time = b.clone();
        same_seq_new_time.mmp_time += 1;
        assert!(matches!(
            same_seq_new_time.handoff(),
            HandoffRead::Remnant(_)
        ));
        let mut clean = b.clone();
        clean.mmp_seq = EXT4_MMP_SEQ_CLEAN;
        assert!(matches!(clean.handoff(), HandoffRead::Remnant(_)));
        let mut other_node = b.clone();
        other_node.mmp_nodename[0] ^= 1;
        assert!(matches!(other_node.handoff(), HandoffRead::Remnant(_)));
    }

    /// A record of a later version is never read as ours, valid checksum or not.
    #[test]
    fn a_newer_version_is_refused_not_misread() {
        let mut b = MmpBlock::new(0x1234, 99, "node-a", "sdb", 5);
        b.set_handoff(Some(&rec(HandoffStep::Offered)));
        b.set_handoff_version_for_test(2);
        assert_eq!(b.handoff(), HandoffRead::Newer { version: 2 });
        b.set_handoff_version_for_test(0);
        assert_eq!(b.handoff(), HandoffRead::Newer { version: 0 });
    }

    #[test]
    fn unknown_step_and_no_magic_are_no_record() {
        let b = MmpBlock::new(0x1234, 99, "node-a", "sdb", 5);
        assert_eq!(b.handoff(), HandoffRead::None);
        let mut b2 = b.clone();
        b2.set_handoff(Some(&rec(HandoffStep::Offered)));
        b2.mmp_pad2[28 + 12] = 9;
        assert_eq!(b2.handoff(), HandoffRead::None);
    }

    #[test]
    fn the_fence_tag_and_the_record_do_not_overlap() {
        // Setting a record clears a tag; a tag written over a record's block (mmpd's
        // heartbeat) breaks the record's binding only through the sequence and time.
        let mut b = MmpBlock::new(0x1234, 99, "node-a", "sdb", 5);
        b.set_handoff(Some(&rec(HandoffStep::Offered)));
        const { assert!(REC == MMP_PAD2 + 28 && REC_END <= crate::ondisk::mmp::MMP_CHECKSUM) };
        assert_eq!(b.fence_tag(), None);
    }

    #[test]
    fn nonces_parse_as_printed() {
        assert_eq!(parse_nonce(&format_nonce(0xdead_beef)), Ok(0xdead_beef));
        assert_eq!(parse_nonce("FFFFFFFFFFFFFFFF"), Ok(u64::MAX));
        for bad in ["", "xyz", "00000000000000000", "-1", "12 34"] {
            assert!(parse_nonce(bad).is_err(), "{bad}");
        }
    }
}
