//! The group descriptor parser: decode/parse never panic on any bytes, size or checksum mode,
//! The body is `fuzz_entries::group_desc` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::group_desc(data));
