//! The I/O pool: a few threads that run the heartbeats' beats and releases for the main loop.
//!
//! The main loop owns every held device's [`Heartbeat`] and decides when it beats; it hands
//! the heartbeat to the pool for the I/O (re-read and compare, write, sync) and gets it back
//! with the result. A device has at most one job in the pool at a time.
//!
//! A device whose I/O hangs keeps its pool thread. So that it cannot stall the others, the main
//! loop calls [`Pool::supervise`]: a thread that has been on one job for longer than the stall
//! limit is *left behind* (it exits if its job ever returns) and a new thread takes its place,
//! up to [`MAX_LEFT_BEHIND`] such threads. The device itself is fenced by the main loop when
//! its last successful write gets too old (`Daemon::tick`), whether its job is running, hung,
//! or still queued.

use crate::worker::EpochClock;
use libmmp::check::Clock;
use libmmp::claim::Release;
use libmmp::device::BlockIo;
use libmmp::heartbeat::{Beat, FenceReason, Heartbeat, ReleaseError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// At most this many threads hung in device I/O are left behind and replaced. Each device has
/// at most one job in the pool, so this is also a bound in devices: past it, hung devices keep
/// their threads and the remaining threads serve the rest (which the main loop fences if they
/// stop being served in time).
pub const MAX_LEFT_BEHIND: usize = 256;

/// Stack size of a pool thread: a beat needs a few KiB (two 1 KiB buffers, the parse).
const STACK_SIZE: usize = 256 * 1024;

/// What a job does.
pub enum Work<D: BlockIo> {
    Beat(Box<Heartbeat<D>>),
    Release(Box<Heartbeat<D>>),
}

/// A job for device `id`.
pub struct Job<D: BlockIo> {
    pub id: usize,
    pub work: Work<D>,
}

/// A finished job.
pub enum Done<D: BlockIo> {
    /// The heartbeat comes back with its result; `at` is when the beat returned.
    Beat {
        id: usize,
        hb: Box<Heartbeat<D>>,
        result: Result<Beat, FenceReason>,
        at: Duration,
    },
    Released {
        id: usize,
        outcome: Result<(), String>,
    },
}

/// Where finished jobs go: `(done, wake)`. `wake` is true when the main loop should look now
/// (a failure, a fence, a release); a successful beat waits for the loop's next wake-up, which
/// comes well before the device's next beat is due.
pub type Sink<D> = Arc<dyn Fn(Done<D>, bool) + Send + Sync>;

const IDLE: u64 = u64::MAX;

/// What the main loop sees of one pool thread.
#[derive(Debug)]
struct WorkerState {
    /// Epoch-clock milliseconds when its current job started, or `IDLE`.
    busy_since_ms: AtomicU64,
    /// The device of its current job.
    device: AtomicUsize,
    /// Set by the main loop: exit after the current job.
    left_behind: AtomicBool,
    exited: AtomicBool,
}

struct Queue<D: BlockIo> {
    jobs: VecDeque<Job<D>>,
    idle: usize,
    shutdown: bool,
}

struct Inner<D: BlockIo> {
    queue: Mutex<Queue<D>>,
    ready: Condvar,
    sink: Sink<D>,
    clock: EpochClock,
}

impl<D: BlockIo> Inner<D> {
    fn lock(&self) -> MutexGuard<'_, Queue<D>> {
        // A poisoned lock means a pool thread panicked while holding it; the queue itself is
        // still consistent (push/pop only).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A thread the pool left behind because its job did not return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeftBehind {
    pub device: usize,
    pub busy_for: Duration,
    /// Whether a replacement thread was started (false once [`MAX_LEFT_BEHIND`] is reached).
    pub replaced: bool,
}

/// The pool, owned by the main loop.
pub struct Pool<D: BlockIo + Send + 'static> {
    inner: Arc<Inner<D>>,
    workers: Vec<Arc<WorkerState>>,
    /// How many threads serve the queue (left-behind threads are replaced, not counted).
    size: usize,
    spawned: usize,
}

impl<D: BlockIo + Send + 'static> Pool<D> {
    /// A pool with no thread yet; [`Pool::grow_to`] starts them.
    pub fn new(sink: Sink<D>, clock: EpochClock) -> Self {
        Pool {
            inner: Arc::new(Inner {
                queue: Mutex::new(Queue {
                    jobs: VecDeque::new(),
                    idle: 0,
                    shutdown: false,
                }),
                ready: Condvar::new(),
                sink,
                clock,
            }),
            workers: Vec::new(),
            size: 0,
            spawned: 0,
        }
    }

    /// Serve the queue with at least `n` threads.
    pub fn grow_to(&mut self, n: usize) -> std::io::Result<()> {
        while self.size < n {
            self.spawn()?;
            self.size += 1;
        }
        Ok(())
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let state = Arc::new(WorkerState {
            busy_since_ms: AtomicU64::new(IDLE),
            device: AtomicUsize::new(usize::MAX),
            left_behind: AtomicBool::new(false),
            exited: AtomicBool::new(false),
        });
        let inner = self.inner.clone();
        let st = state.clone();
        std::thread::Builder::new()
            .name(format!("mmpd-io{}", self.spawned))
            .stack_size(STACK_SIZE)
            .spawn(move || run(&inner, &st))?;
        self.spawned += 1;
        self.workers.push(state);
        Ok(())
    }

    /// Queue jobs; wakes as many idle threads as there are jobs.
    pub fn submit(&self, jobs: impl IntoIterator<Item = Job<D>>) {
        let mut q = self.inner.lock();
        let before = q.jobs.len();
        q.jobs.extend(jobs);
        let added = q.jobs.len() - before;
        let wake = added.min(q.idle);
        drop(q);
        for _ in 0..wake {
            self.inner.ready.notify_one();
        }
    }

    /// Leave behind every thread that has been on one job for longer than `stall`, starting a
    /// replacement for each (bounded); forget threads that have exited.
    pub fn supervise(&mut self, stall: Duration) -> Vec<LeftBehind> {
        let now_ms = self.inner.clock.now().as_millis() as u64;
        let stall_ms = stall.as_millis() as u64;
        self.workers.retain(|w| !w.exited.load(SeqCst));
        let mut left = Vec::new();
        for w in &self.workers {
            let since = w.busy_since_ms.load(SeqCst);
            if since == IDLE || w.left_behind.load(SeqCst) {
                continue;
            }
            let busy = now_ms.saturating_sub(since);
            if busy > stall_ms {
                w.left_behind.store(true, SeqCst);
                left.push(LeftBehind {
                    device: w.device.load(SeqCst),
                    busy_for: Duration::from_millis(busy),
                    replaced: false,
                });
            }
        }
        for l in &mut left {
            let behind = self
                .workers
                .iter()
                .filter(|w| w.left_behind.load(SeqCst))
                .count();
            l.replaced = behind <= MAX_LEFT_BEHIND && self.spawn().is_ok();
        }
        left
    }

    /// Threads alive now (serving or left behind).
    pub fn threads(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| !w.exited.load(SeqCst))
            .count()
    }

    /// Threads left behind in hung I/O that have not returned.
    pub fn left_behind(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.left_behind.load(SeqCst) && !w.exited.load(SeqCst))
            .count()
    }
}

impl<D: BlockIo + Send + 'static> Drop for Pool<D> {
    /// Idle threads exit; busy ones exit after their job. Nobody waits for them: a thread hung
    /// in I/O must not hold up the exit.
    fn drop(&mut self) {
        self.inner.lock().shutdown = true;
        self.inner.ready.notify_all();
    }
}

fn run<D: BlockIo>(inner: &Inner<D>, me: &WorkerState) {
    loop {
        let job = {
            let mut q = inner.lock();
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    break j;
                }
                if q.shutdown {
                    me.exited.store(true, SeqCst);
                    return;
                }
                q.idle += 1;
                q = inner.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                q.idle -= 1;
            }
        };
        me.device.store(job.id, SeqCst);
        me.busy_since_ms
            .store(inner.clock.now().as_millis() as u64, SeqCst);
        let (done, urgent) = execute(job, &inner.clock);
        me.busy_since_ms.store(IDLE, SeqCst);
        (inner.sink)(done, urgent);
        if me.left_behind.load(SeqCst) {
            me.exited.store(true, SeqCst);
            return;
        }
    }
}

fn execute<D: BlockIo>(job: Job<D>, clock: &EpochClock) -> (Done<D>, bool) {
    let id = job.id;
    match job.work {
        Work::Beat(mut hb) => {
            let result = hb.beat(clock);
            let urgent = !matches!(result, Ok(Beat::Wrote { .. }));
            let at = clock.now();
            (Done::Beat { id, hb, result, at }, urgent)
        }
        Work::Release(hb) => {
            let outcome = match hb.release() {
                Ok(Release::Clean(_)) => Ok(()),
                Ok(Release::NotOurs(found)) => Err(format!(
                    "the MMP block holds sequence {:#010x} from node '{}' device '{}', not our last write: another node wrote it; CLEAN NOT written",
                    found.mmp_seq,
                    found.nodename(),
                    found.bdevname()
                )),
                Err(ReleaseError::Fenced(r)) => Err(r.to_string()),
                Err(ReleaseError::Io(e)) => Err(e.to_string()),
            };
            (Done::Released { id, outcome }, true)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The pool against real image files (mkfs.ext4), with one device's reads held on a gate to
    //! stand for a hung device. The claims run on a clock whose sleeps return at once (the
    //! claim's waits are libmmp's business); the beats then run in real time on the same clock.
    use super::*;
    use libmmp::claim::{self, ClaimOptions};
    use libmmp::device::{Access, Device};
    use libmmp::fs::MmpFs;
    use libmmp::heartbeat::HeartbeatConfig;
    use libmmp::mmp::EXT4_MMP_SEQ_CLEAN;
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    /// Holds reads while `hung` is set: a device whose I/O does not return.
    #[derive(Default)]
    struct Gate {
        hung: Mutex<bool>,
        cv: Condvar,
    }

    impl Gate {
        fn set(&self, hung: bool) {
            *self.hung.lock().unwrap() = hung;
            self.cv.notify_all();
        }
    }

    struct Gated {
        dev: Device,
        gate: Arc<Gate>,
    }

    impl BlockIo for Gated {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            let mut h = self.gate.hung.lock().unwrap();
            while *h {
                h = self.gate.cv.wait(h).unwrap();
            }
            drop(h);
            self.dev.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
            self.dev.write_at(offset, buf)
        }
        fn sync(&self) -> std::io::Result<()> {
            self.dev.sync()
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
            libmmp::check::boottime().saturating_sub(self.origin) + *self.ahead.lock().unwrap()
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

    /// Claim `n` images; the heartbeats, their gates and the clock the beats must use.
    fn held(dir: &Path, n: usize) -> (Vec<Hb>, Vec<Arc<Gate>>, EpochClock) {
        let origin = libmmp::check::boottime();
        let mut hbs = Vec::new();
        let mut gates = Vec::new();
        let mut ahead = Duration::ZERO;
        for i in 0..n {
            let path = image(dir, i);
            let gate = Arc::new(Gate::default());
            let dev = Gated {
                dev: Device::open(&path, Access::ReadWrite).unwrap(),
                gate: gate.clone(),
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
                &mut || 0x100 + i as u32,
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
        let clock = EpochClock {
            origin: origin.checked_sub(ahead).unwrap(),
        };
        (hbs, gates, clock)
    }

    type Inbox = Arc<(Mutex<Vec<Done<Gated>>>, Condvar)>;

    fn pool(clock: EpochClock) -> (Pool<Gated>, Inbox) {
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
        clock: &EpochClock,
        run: Duration,
        stall: Duration,
    ) -> (Vec<u32>, Vec<LeftBehind>) {
        let mut last = vec![0u32; slots.len()];
        let mut left = Vec::new();
        let end = clock.now() + run;
        loop {
            let now = clock.now();
            let settled = slots
                .iter()
                .zip(gates)
                .all(|(s, g)| s.is_some() || *g.hung.lock().unwrap());
            if now >= end && settled {
                break;
            }
            assert!(now < end + Duration::from_secs(5), "beats did not return");
            let mut jobs = Vec::new();
            for (id, s) in slots.iter_mut().enumerate() {
                if now < end && s.as_ref().is_some_and(|hb| hb.next_due() <= now) {
                    let hb = s.take().unwrap();
                    jobs.push(Job {
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
        (last, left)
    }

    fn release_all(pool: &Pool<Gated>, inbox: &Inbox, slots: &mut [Option<Hb>]) {
        let n = slots.iter().filter(|s| s.is_some()).count();
        pool.submit(slots.iter_mut().enumerate().filter_map(|(id, s)| {
            s.take().map(|hb| Job {
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
                replaced: true
            }],
            "the hung device's thread is left behind once and replaced"
        );
        assert!(left[0].busy_for > stall);
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
}
