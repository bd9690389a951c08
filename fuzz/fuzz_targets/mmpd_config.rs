//! mmpd's TOML configuration: parsing and merging any text never panics; what merges is valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmpd::cli::Cli;
use mmpd::config::{merge, parse_file};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(file) = parse_file(Path::new("fuzz.toml"), &text) {
        let cli = Cli::empty();
        if let Ok(cfg) = merge(&cli, &file) {
            for d in &cfg.devices {
                assert!(d.heartbeat.validate().is_ok());
            }
        }
    }
});
