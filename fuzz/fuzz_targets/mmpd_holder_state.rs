//! mmpd's state file (`<run_dir>/<key>.state`, read by `mmp-tool status`): decoding any bytes
//! The body is `fuzz_entries::mmpd_holder_state` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::mmpd_holder_state(data));
