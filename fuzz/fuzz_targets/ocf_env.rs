//! The OCF environment an agent reads (`OCF_RESKEY_*`, `CRM_meta_*`, `OCF_CHECK_LEVEL`): any
//! The body is `fuzz_entries::ocf_env` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::ocf_env(data));
