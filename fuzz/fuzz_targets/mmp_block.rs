//! The MMP block parser: decode, verify with and without a checksum seed, re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libmmp::mmp::MmpBlock;

fuzz_target!(|data: &[u8]| {
    let seed = data.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let body = data.get(4..).unwrap_or_default();
    if let Ok(block) = MmpBlock::decode(body) {
        // Decoding is total and re-encoding is byte-exact.
        assert_eq!(&block.encode_raw()[..], &body[..1024]);
        let _ = block.verify(seed);
        let _ = block.verify(None);
        let _ = (block.seq_class(), block.nodename(), block.bdevname());
        if let Some(seed) = seed {
            assert!(MmpBlock::parse(&block.encode(Some(seed)), Some(seed)).is_ok() || block.mmp_magic != libmmp::mmp::EXT4_MMP_MAGIC);
        }
    }
});
