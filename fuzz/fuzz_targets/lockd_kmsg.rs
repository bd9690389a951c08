//! Kernel log records (/dev/kmsg) read after nfsd starts.
//! The body is `fuzz_entries::lockd_kmsg` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::lockd_kmsg(data));
