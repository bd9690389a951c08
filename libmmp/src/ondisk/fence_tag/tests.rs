//! Fence tag tests: round trip, and no block written by anyone else carries a valid tag.

use super::*;
use crate::ondisk::mmp::{string_to_name, EXT4_MMP_SEQ_CLEAN, EXT4_MMP_SEQ_FSCK, MMP_STRUCT_SIZE};
use proptest::prelude::*;

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
    let seq = b.mmp_seq;
    put32(&mut b.mmp_pad2[..], TAG_SEQ - MMP_PAD2, seq);
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
    put32(&mut b.mmp_pad2[..], p, 9);
    let crc = raw_crc32c(!0, &b.encode_raw()[..TAG_CRC]);
    let p = TAG_CRC - MMP_PAD2;
    put32(&mut b.mmp_pad2[..], p, crc);
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
