//! mmpd's state file (`<run_dir>/<key>.state`, read by `mmp-tool status`): decoding any bytes
//! never panics, and decode(encode(x)) is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libmmp::host::run_dir::HolderState;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let st = HolderState::decode(&text);
    let again = HolderState::decode(&st.encode());
    assert_eq!(again.encode(), st.encode());
});
