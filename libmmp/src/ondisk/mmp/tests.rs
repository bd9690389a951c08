//! MMP block tests: sequence classes, the kernel's checksum convention, the verify order,
//! round trips and corrupt-one-byte checks.

use super::*;
use crate::ondisk::bytes::le32;
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
