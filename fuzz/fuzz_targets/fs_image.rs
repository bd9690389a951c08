//! A whole (small) image: superblock, MMP block lookup and verification, as `status` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libmmp::io::MemDevice;
use libmmp::fs::MmpFs;

fuzz_target!(|data: &[u8]| {
    let dev = MemDevice::new("fuzz.img", data.to_vec());
    if let Ok(fs) = MmpFs::open(dev) {
        let _ = fs.read_mmp_raw();
        let _ = fs.read_mmp();
    }
});
