//! A whole (small) image: superblock, MMP block lookup and verification, as `status` does.
//! The body is `fuzz_entries::fs_image` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::fs_image(data));
