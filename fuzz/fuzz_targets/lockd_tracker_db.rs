//! nfsdcld databases (arbitrary bytes as main.sqlite) read by the tracker check.
//! The body is `fuzz_entries::lockd_tracker_db` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::lockd_tracker_db(data));
