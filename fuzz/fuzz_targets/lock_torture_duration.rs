//! Command-line durations: parsing must be total.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lock_torture::duration::parse_duration;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_duration(s);
    }
});
