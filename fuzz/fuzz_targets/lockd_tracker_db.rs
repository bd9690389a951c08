#![no_main]
//! nfsdcld databases (arbitrary bytes as main.sqlite) read by the tracker check: an error,
//! never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path =
        std::env::temp_dir().join(format!("lockd-tracker-fuzz-{}.sqlite", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = lockd_recover::tracker::read(&path);
        let _ = lockd_recover::tracker::reclaim_progress(&path);
    }
});
