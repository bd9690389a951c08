//! The superblock parser, and encode(parse(x)) parses again to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libmmp::ondisk::superblock::Superblock;

fuzz_target!(|data: &[u8]| {
    if let Ok(sb) = Superblock::parse(data) {
        let again = Superblock::parse(&sb.encode()).expect("re-encoded superblock parses");
        assert_eq!(again.s_mmp_block, sb.s_mmp_block);
        assert_eq!(again.blocks_count, sb.blocks_count);
        // Encoding is a fixed point: every field of the table is written back as it was read.
        assert_eq!(&again.encode()[..], &sb.encode()[..]);
        let _ = (sb.mmp_block_in_range(), sb.mmp_csum_seed(), sb.uuid_string(), sb.label());
    }
});
