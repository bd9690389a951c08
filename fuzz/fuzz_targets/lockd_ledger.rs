#![no_main]
//! Lock ledger files read from shared storage: must never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = lockd_recover::ledger::parse(std::path::Path::new("fuzz"), data);
});
