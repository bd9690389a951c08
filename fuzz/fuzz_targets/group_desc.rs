//! The group descriptor parser: decode/parse never panic on any bytes, size or checksum mode,
//! and a re-encoded descriptor verifies and re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libmmp::ondisk::group_desc::{DescCsum, GroupDesc};

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let size = [32usize, 64, 128, 256, 1024, 48, 0][usize::from(data[0]) % 7];
    let group = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let csum = match data[5] % 3 {
        0 => DescCsum::None,
        1 => DescCsum::Crc16 { uuid: [data[1]; 16] },
        _ => DescCsum::Crc32c { seed: group.rotate_left(7) },
    };
    let body = &data[6..];
    let _ = GroupDesc::parse(body, size, group, csum);
    if let Ok(d) = GroupDesc::decode(body, size) {
        let enc = d.encode(group, csum);
        let back = GroupDesc::parse(&enc, size, group, csum).expect("a re-encoded descriptor verifies");
        assert_eq!(back.encode(group, csum), enc);
        assert_eq!(back.bg_free_blocks_count, d.bg_free_blocks_count);
    }
});
