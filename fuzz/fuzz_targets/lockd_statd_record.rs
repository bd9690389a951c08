//! sm/ and sm.bak/ record files: must never panic; whatever parses must re-encode to a line
//! The body is `fuzz_entries::lockd_statd_record` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::lockd_statd_record(data));
