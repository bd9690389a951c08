//! Self-fence regressions in the manner of sbd's `tests/regressions.sh`: the watchdog and the
//! reset are faked (mmpd's test watchdog file, and [`WatchdogSim`] counting down from its pets
//! and SIGKILLing mmpd when it fires), the disk is real I/O through a loop device over a FUSE
//! file that fails, slows or takes another writer on command ([`FaultDisk`]; this kernel has
//! no device-mapper). Every MMP write that reaches the disk is timestamped there, so each test
//! measures what a reader relies on: the block it last saw changing promised "reset within
//! bound_ms" (the fence tag), and the watchdog fires within that.
//!
//! - SIGSTOP mmpd: the watchdog fires within its timeout of the last pet, and within the
//!   published bound of the last block written.
//! - The disk fails (EIO): mmpd fences (stops petting) within fail_after, writes nothing more
//!   when the disk comes back before the reset, and the watchdog fires within the bound.
//! - The disk stalls (I/O hangs): mmpd fences from its main loop; the write that hung lands when
//!   the disk resumes, nothing after it, and the watchdog fires within that write's bound.
//! - The disk slows (each I/O delayed, a beat still far within fail_after): no fence.
//! - Another writer appears: mmpd fences within one interval, never overwrites it.
//!
//! Root, /dev/fuse and loop devices (skips otherwise; fails under CI=true). Each test takes
//! about 20 s: a 9 s claim, then the scenario. Measured times are printed (`--nocapture`).

use test_support::prelude::*;

use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::mmp::{MmpBlock, EXT4_MMP_SEQ_CLEAN};
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::{Duration, Instant};

const MMPD: &str = env!("CARGO_BIN_EXE_mmpd");
const CLAIM: Duration = Duration::from_secs(30);
const INTERVAL: Duration = Duration::from_secs(1);
const FAIL_INTERVALS: u32 = 3;
const FAIL_AFTER: Duration = Duration::from_secs(3);
const WATCHDOG: Duration = Duration::from_secs(3);
/// Process scheduling and the 100 ms main loop on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);

/// mmpd holding a fault disk with the (test) watchdog fence, and the watchdog counting.
/// Fields drop in order: the fault is cleared first (a process blocked in stalled I/O cannot
/// die), then mmpd is killed, then the disk goes, then the files.
struct Holder {
    mmpd: Proc,
    dog: WatchdogSim,
    disk: FaultDisk,
    /// Byte offset of the MMP block on the disk.
    mmp_at: u64,
    _img: Image,
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.disk.set(Fault::None);
    }
}

/// A landed MMP block write: when it arrived, when it landed, what it said.
struct Beat {
    arrived: Instant,
    at: Instant,
    block: MmpBlock,
}

impl Holder {
    fn start() -> Option<Holder> {
        if !require_fuse() {
            return None;
        }
        let img = Image::new();
        let mmp_at = {
            let fs = MmpFs::open(Device::open(&img.path, Access::ReadOnly).unwrap()).unwrap();
            fs.superblock().mmp_offset()
        };
        let disk = FaultDisk::new(&img.path).expect("FUSE disk");
        let wd = img.file("watchdog");
        std::fs::write(&wd, b"").unwrap();
        let (run, interval, fails, timeout) = (
            img.file("run"),
            INTERVAL.as_secs().to_string(),
            FAIL_INTERVALS.to_string(),
            WATCHDOG.as_secs().to_string(),
        );
        let mut mmpd = Proc::spawn(
            Path::new(MMPD),
            &[
                "--run-dir",
                run.to_str().unwrap(),
                "--node-name",
                "host-a",
                "--interval",
                &interval,
                "--fail-intervals",
                &fails,
                "--fence",
                "watchdog",
                "--watchdog-device",
                wd.to_str().unwrap(),
                "--watchdog-timeout",
                &timeout,
                disk.dev().to_str().unwrap(),
            ],
            img.file("mmpd.log"),
            &[("MMPD_TEST_FAKE_WATCHDOG", "1")],
        );
        assert!(mmpd.wait_log("ready:", CLAIM), "not ready:\n{}", mmpd.log());
        let dog = WatchdogSim::start(&wd, WATCHDOG, mmpd.pid());
        let h = Holder {
            mmpd,
            dog,
            disk,
            mmp_at,
            _img: img,
        };
        // Steady state: petted, and the blocks carry the self-fence tag.
        assert!(
            wait_for(Duration::from_secs(5), || h.dog.last_pet().is_some()
                && h.beats()
                    .last()
                    .is_some_and(|b| b.block.fence_tag().is_some())),
            "no tagged beat and pet:\n{}",
            h.mmpd.log()
        );
        Some(h)
    }

    /// The MMP block writes that landed, in order.
    fn beats(&self) -> Vec<Beat> {
        self.disk
            .writes_at(self.mmp_at)
            .into_iter()
            .filter(|w| w.landed)
            .filter_map(|w| {
                let off = (self.mmp_at - w.offset) as usize;
                let block = MmpBlock::decode(w.data.get(off..off + 1024)?).ok()?;
                Some(Beat {
                    arrived: w.arrived,
                    at: w.at,
                    block,
                })
            })
            .collect()
    }

    /// This holder's landed beats (not another writer's).
    fn own_beats(&self) -> Vec<Beat> {
        let mut b = self.beats();
        b.retain(|b| b.block.nodename() == "host-a");
        b
    }

    /// When the log first had `needle`, polled from now.
    fn wait_log_at(&mut self, needle: &str, limit: Duration) -> Option<Instant> {
        self.mmpd.wait_log(needle, limit).then(Instant::now)
    }

    /// The fence promise, checked on every tagged beat that landed: the watchdog fired within
    /// the bound of the beat's arrival at the disk (and so of any reader seeing it). Returns
    /// (last beat -> fire, the bound).
    fn assert_bound_kept(&self, fired: Instant) -> (Duration, Duration) {
        let beats = self.own_beats();
        let mut last = None;
        for b in &beats {
            let Some(tag) = b.block.fence_tag() else {
                continue;
            };
            let bound = Duration::from_millis(u64::from(tag.bound_ms));
            assert!(
                fired <= b.arrived + bound,
                "a beat (seq {:#x}) promised reset within {bound:?} of its arrival, the watchdog fired {:?} after it:\n{}",
                b.block.mmp_seq,
                fired.duration_since(b.arrived),
                self.mmpd.log()
            );
            assert!(b.at <= fired, "a beat landed after the reset");
            last = Some((fired.duration_since(b.at), bound));
        }
        last.expect("tagged beats")
    }

    fn log(&self) -> String {
        self.mmpd.log()
    }
}

#[test]
fn loop_fuse_sigstop_watchdog_fires_within_its_bound() {
    let Some(mut h) = Holder::start() else {
        return;
    };
    std::thread::sleep(Duration::from_millis(1500));
    let stopped = Instant::now();
    h.mmpd.signal(Signal::SIGSTOP);
    let fired = wait_for(FAIL_AFTER + WATCHDOG + SLACK * 2, || {
        h.dog.fired().is_some()
    });
    assert!(fired, "the watchdog did not fire:\n{}", h.log());
    let fired = h.dog.fired().unwrap();
    let last_pet = h.dog.last_pet().unwrap();
    let took = fired.duration_since(stopped);
    // A stopped daemon pets no more: the watchdog fires its timeout after the last pet, which
    // was at most one interval before the stop.
    assert!(last_pet <= stopped + Duration::from_millis(500));
    assert!(
        took <= WATCHDOG + INTERVAL + SLACK,
        "fired {took:?} after SIGSTOP"
    );
    let (after_last, bound) = h.assert_bound_kept(fired);
    eprintln!(
        "SIGSTOP -> watchdog fired: {:.2} s (timeout {} s); last beat landed -> fired: {:.2} s, published bound {:.1} s",
        took.as_secs_f64(),
        WATCHDOG.as_secs(),
        after_last.as_secs_f64(),
        bound.as_secs_f64()
    );
    assert_eq!(
        h.mmpd.wait_code(Duration::from_secs(5)),
        Some(-1),
        "killed by the reset"
    );
}

#[test]
fn loop_fuse_failing_disk_fences_within_fail_after_and_writes_nothing_more() {
    let Some(mut h) = Holder::start() else {
        return;
    };
    std::thread::sleep(Duration::from_millis(1500));
    let failed = Instant::now();
    h.disk.set(Fault::Fail);
    let fenced = h.wait_log_at("FENCING", FAIL_AFTER + INTERVAL + SLACK * 2);
    let fenced = fenced.unwrap_or_else(|| panic!("not fenced:\n{}", h.log()));
    let to_fence = fenced.duration_since(failed);
    // The disk comes back before the reset: a fenced holder must not write again (its tag
    // would promise a bound its already running watchdog does not keep).
    h.disk.set(Fault::None);
    let restored = Instant::now();
    assert!(
        wait_for(WATCHDOG + INTERVAL + SLACK * 2, || h.dog.fired().is_some()),
        "the watchdog did not fire:\n{}",
        h.log()
    );
    let fired = h.dog.fired().unwrap();
    let tries = h.disk.failed_ios();
    assert!(tries >= 1, "mmpd never tried the failing disk");
    assert!(
        h.own_beats().iter().all(|b| b.arrived < failed),
        "a beat landed after the disk failed (restored {:?} after):\n{}",
        restored.duration_since(failed),
        h.log()
    );
    // The last success was at most one interval before the failure; the fence follows when
    // none has succeeded for fail_after.
    assert!(
        to_fence <= FAIL_AFTER + SLACK,
        "fenced {to_fence:?} after the disk failed"
    );
    let line = h
        .log()
        .lines()
        .find(|l| l.contains("FENCING"))
        .unwrap_or_default()
        .to_string();
    let (after_last, bound) = h.assert_bound_kept(fired);
    eprintln!(
        "disk fails -> fenced: {:.2} s (fail_after {} s) -> watchdog fired: {:.2} s; last beat landed -> fired: {:.2} s, published bound {:.1} s; {tries} failed I/Os\n  {line}",
        to_fence.as_secs_f64(),
        FAIL_AFTER.as_secs(),
        fired.duration_since(failed).as_secs_f64(),
        after_last.as_secs_f64(),
        bound.as_secs_f64()
    );
}

#[test]
fn loop_fuse_stalled_disk_fences_and_the_hung_write_keeps_its_bound() {
    let Some(mut h) = Holder::start() else {
        return;
    };
    std::thread::sleep(Duration::from_millis(1500));
    let stalled = Instant::now();
    h.disk.set(Fault::Stall);
    let fenced = h.wait_log_at("FENCING", FAIL_AFTER + INTERVAL + SLACK * 2);
    let fenced = fenced.unwrap_or_else(|| panic!("not fenced:\n{}", h.log()));
    let to_fence = fenced.duration_since(stalled);
    h.disk.set(Fault::None);
    assert!(
        wait_for(WATCHDOG + INTERVAL + SLACK * 2, || h.dog.fired().is_some()),
        "the watchdog did not fire:\n{}",
        h.log()
    );
    let fired = h.dog.fired().unwrap();
    // The hung write (at most one: the fenced device gets no more) arrived before the stall.
    let late: Vec<Beat> = h
        .own_beats()
        .into_iter()
        .filter(|b| b.at >= stalled)
        .collect();
    assert!(
        late.len() <= 1,
        "{} beats landed after the stall",
        late.len()
    );
    assert!(late
        .iter()
        .all(|b| b.arrived <= stalled + Duration::from_millis(50)));
    assert!(
        to_fence <= FAIL_AFTER + INTERVAL + SLACK,
        "fenced {to_fence:?} after the stall"
    );
    let line = h
        .log()
        .lines()
        .find(|l| l.contains("FENCING"))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("has not returned"), "{line}");
    let (after_last, bound) = h.assert_bound_kept(fired);
    eprintln!(
        "disk stalls -> fenced: {:.2} s (fail_after {} s) -> watchdog fired: {:.2} s; {} hung write(s) landed on resume; last beat landed -> fired: {:.2} s, published bound {:.1} s\n  {line}",
        to_fence.as_secs_f64(),
        FAIL_AFTER.as_secs(),
        fired.duration_since(stalled).as_secs_f64(),
        late.len(),
        after_last.as_secs_f64(),
        bound.as_secs_f64()
    );
}

#[test]
fn loop_fuse_slow_disk_below_the_bound_is_no_fence() {
    let Some(mut h) = Holder::start() else {
        return;
    };
    let delay = Duration::from_millis(400);
    let slowed = Instant::now();
    let before = h.own_beats().len();
    h.disk.set(Fault::Delay(delay));
    std::thread::sleep(Duration::from_secs(8));
    h.disk.set(Fault::None);
    let beats = h.own_beats();
    let slow: Vec<&Beat> = beats[before..].iter().collect();
    let gap = slow
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .max()
        .unwrap_or_default();
    let log = h.log();
    assert!(!log.contains("FENCING"), "a slow disk was fenced:\n{log}");
    assert!(h.dog.fired().is_none(), "the watchdog fired:\n{log}");
    assert!(
        slow.len() >= 4,
        "{} beats in 8 s on the slow disk:\n{log}",
        slow.len()
    );
    assert!(gap < FAIL_AFTER, "{gap:?} between beats");
    eprintln!(
        "disk slowed by {} ms per I/O for {:.1} s: {} beats, longest gap {:.2} s (fail_after {} s): no fence",
        delay.as_millis(),
        slowed.elapsed().as_secs_f64(),
        slow.len(),
        gap.as_secs_f64(),
        FAIL_AFTER.as_secs()
    );
    // Still healthy: a clean stop releases to CLEAN and disarms the watchdog.
    h.mmpd.signal(Signal::SIGTERM);
    assert_eq!(
        h.mmpd.wait_code(Duration::from_secs(10)),
        Some(0),
        "{}",
        h.log()
    );
    assert_eq!(read_block(h.disk.dev()).mmp_seq, EXT4_MMP_SEQ_CLEAN);
    assert!(h.dog.events().closed.is_some(), "no magic close");
}

#[test]
fn loop_fuse_another_writer_is_fenced_within_one_interval() {
    let Some(mut h) = Holder::start() else {
        return;
    };
    std::thread::sleep(Duration::from_millis(1500));
    // Another host: a second loop device on the same FUSE file.
    let other = Loop::attach(&h.disk.file());
    write_foreign(&other.dev, 0x1234_5678, "intruder");
    let wrote = Instant::now();
    let fenced = h.wait_log_at("FENCING", INTERVAL + SLACK * 2);
    let fenced = fenced.unwrap_or_else(|| panic!("not fenced:\n{}", h.log()));
    let detect = fenced.duration_since(wrote);
    let line = h
        .log()
        .lines()
        .find(|l| l.contains("FENCING"))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("intruder"), "{line}");
    assert!(
        detect <= INTERVAL + SLACK,
        "detected {detect:?} after the other write"
    );
    assert!(
        wait_for(FAIL_AFTER + WATCHDOG + SLACK * 2, || h
            .dog
            .fired()
            .is_some()),
        "the watchdog did not fire:\n{}",
        h.log()
    );
    let fired = h.dog.fired().unwrap();
    assert!(
        h.own_beats().iter().all(|b| b.arrived < wrote),
        "mmpd wrote over the other writer:\n{}",
        h.log()
    );
    assert_eq!(read_block(&other.dev).nodename(), "intruder");
    let (after_last, bound) = h.assert_bound_kept(fired);
    eprintln!(
        "another writer -> fenced: {:.2} s (interval {} s) -> watchdog fired: {:.2} s; last beat landed -> fired: {:.2} s, published bound {:.1} s\n  {line}",
        detect.as_secs_f64(),
        INTERVAL.as_secs(),
        fired.duration_since(wrote).as_secs_f64(),
        after_last.as_secs_f64(),
        bound.as_secs_f64()
    );
    drop(other);
}
