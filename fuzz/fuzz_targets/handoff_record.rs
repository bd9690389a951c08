//! The handoff record in the MMP block's padding: validity bound to the live sequence, round
//! trips, newer versions refused. The body is `fuzz_entries::handoff_record` (tests/fuzz-entries),
//! which CI's replay test also runs on every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::handoff_record(data));
