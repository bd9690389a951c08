#![no_main]
//! Kernel log records (/dev/kmsg) read after nfsd starts: must never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = lockd_recover::kmsg::parse(&String::from_utf8_lossy(data));
});
