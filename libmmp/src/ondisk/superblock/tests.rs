//! Superblock parser and encoder tests: round trips, every corrupt kind, one corrupt byte.

use super::*;
use proptest::prelude::*;

/// A minimal valid superblock: 4 KiB blocks, MMP at block 1000, optional metadata_csum.
pub(crate) fn sample(metadata_csum: bool) -> [u8; SUPERBLOCK_SIZE] {
    let mut b = [0u8; SUPERBLOCK_SIZE];
    S_BLOCKS_COUNT_LO.put(&mut b, 16384u32);
    S_LOG_BLOCK_SIZE.put(&mut b, 2u32);
    S_BLOCKS_PER_GROUP.put(&mut b, 32768u32);
    S_MNT_COUNT.put(&mut b, 7u16);
    S_LASTCHECK.put(&mut b, 1_700_000_000u32);
    S_MAGIC.put(&mut b, EXT4_SUPER_MAGIC);
    S_FEATURE_INCOMPAT.put(&mut b, feature::INCOMPAT_MMP);
    for (i, x) in b[S_UUID.range()].iter_mut().enumerate() {
        *x = 0x10 + i as u8;
    }
    S_MMP_UPDATE_INTERVAL.put(&mut b, 5u16);
    S_MMP_BLOCK.put(&mut b, 1000u64);
    if metadata_csum {
        S_FEATURE_RO_COMPAT.put(&mut b, feature::RO_COMPAT_METADATA_CSUM);
        S_CHECKSUM_TYPE.put(&mut b, EXT4_CRC32C_CHKSUM);
        let c = superblock_csum(&b);
        S_CHECKSUM.put(&mut b, c);
    }
    b
}

/// A 64-bit block count lets `s_mmp_block * block_size` overflow u64: such a block number
/// is out of range (no device is that large), never a panic or a wrapped offset that a
/// claim would then write to.
#[test]
fn mmp_block_whose_offset_overflows_is_out_of_range() {
    let mut b = sample(false);
    S_LOG_BLOCK_SIZE.put(&mut b, 6u32);
    let incompat = feature::INCOMPAT_MMP | feature::INCOMPAT_64BIT;
    S_FEATURE_INCOMPAT.put(&mut b, incompat);
    S_BLOCKS_COUNT_HI.put(&mut b, u32::MAX);
    // 2^50 blocks of 64 KiB: byte offset 2^66, which wraps to 0.
    S_MMP_BLOCK.put(&mut b, 1u64 << 50);
    let sb = Superblock::parse(&b).unwrap();
    assert!(!sb.mmp_block_in_range());
    let mut img = vec![0u8; 8192];
    img[1024..2048].copy_from_slice(&b);
    let fs = crate::fs::MmpFs::open(crate::io::MemDevice::new("big.img", img)).unwrap();
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
    S_FEATURE_INCOMPAT.put(&mut b, incompat);
    S_CHECKSUM_SEED.put(&mut b, 0xDEAD_BEEFu32);
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
    b[S_MAGIC.offset] = 0;
    assert!(matches!(
        Superblock::parse(&b),
        Err(SuperblockError::BadMagic { .. })
    ));
    let mut b = sample(false);
    b[S_LOG_BLOCK_SIZE.offset] = 7;
    assert!(matches!(
        Superblock::parse(&b),
        Err(SuperblockError::BadBlockSize { .. })
    ));
    let mut b = sample(false);
    S_BLOCKS_COUNT_LO.put(&mut b, 0);
    assert!(matches!(
        Superblock::parse(&b),
        Err(SuperblockError::BadBlocksCount { .. })
    ));
    let mut b = sample(true);
    b[S_CHECKSUM_TYPE.offset] = 2;
    assert!(matches!(
        Superblock::parse(&b),
        Err(SuperblockError::BadChecksumType { found: 2 })
    ));
    let mut b = sample(true);
    b[S_CHECKSUM.offset] ^= 1;
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
    fn round_trip(interval in 1u16..=300, block in 1u64..16384, csum in any::<bool>(), label in any::<[u8; 16]>(), mnt_count in any::<u16>(), lastcheck in any::<u32>()) {
        let mut sb = Superblock::parse(&sample(csum)).unwrap();
        sb.s_mmp_update_interval = interval;
        sb.s_mmp_block = block;
        sb.s_volume_name = label;
        sb.s_mnt_count = mnt_count;
        sb.s_lastcheck = lastcheck;
        let again = Superblock::parse(&sb.encode()).unwrap();
        prop_assert_eq!(again.s_mmp_update_interval, interval);
        prop_assert_eq!(again.s_mmp_block, block);
        prop_assert_eq!(again.s_volume_name, label);
        prop_assert_eq!(again.s_mnt_count, mnt_count);
        prop_assert_eq!(again.s_lastcheck, lastcheck);
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

/// `s_mnt_count` is the le16 at 0x34 and `s_lastcheck` the le32 at 0x40 (`struct
/// ext4_super_block`), and adding them to the table left encode byte-identical: parsing and
/// encoding a superblock gives back its exact bytes.
#[test]
fn mount_count_is_read_and_encode_is_byte_identical() {
    for csum in [false, true] {
        let b = sample(csum);
        assert_eq!(&b[0x34..0x36], &[7, 0]);
        assert_eq!(&b[0x40..0x44], &1_700_000_000u32.to_le_bytes());
        let sb = Superblock::parse(&b).unwrap();
        assert_eq!(sb.s_mnt_count, 7);
        assert_eq!(sb.s_lastcheck, 1_700_000_000);
        assert_eq!(sb.encode(), b, "metadata_csum {csum}");
    }
}

/// The field table: inside the superblock, in offset order, no two fields overlapping, each C
/// name once.
#[test]
fn field_table_is_ordered_and_disjoint() {
    for w in FIELDS.windows(2) {
        assert!(
            w[0].offset + w[0].size <= w[1].offset,
            "{} overlaps or follows {}",
            w[0].name,
            w[1].name
        );
    }
    let last = FIELDS.last().unwrap();
    assert_eq!(
        last.offset + last.size,
        SUPERBLOCK_SIZE,
        "s_checksum ends the superblock"
    );
    let mut names: Vec<_> = FIELDS.iter().map(|f| f.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), FIELDS.len());
}

#[test]
fn backup_superblock_fields() {
    let sb = sample(true);
    let mut primary = [0u8; SUPERBLOCK_SIZE];
    primary.copy_from_slice(&sb);
    S_STATE.put(&mut primary, EXT2_VALID_FS);
    let c = superblock_csum(&primary);
    S_CHECKSUM.put(&mut primary, c);
    let b = backup_superblock(&primary, 70_000);
    assert_eq!(S_BLOCK_GROUP_NR.get(&b), 0xFFFF);
    assert_eq!(superblock_state(&b), 0);
    let parsed = Superblock::parse(&b).unwrap();
    assert_eq!(parsed.s_mmp_block, 1000);
}
