//! The pool against real image files (mkfs.ext4), with one device's reads held on a gate to
//! stand for a hung device. The claims run on a clock whose sleeps return at once (the
//! claim's waits are libmmp's business); the beats then run in real time on the same clock.

use super::*;
use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
use libmmp::protocol::claim::{self, ClaimOptions};
use libmmp::protocol::heartbeat::HeartbeatConfig;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Holds reads while `hung` is set: a device whose I/O does not return. `sync_hung` holds
/// its filesystem syncs the same way, and `sync_fails` makes them fail.
#[derive(Default)]
struct Gate {
    hung: Mutex<bool>,
    sync_hung: Mutex<bool>,
    sync_fails: AtomicBool,
    cv: Condvar,
    syncfs_calls: AtomicU64,
}

impl Gate {
    fn set(&self, hung: bool) {
        *self.hung.lock().unwrap() = hung;
        self.cv.notify_all();
    }
    fn set_sync(&self, hung: bool) {
        *self.sync_hung.lock().unwrap() = hung;
        self.cv.notify_all();
    }
    fn pass(&self, m: &Mutex<bool>) {
        let mut h = m.lock().unwrap();
        while *h {
            h = self.cv.wait(h).unwrap();
        }
    }
}

/// A real image file behind a gate, in sync group `group` (the test's own numbering, so
/// that images of one temporary directory can stand for several filesystems; the real
/// `syncfs` of that directory's filesystem still runs).
struct Gated {
    dev: Device,
    gate: Arc<Gate>,
    group: Option<u64>,
}

impl BlockIo for Gated {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.gate.pass(&self.gate.hung);
        self.dev.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.dev.write_at(offset, buf)
    }
    fn sync(&self) -> std::io::Result<()> {
        // A filesystem whose syncs hang or fail does so for fdatasync too.
        self.gate.pass(&self.gate.sync_hung);
        if self.gate.sync_fails.load(SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        self.dev.sync()
    }
    fn sync_group(&self) -> Option<u64> {
        self.group
    }
    fn sync_filesystem(&self) -> std::io::Result<()> {
        self.gate.syncfs_calls.fetch_add(1, SeqCst);
        self.gate.pass(&self.gate.sync_hung);
        if self.gate.sync_fails.load(SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        self.dev.sync_filesystem()
    }
    fn size(&self) -> u64 {
        self.dev.size()
    }
    fn logical_block_size(&self) -> u32 {
        self.dev.logical_block_size()
    }
    fn name(&self) -> &str {
        self.dev.name()
    }
}

/// Real time (the daemon's clock) plus an offset that `sleep` advances at once.
struct JumpClock {
    origin: Duration,
    ahead: Mutex<Duration>,
}

impl Clock for JumpClock {
    fn now(&self) -> Duration {
        libmmp::protocol::clock::boottime().saturating_sub(self.origin)
            + *self.ahead.lock().unwrap()
    }
    fn sleep(&self, d: Duration) {
        *self.ahead.lock().unwrap() += d;
    }
}

fn mkfs_available() -> bool {
    let ok = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
        .iter()
        .any(|p| Path::new(p).exists());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "mkfs.ext4 not installed (e2fsprogs); CI=true: this test must run"
        );
        eprintln!("SKIPPED: mkfs.ext4 not installed (e2fsprogs)");
    }
    ok
}

fn image(dir: &Path, i: usize) -> PathBuf {
    let p = dir.join(format!("d{i}.img"));
    std::fs::File::create(&p).unwrap().set_len(4 << 20).unwrap();
    let st = std::process::Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-O",
            "mmp,^has_journal",
            "-E",
            "mmp_update_interval=1",
        ])
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success(), "mkfs.ext4 {}", p.display());
    p
}

type Hb = Box<Heartbeat<Gated>>;

const CFG: HeartbeatConfig = HeartbeatConfig {
    interval: Duration::from_millis(100),
    fail_intervals: 20,
};

/// Claim `n` images, each in sync group `group(i)` with gate `gate(i)`; the heartbeats,
/// their gates and the clock the beats must use.
fn held_in(
    dir: &Path,
    n: usize,
    group: impl Fn(usize) -> Option<u64>,
    gate: impl Fn(usize) -> Arc<Gate>,
) -> (Vec<Hb>, Vec<Arc<Gate>>, SystemClock) {
    let origin = libmmp::protocol::clock::boottime();
    let mut hbs = Vec::new();
    let mut gates = Vec::new();
    let mut ahead = Duration::ZERO;
    // Make every image first: each claim's last write must not age by the real time another
    // image's mkfs takes (on a loaded machine that alone passed fail_after, 2 s).
    let paths: Vec<_> = (0..n).map(|i| image(dir, i)).collect();
    for (i, path) in paths.into_iter().enumerate() {
        let gate = gate(i);
        let dev = Gated {
            dev: Device::open(&path, Access::ReadWrite).unwrap(),
            gate: gate.clone(),
            group: group(i),
        };
        let fs = MmpFs::open(dev).unwrap();
        let opts = ClaimOptions {
            nodename: "pool-test".into(),
            check_interval: CFG.publish_check_interval(),
            ..ClaimOptions::for_device(&path.display().to_string())
        };
        // Each claim on a clock of its own from the same origin: they all end about the
        // same (virtual) time after it.
        let jump = JumpClock {
            origin,
            ahead: Mutex::new(Duration::ZERO),
        };
        let c = claim::claim(
            &fs,
            &jump,
            &mut || Ok(0x100 + i as u32),
            &opts,
            &|| false,
            &mut |_, _, _| {},
        )
        .unwrap();
        hbs.push(Box::new(Heartbeat::new(fs, &c, CFG, &jump)));
        gates.push(gate);
        ahead = ahead.max(*jump.ahead.lock().unwrap());
    }
    // From here on, one clock: real time, as far ahead as the claims' waits took it.
    let clock = SystemClock::with_origin(origin.checked_sub(ahead).unwrap());
    (hbs, gates, clock)
}

/// `n` images in one sync group (as on one filesystem), a gate each.
fn held(dir: &Path, n: usize) -> (Vec<Hb>, Vec<Arc<Gate>>, SystemClock) {
    held_in(dir, n, |_| Some(1), |_| Arc::default())
}

type Inbox = Arc<(Mutex<Vec<Done<Gated>>>, Condvar)>;

fn pool(clock: SystemClock) -> (Pool<Gated>, Inbox) {
    let inbox: Inbox = Arc::default();
    let i = inbox.clone();
    let sink: Sink<Gated> = Arc::new(move |d, _wake| {
        i.0.lock().unwrap().push(d);
        i.1.notify_all();
    });
    (Pool::new(sink, clock), inbox)
}

/// A minimal main loop: beat every idle heartbeat when due for `run`, supervising the pool
/// with `stall`, then wait for the beats in flight (but those of hung devices); returns the
/// sequence each device last wrote (0: none) and the left-behind reports.
fn drive(
    pool: &mut Pool<Gated>,
    inbox: &Inbox,
    slots: &mut [Option<Hb>],
    gates: &[Arc<Gate>],
    clock: &SystemClock,
    run: Duration,
    stall: Duration,
) -> (Vec<u32>, Vec<LeftBehind>) {
    let w = Duration::ZERO;
    let (last, left, failed) = drive_all(pool, inbox, slots, gates, clock, run, stall, w);
    assert!(failed.iter().all(|&f| f == 0), "failed beats: {failed:?}");
    (last, left)
}

/// [`drive`], counting failed beats per device instead of refusing them (a fence still
/// panics), and issuing with a due beat every beat due within `window` (as the daemon's
/// batches do: early, never late).
#[allow(clippy::too_many_arguments)]
fn drive_all(
    pool: &mut Pool<Gated>,
    inbox: &Inbox,
    slots: &mut [Option<Hb>],
    gates: &[Arc<Gate>],
    clock: &SystemClock,
    run: Duration,
    stall: Duration,
    window: Duration,
) -> (Vec<u32>, Vec<LeftBehind>, Vec<usize>) {
    let mut last = vec![0u32; slots.len()];
    let mut failed = vec![0usize; slots.len()];
    let mut left = Vec::new();
    let end = clock.now() + run;
    loop {
        let now = clock.now();
        let settled = slots
            .iter()
            .zip(gates)
            .all(|(s, g)| s.is_some() || *g.hung.lock().unwrap() || *g.sync_hung.lock().unwrap());
        if now >= end && settled {
            break;
        }
        assert!(now < end + Duration::from_secs(5), "beats did not return");
        let mut jobs = Vec::new();
        for (id, s) in slots.iter_mut().enumerate() {
            if now < end && s.as_ref().is_some_and(|hb| hb.next_due() <= now + window) {
                let hb = s.take().unwrap();
                jobs.push(IoJob {
                    id,
                    work: Work::Beat(hb),
                });
            }
        }
        pool.submit(jobs);
        let g = inbox.0.lock().unwrap();
        let (mut g, _) = inbox.1.wait_timeout(g, Duration::from_millis(20)).unwrap();
        for d in g.drain(..) {
            match d {
                Done::Beat { id, hb, result, .. } => {
                    match result {
                        Ok(Beat::Wrote { seq }) => last[id] = seq,
                        Ok(Beat::Failed { .. }) => failed[id] += 1,
                        r => panic!("device {id}: {r:?}"),
                    }
                    slots[id] = Some(hb);
                }
                Done::Released { .. } => unreachable!("no release sent"),
            }
        }
        drop(g);
        left.extend(pool.supervise(stall));
    }
    (last, left, failed)
}

fn release_all(pool: &Pool<Gated>, inbox: &Inbox, slots: &mut [Option<Hb>]) {
    let n = slots.iter().filter(|s| s.is_some()).count();
    pool.submit(slots.iter_mut().enumerate().filter_map(|(id, s)| {
        s.take().map(|hb| IoJob {
            id,
            work: Work::Release(hb),
        })
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut released = 0;
    while released < n {
        assert!(Instant::now() < deadline, "releases did not return");
        let g = inbox.0.lock().unwrap();
        let (mut g, _) = inbox.1.wait_timeout(g, Duration::from_millis(50)).unwrap();
        for d in g.drain(..) {
            if let Done::Released { id, outcome } = d {
                assert!(outcome.is_ok(), "device {id}: {outcome:?}");
                released += 1;
            }
        }
    }
}

fn on_disk(path: &Path) -> u32 {
    let fs = MmpFs::open(Device::open(path, Access::ReadOnly).unwrap()).unwrap();
    fs.read_mmp_raw().unwrap().0.mmp_seq
}

#[test]
fn two_threads_beat_many_devices_then_release() {
    if !mkfs_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (hbs, gates, clock) = held(dir.path(), 8);
    let first: Vec<u32> = hbs.iter().map(|h| h.seq()).collect();
    let (mut pool, inbox) = pool(clock);
    pool.grow_to(2).unwrap();
    assert_eq!(pool.threads(), 2);
    let mut slots: Vec<_> = hbs.into_iter().map(Some).collect();
    let (last, left) = drive(
        &mut pool,
        &inbox,
        &mut slots,
        &gates,
        &clock,
        Duration::from_millis(1000),
        Duration::from_secs(5),
    );
    assert!(left.is_empty(), "{left:?}");
    for (i, (a, b)) in first.iter().zip(&last).enumerate() {
        // 10 beats due in 1 s at 100 ms; a loaded host may delay a few.
        let beats = b.wrapping_sub(*a);
        assert!((5..=12).contains(&beats), "device {i}: {beats} beats");
        assert_eq!(on_disk(&dir.path().join(format!("d{i}.img"))), *b);
    }
    release_all(&pool, &inbox, &mut slots);
    for i in 0..8 {
        assert_eq!(
            on_disk(&dir.path().join(format!("d{i}.img"))),
            EXT4_MMP_SEQ_CLEAN
        );
    }
}

#[test]
fn a_hung_device_keeps_its_thread_and_the_others_keep_beating() {
    if !mkfs_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (hbs, gates, clock) = held(dir.path(), 3);
    let (mut pool, inbox) = pool(clock);
    // One thread: without the replacement, the hung device would stall everyone.
    pool.grow_to(1).unwrap();
    let mut slots: Vec<_> = hbs.into_iter().map(Some).collect();
    let stall = Duration::from_millis(250);
    let (before, _) = drive(
        &mut pool,
        &inbox,
        &mut slots,
        &gates,
        &clock,
        Duration::from_millis(300),
        stall,
    );
    gates[0].set(true);
    let (after, left) = drive(
        &mut pool,
        &inbox,
        &mut slots,
        &gates,
        &clock,
        Duration::from_millis(1500),
        stall,
    );
    assert_eq!(
        left,
        vec![LeftBehind {
            device: 0,
            busy_for: left.first().map(|l| l.busy_for).unwrap_or_default(),
            replaced: true,
            handed_over: left.first().map(|l| l.handed_over).unwrap_or_default(),
        }],
        "the hung device's thread is left behind once and replaced, and the rest of its \
         group goes to another thread"
    );
    assert!(left[0].busy_for > stall);
    // The beats of its group that were not done yet (those in the same batch) went to
    // another thread.
    assert!(left[0].handed_over <= 2, "{left:?}");
    assert!(slots[0].is_none(), "the hung beat has not come back");
    assert_eq!(after[0], 0, "no beat of the hung device returned");
    for i in 1..3 {
        let beats = after[i].wrapping_sub(before[i]);
        assert!(beats >= 8, "device {i} beat {beats} times in 1.5 s");
    }
    assert_eq!(pool.threads(), 2);
    assert_eq!(pool.left_behind(), 1);
    // The device comes back: its beat returns, and the thread it held exits.
    gates[0].set(false);
    let (_, left) = drive(
        &mut pool,
        &inbox,
        &mut slots,
        &gates,
        &clock,
        Duration::from_millis(300),
        stall,
    );
    assert!(left.is_empty(), "{left:?}");
    assert!(slots[0].is_some(), "the beat came back");
    // (It exits right after handing its result over.)
    let t = Instant::now();
    while pool.left_behind() > 0 && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pool.left_behind(), 0);
    assert_eq!(pool.threads(), 1);
    release_all(&pool, &inbox, &mut slots);
}

/// Batches a whole interval wide: every device of a test beats in one batch.
const WINDOW: Duration = CFG.interval;

/// [`drive`] with batches [`WINDOW`] wide.
fn drive_w(
    pool: &mut Pool<Gated>,
    inbox: &Inbox,
    slots: &mut [Option<Hb>],
    gates: &[Arc<Gate>],
    clock: &SystemClock,
    run: Duration,
    stall: Duration,
) -> (Vec<u32>, Vec<LeftBehind>) {
    let (last, left, failed) = drive_all(pool, inbox, slots, gates, clock, run, stall, WINDOW);
    assert!(failed.iter().all(|&f| f == 0), "failed beats: {failed:?}");
    (last, left)
}

#[test]
fn a_group_shares_one_syncfs_and_a_failed_one_fails_every_beat_of_it() {
    if !mkfs_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let (hbs, gates, clock) = held_in(dir.path(), 6, |_| Some(7), |_| gate.clone());
    let (mut pool, inbox) = pool(clock);
    pool.grow_to(2).unwrap();
    let mut slots: Vec<_> = hbs.into_iter().map(Some).collect();
    let stall = Duration::from_secs(5);
    let run = Duration::from_millis(500);
    let (first, _) = drive_w(&mut pool, &inbox, &mut slots, &gates, &clock, run, stall);
    let calls = gate.syncfs_calls.load(SeqCst);
    assert!(
        first.iter().all(|&s| s != 0),
        "every device beat: {first:?}"
    );
    assert!(calls >= 1, "no syncfs");
    // Fewer syncs than beats: groups of up to 6 (the batch) share one.
    let (second, _) = drive_w(&mut pool, &inbox, &mut slots, &gates, &clock, run, stall);
    let n_beats: u32 = first
        .iter()
        .zip(&second)
        .map(|(a, b)| b.wrapping_sub(*a))
        .sum();
    let n_syncs = gate.syncfs_calls.load(SeqCst) - calls;
    assert!(
        n_beats >= 12,
        "{n_beats} beats in 500 ms at 100 ms for 6 devices"
    );
    assert!(
        n_syncs * 2 <= u64::from(n_beats),
        "{n_syncs} syncfs for {n_beats} beats"
    );
    // The filesystem sync fails: every beat of the group fails (none counts as written),
    // and the holders fence only after fail_after (2 s here), which this run stays under.
    gate.sync_fails.store(true, SeqCst);
    let (_, _, failed) = drive_all(
        &mut pool, &inbox, &mut slots, &gates, &clock, run, stall, WINDOW,
    );
    assert!(failed.iter().all(|&f| f >= 2), "failed beats: {failed:?}");
    for s in slots.iter().flatten() {
        assert!(clock.now() - s.last_success() > run - Duration::from_millis(150));
    }
    // The sync works again: the writes whose sync failed are found on disk and taken as
    // ours, and the beats succeed.
    gate.sync_fails.store(false, SeqCst);
    let (last, _) = drive_w(&mut pool, &inbox, &mut slots, &gates, &clock, run, stall);
    for (i, seq) in last.iter().enumerate() {
        assert_eq!(on_disk(&dir.path().join(format!("d{i}.img"))), *seq);
    }
    release_all(&pool, &inbox, &mut slots);
}

#[test]
fn a_hung_group_sync_keeps_its_group_and_other_groups_keep_beating() {
    if !mkfs_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Devices 0-2 in group 1 (one gate: one filesystem), 3-5 in group 2.
    let g1 = Arc::new(Gate::default());
    let g2 = Arc::new(Gate::default());
    let (hbs, gates, clock) = held_in(
        dir.path(),
        6,
        |i| Some(1 + (i / 3) as u64),
        |i| if i < 3 { g1.clone() } else { g2.clone() },
    );
    let (mut pool, inbox) = pool(clock);
    pool.grow_to(2).unwrap();
    let mut slots: Vec<_> = hbs.into_iter().map(Some).collect();
    let stall = Duration::from_millis(250);
    let (before, _) = drive_w(
        &mut pool,
        &inbox,
        &mut slots,
        &gates,
        &clock,
        Duration::from_millis(300),
        stall,
    );
    g1.set_sync(true);
    let (after, left) = drive_w(
        &mut pool,
        &inbox,
        &mut slots,
        &gates,
        &clock,
        Duration::from_millis(1000),
        stall,
    );
    // Every unit of work that reached the hung filesystem's sync holds its thread (a beat
    // due alone syncs alone); none of the other group's.
    assert!(!left.is_empty());
    for l in &left {
        assert!(l.device < 3 && l.replaced, "{left:?}");
        assert_eq!(l.handed_over, 0, "a hung sync keeps its group: {left:?}");
    }
    for i in 0..3 {
        assert!(
            slots[i].is_none(),
            "device {i}: its group's sync has not returned"
        );
        assert_eq!(after[i], 0);
    }
    for i in 3..6 {
        let beats = after[i].wrapping_sub(before[i]);
        assert!(beats >= 6, "device {i} beat {beats} times in 1 s");
    }
    // The sync returns (in time: fail_after is 2 s): the group's beats count.
    g1.set_sync(false);
    let (back, left) = drive_w(
        &mut pool,
        &inbox,
        &mut slots,
        &gates,
        &clock,
        Duration::from_millis(300),
        stall,
    );
    assert!(left.is_empty(), "{left:?}");
    for i in 0..3 {
        assert!(slots[i].is_some(), "device {i} came back");
        assert!(back[i] != 0, "device {i} beat again");
    }
    release_all(&pool, &inbox, &mut slots);
}
