//! /proc/locks text: must never panic.
//! The body is `fuzz_entries::lockd_proc_locks` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::lockd_proc_locks(data));
