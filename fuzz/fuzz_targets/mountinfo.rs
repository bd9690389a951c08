//! /proc/self/mountinfo (the busy check and the agents read it).
//! The body is `fuzz_entries::mountinfo` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::mountinfo(data));
