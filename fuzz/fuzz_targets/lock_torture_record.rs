//! Torture records are read back from a shared file another client may have mangled: decoding
//! must be total, and a decoded non-initial record must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lock_torture::record::{decode_all, Record, RECORD_SIZE};

fuzz_target!(|data: &[u8]| {
    let _ = decode_all(data);
    if data.len() == RECORD_SIZE {
        if let Ok(r) = Record::decode(data) {
            if data.iter().any(|&b| b != 0) {
                assert_eq!(&r.encode()[..], data);
            }
        }
    }
});
