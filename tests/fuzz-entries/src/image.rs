//! Whole (small, untrusted) images in memory, through what `mmp-tool status` and the edits do.

use libmmp::edit::{self, EditEnv, Settle};
use libmmp::fs::MmpFs;
use libmmp::io::MemDevice;
use libmmp::protocol::clock::Clock;
use std::cell::Cell;
use std::time::Duration;

/// A clock whose sleeps return at once, so a whole edit (settle waits included) runs in
/// microseconds.
#[derive(Default)]
struct InstantClock(Cell<Duration>);

impl Clock for InstantClock {
    fn now(&self) -> Duration {
        self.0.get()
    }
    fn sleep(&self, d: Duration) {
        self.0.set(self.0.get() + d);
    }
}

/// The superblock, MMP block lookup and verification, as `status` does.
pub fn fs_image(data: &[u8]) {
    if let Ok(fs) = MmpFs::open(MemDevice::new("fuzz.img", data.to_vec())) {
        let _ = fs.read_mmp_raw();
        let _ = fs.read_mmp();
    }
}

/// `enable`, `clear --force` and `disable`: the geometry, descriptor table, bitmap and backup
/// code must refuse garbage with an error, never panic or allocate without bound.
pub fn edit_image(data: &[u8]) {
    let env = EditEnv {
        nodename: "fuzz".into(),
        bdevname: "fuzz.img".into(),
        wall_time: 0,
        claim_seq: 1,
    };
    let clock = InstantClock::default();
    if let Ok(fs) = MmpFs::open(MemDevice::new("fuzz.img", data.to_vec())) {
        let _ = edit::enable(&fs, Some(5), &env);
    }
    if let Ok(fs) = MmpFs::open(MemDevice::new("fuzz.img", data.to_vec())) {
        let _ = edit::clear(&fs, &env, &clock, true, &mut |_, _| {});
        let _ = edit::disable(
            &fs,
            &env,
            &clock,
            Settle::For(Duration::from_secs(2)),
            &mut |_, _| {},
        );
    }
}
