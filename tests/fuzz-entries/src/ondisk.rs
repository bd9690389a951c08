//! libmmp's on-disk parsers, one block at a time.

use libmmp::ondisk::fence_tag::{FenceKind, FenceTag};
use libmmp::ondisk::group_desc::{DescCsum, GroupDesc};
use libmmp::ondisk::handoff::{format_nonce, parse_nonce, HandoffRead, HandoffRecord, HandoffStep};
use libmmp::ondisk::mmp::{MmpBlock, MmpError, SeqClass, EXT4_MMP_MAGIC};
use libmmp::ondisk::superblock::Superblock;

/// The MMP block parser: decode, verify with and without a checksum seed (the first 4 bytes),
/// re-encode, and the self-fence tag in `mmp_pad2`.
pub fn mmp_block(data: &[u8]) {
    let seed = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let body = data.get(4..).unwrap_or_default();
    let Ok(block) = MmpBlock::decode(body) else {
        return;
    };
    // Decoding is total and re-encoding is byte-exact.
    assert_eq!(&block.encode_raw()[..], &body[..1024]);
    // A bad magic wins over a bad checksum, as in e2fsprogs' ext2fs_mmp_read.
    if block.mmp_magic != EXT4_MMP_MAGIC {
        assert_eq!(
            block.verify(seed),
            Err(MmpError::BadMagic {
                found: block.mmp_magic
            })
        );
    }
    let _ = block.verify(seed);
    let _ = block.verify(None);
    let _ = (block.seq_class(), block.nodename(), block.bdevname());
    // A valid tag survives a round trip, and any block re-tagged by set_fence_tag validates
    // exactly when its sequence is live.
    if let Some(tag) = block.fence_tag() {
        let again = MmpBlock::decode(&block.encode_raw()).expect("a re-encoded block decodes");
        assert_eq!(again.fence_tag(), Some(tag));
        let mut moved = block.clone();
        moved.mmp_seq = moved.mmp_seq.wrapping_add(1);
        assert_eq!(moved.fence_tag(), None);
    }
    let mut tagged = block.clone();
    tagged.set_fence_tag(Some(FenceTag {
        bound_ms: 5_000,
        interval_ms: 1_000,
        kind: FenceKind::Watchdog,
    }));
    let live = matches!(tagged.seq_class(), SeqClass::Live(_));
    assert_eq!(tagged.fence_tag().is_some(), live);
    if let Some(seed) = seed {
        assert!(
            MmpBlock::parse(&block.encode(Some(seed)), Some(seed)).is_ok()
                || block.mmp_magic != EXT4_MMP_MAGIC
        );
    }
}

/// The superblock parser, and encode(parse(x)) parses again to the same fields.
pub fn superblock(data: &[u8]) {
    let Ok(sb) = Superblock::parse(data) else {
        return;
    };
    let again = Superblock::parse(&sb.encode()).expect("re-encoded superblock parses");
    assert_eq!(again.s_mmp_block, sb.s_mmp_block);
    assert_eq!(again.blocks_count, sb.blocks_count);
    // Encoding is a fixed point: every field of the table is written back as it was read.
    assert_eq!(&again.encode()[..], &sb.encode()[..]);
    let _ = (
        sb.mmp_block_in_range(),
        sb.mmp_csum_seed(),
        sb.uuid_string(),
        sb.label(),
    );
}

/// The group descriptor parser: decode/parse never panic on any bytes, size or checksum mode
/// (chosen by the first 6 bytes), and a re-encoded descriptor verifies and re-encodes to the
/// same bytes.
pub fn group_desc(data: &[u8]) {
    if data.len() < 6 {
        return;
    }
    let size = [32usize, 64, 128, 256, 1024, 48, 0][usize::from(data[0]) % 7];
    let group = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let csum = match data[5] % 3 {
        0 => DescCsum::None,
        1 => DescCsum::Crc16 {
            uuid: [data[1]; 16],
        },
        _ => DescCsum::Crc32c {
            seed: group.rotate_left(7),
        },
    };
    let body = &data[6..];
    let _ = GroupDesc::parse(body, size, group, csum);
    if let Ok(d) = GroupDesc::decode(body, size) {
        let enc = d.encode(group, csum);
        let back =
            GroupDesc::parse(&enc, size, group, csum).expect("a re-encoded descriptor verifies");
        assert_eq!(back.encode(group, csum), enc);
        assert_eq!(back.bg_free_blocks_count, d.bg_free_blocks_count);
    }
}

/// The handoff record in `mmp_pad2`: never valid on a block whose sequence is not live or does
/// not match its copy, a valid one survives a round trip, a newer version is never valid, and
/// any block given a record by `set_handoff` carries it exactly when its sequence is live.
pub fn handoff_record(data: &[u8]) {
    let Ok(block) = MmpBlock::decode(data) else {
        return;
    };
    let read = block.handoff();
    if let HandoffRead::Valid(rec) = &read {
        assert!(matches!(block.seq_class(), SeqClass::Live(_)));
        let again = MmpBlock::decode(&block.encode_raw()).expect("a re-encoded block decodes");
        assert_eq!(again.handoff().valid(), Some(rec));
        let mut moved = block.clone();
        moved.mmp_seq = moved.mmp_seq.wrapping_add(1);
        assert!(moved.handoff().valid().is_none());
        assert_eq!(parse_nonce(&format_nonce(rec.nonce)), Ok(rec.nonce));
    }
    let mut ours = block.clone();
    let rec = HandoffRecord {
        step: HandoffStep::Offered,
        nonce: u64::from(block.mmp_seq) << 7,
        offered_at: block.mmp_time,
        source: block.nodename(),
        target: block.bdevname(),
    };
    ours.set_handoff(Some(&rec));
    let live = matches!(ours.seq_class(), SeqClass::Live(_));
    assert_eq!(ours.handoff().valid().is_some(), live);
    assert!(
        ours.fence_tag().is_none(),
        "a handoff block never carries a fence tag"
    );
    if live {
        ours.set_handoff_version_for_test(2);
        assert_eq!(ours.handoff(), HandoffRead::Newer { version: 2 });
    }
    if let Ok(text) = std::str::from_utf8(data.get(..16).unwrap_or_default()) {
        let _ = parse_nonce(text);
    }
}
