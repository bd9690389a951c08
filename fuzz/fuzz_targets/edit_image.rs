//! A whole (small, untrusted) image through `enable`, `clear --force` and `disable` in memory:
//! the geometry, descriptor table, bitmap and backup code must refuse garbage with an error,
//! never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libmmp::protocol::clock::Clock;
use libmmp::io::MemDevice;
use libmmp::edit::{self, EditEnv, Settle};
use libmmp::fs::MmpFs;
use std::cell::Cell;
use std::time::Duration;

#[derive(Default)]
struct FakeClock(Cell<Duration>);

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.0.get()
    }
    fn sleep(&self, d: Duration) {
        self.0.set(self.0.get() + d);
    }
}

fuzz_target!(|data: &[u8]| {
    let env = EditEnv {
        nodename: "fuzz".into(),
        bdevname: "fuzz.img".into(),
        wall_time: 0,
        claim_seq: 1,
    };
    let clock = FakeClock::default();
    if let Ok(fs) = MmpFs::open(MemDevice::new("fuzz.img", data.to_vec())) {
        let _ = edit::enable(&fs, Some(5), &env);
    }
    if let Ok(fs) = MmpFs::open(MemDevice::new("fuzz.img", data.to_vec())) {
        let _ = edit::clear(&fs, &env, &clock, true, &mut |_, _| {});
        let _ = edit::disable(&fs, &env, &clock, Settle::For(Duration::from_secs(2)), &mut |_, _| {});
    }
});
