//! Peer-protocol lines arrive from the network (multi-host workers): decoding must be total, and
//! The body is `fuzz_entries::lock_torture_protocol` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::lock_torture_protocol(data));
