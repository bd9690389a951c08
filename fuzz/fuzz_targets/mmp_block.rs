//! The MMP block parser: decode, verify with and without a checksum seed, re-encode.
//! The body is `fuzz_entries::mmp_block` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::mmp_block(data));
