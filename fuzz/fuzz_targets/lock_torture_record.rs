//! Torture records are read back from a shared file another client may have mangled: decoding
//! The body is `fuzz_entries::lock_torture_record` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::lock_torture_record(data));
