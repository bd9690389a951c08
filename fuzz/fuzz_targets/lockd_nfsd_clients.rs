#![no_main]
//! /proc/fs/nfsd/clients/*/info and states as nfsd prints them: must never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = lockd_recover::v4state::parse_info(&text);
    let _ = lockd_recover::v4state::parse_states(&text);
});
