//! mmpd's TOML configuration: parsing and merging any text never panics; what merges is valid.
//! The body is `fuzz_entries::mmpd_config` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::mmpd_config(data));
