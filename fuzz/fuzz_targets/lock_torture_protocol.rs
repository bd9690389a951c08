//! Peer-protocol lines arrive from the network (multi-host workers): decoding must be total, and
//! whatever decodes must survive a re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lock_torture::protocol::{decode_request, decode_response, encode_line};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = decode_request(data) {
        let line = encode_line(&req);
        assert_eq!(decode_request(&line).ok(), Some(req));
    }
    if let Ok(resp) = decode_response(data) {
        let line = encode_line(&resp);
        assert_eq!(decode_response(&line).ok(), Some(resp));
    }
});
