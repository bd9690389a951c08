//! A whole (small, untrusted) image through `enable`, `clear --force` and `disable` in memory:
//! The body is `fuzz_entries::edit_image` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::edit_image(data));
