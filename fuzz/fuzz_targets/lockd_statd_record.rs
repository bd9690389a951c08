#![no_main]
//! sm/ and sm.bak/ record files: must never panic; whatever parses must re-encode to a line
//! that parses to the same record.
use libfuzzer_sys::fuzz_target;
use lockd_recover::statd::{parse_file, MonitorRecord};

fuzz_target!(|data: &[u8]| {
    let (records, _malformed) = parse_file(std::path::Path::new("fuzz"), data);
    for r in records {
        assert_eq!(MonitorRecord::parse_line(&r.to_line()).as_ref(), Ok(&r));
    }
});
