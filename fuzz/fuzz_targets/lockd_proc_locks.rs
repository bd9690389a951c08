#![no_main]
//! /proc/locks text: must never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = lockd_recover::locks::parse(text);
    }
});
