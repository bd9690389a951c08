//! sysfs uevent files (`DEVNAME=`: the block device under a filesystem, for the final ledger's
//! mount mark). The body is `fuzz_entries::sysfs_uevent` (tests/fuzz-entries), which CI's
//! replay test also runs on every kept input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_entries::sysfs_uevent(data));
