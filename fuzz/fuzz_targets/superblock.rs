//! The superblock parser, and encode(parse(x)) parses again to the same fields.
//! The body is `fuzz_entries::superblock` (tests/fuzz-entries), which CI's replay test also runs on
//! every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::superblock(data));
