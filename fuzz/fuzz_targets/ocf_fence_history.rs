//! Pacemaker's fencing history, device list and CIB, as the mmp-fs agent reads them.
//! The body is `fuzz_entries::ocf_fence_history` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::ocf_fence_history(data));
