//! The MMP block parser: decode, verify with and without a checksum seed, re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libmmp::ondisk::fence_tag::{FenceKind, FenceTag};
use libmmp::ondisk::mmp::{MmpBlock, MmpError, EXT4_MMP_MAGIC};

fuzz_target!(|data: &[u8]| {
    let seed = data.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let body = data.get(4..).unwrap_or_default();
    if let Ok(block) = MmpBlock::decode(body) {
        // Decoding is total and re-encoding is byte-exact.
        assert_eq!(&block.encode_raw()[..], &body[..1024]);
        // A bad magic wins over a bad checksum, as in e2fsprogs' ext2fs_mmp_read.
        if block.mmp_magic != EXT4_MMP_MAGIC {
            assert_eq!(block.verify(seed), Err(MmpError::BadMagic { found: block.mmp_magic }));
        }
        let _ = block.verify(seed);
        let _ = block.verify(None);
        let _ = (block.seq_class(), block.nodename(), block.bdevname());
        // The self-fence tag: a valid one survives a round trip, and any block re-tagged by
        // set_fence_tag validates exactly when its sequence is live.
        if let Some(tag) = block.fence_tag() {
            assert_eq!(MmpBlock::decode(&block.encode_raw()).unwrap().fence_tag(), Some(tag));
            let mut moved = block.clone();
            moved.mmp_seq = moved.mmp_seq.wrapping_add(1);
            assert_eq!(moved.fence_tag(), None);
        }
        let mut tagged = block.clone();
        let tag = FenceTag {
            bound_ms: 5_000,
            interval_ms: 1_000,
            kind: FenceKind::Watchdog,
        };
        tagged.set_fence_tag(Some(tag));
        let live = matches!(tagged.seq_class(), libmmp::ondisk::mmp::SeqClass::Live(_));
        assert_eq!(tagged.fence_tag().is_some(), live);
        if let Some(seed) = seed {
            assert!(MmpBlock::parse(&block.encode(Some(seed)), Some(seed)).is_ok() || block.mmp_magic != EXT4_MMP_MAGIC);
        }
    }
});
