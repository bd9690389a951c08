//! The I/O pool: a few threads that run the heartbeats' beats and releases for the main loop.
//!
//! The main loop owns every held device's [`Heartbeat`] and decides when it beats; it hands
//! the heartbeat to the pool for the I/O (re-read and compare, write, sync) and gets it back
//! with the result. A device has at most one job in the pool at a time.
//!
//! **Group commit.** The beats of one batch whose devices are image files on one filesystem
//! (the same [`BlockIo::sync_group`]) go to one thread as a *group*: it does each beat's first
//! half ([`Heartbeat::write_unsynced`]: checks, re-read and compare, write), then ONE `syncfs`
//! of that filesystem, and only then confirms each beat ([`Heartbeat::confirm`]) and hands it
//! back: no beat is reported successful before its write is durable. A failed `syncfs` fails
//! every beat of the group (each write is kept as pending: it may or may not be on disk).
//! Block devices (O_DIRECT) and lone beats keep one `fdatasync` each. Groups larger than
//! [`GROUP_MAX`] are split, each part with its own `syncfs`.
//!
//! A device whose I/O hangs keeps its pool thread. So that it cannot stall the others, the main
//! loop calls [`Pool::supervise`]: a thread that has been on one operation (one beat, or one
//! group's sync) for longer than the stall limit is *left behind* (it exits if its job ever
//! returns) and a new thread takes its place, up to [`MAX_LEFT_BEHIND`] such threads. When the
//! thread hung in one beat of a group, the rest of the group (beats not started, and beats
//! written and waiting for the sync) is handed to another thread; a thread hung in a group's
//! `syncfs` keeps the group (another sync of the same filesystem would hang too). The device
//! itself is fenced by the main loop when its last successful write gets too old
//! (`Daemon::tick`), whether its job is running, hung, or still queued.

use libmmp::io::BlockIo;
use libmmp::protocol::claim::Release;
use libmmp::protocol::clock::{Clock, SystemClock};
use libmmp::protocol::heartbeat::{Beat, FenceReason, Heartbeat, ReleaseError, Written};
use std::collections::{HashMap, VecDeque};
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

/// The most beats one `syncfs` covers: a larger group of one batch is split into parts of at
/// most this many, each run by a thread of its own with its own `syncfs`.
pub const GROUP_MAX: usize = 1024;

/// Why a release wrote no CLEAN.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseFailure {
    #[error("the MMP block holds sequence {seq:#010x} from node '{node}' device '{device}', not our last write: another node wrote it; CLEAN NOT written")]
    NotOurs {
        seq: u32,
        node: String,
        device: String,
    },
    /// The heartbeat had fenced: it never writes again.
    #[error("{0}")]
    Fenced(FenceReason),
    #[error(transparent)]
    Io(libmmp::Error),
}

/// What a job does.
pub enum Work<D: BlockIo> {
    Beat(Box<Heartbeat<D>>),
    Release(Box<Heartbeat<D>>),
}

/// A job for device `id`.
pub struct IoJob<D: BlockIo> {
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
        outcome: Result<(), ReleaseFailure>,
    },
}

/// Where finished jobs go: `(done, wake)`. `wake` is true when the main loop should look now
/// (a failure, a fence, a release); a successful beat waits for the loop's next wake-up, which
/// comes well before the device's next beat is due.
pub type Sink<D> = Arc<dyn Fn(Done<D>, bool) + Send + Sync>;

const IDLE: u64 = u64::MAX;

/// What a pool thread takes from the queue at once: one job, or the beats of one sync group.
struct Unit<D: BlockIo> {
    /// Jobs not started.
    todo: VecDeque<IoJob<D>>,
    /// Beats written (first half done) that wait for the group's sync.
    written: Vec<(usize, Box<Heartbeat<D>>)>,
}

impl<D: BlockIo> Unit<D> {
    fn empty() -> Self {
        Unit {
            todo: VecDeque::new(),
            written: Vec::new(),
        }
    }
    fn is_empty(&self) -> bool {
        self.todo.is_empty() && self.written.is_empty()
    }
    fn len(&self) -> usize {
        self.todo.len() + self.written.len()
    }
}

/// What the main loop sees of one pool thread.
struct IoThread<D: BlockIo> {
    /// Epoch-clock milliseconds when its current operation (a job, or a group's sync)
    /// started, or `IDLE`.
    busy_since_ms: AtomicU64,
    /// The device of its current job (the first of the group during a group's sync).
    device: AtomicUsize,
    /// Set by the main loop (under the `group` lock): exit after the current job.
    left_behind: AtomicBool,
    exited: AtomicBool,
    /// The rest of the group it is running (empty during the group's sync): what
    /// [`Pool::supervise`] hands to another thread when this one hangs in one beat.
    group: Mutex<Unit<D>>,
}

impl<D: BlockIo> IoThread<D> {
    fn group(&self) -> MutexGuard<'_, Unit<D>> {
        self.group.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Queue<D: BlockIo> {
    jobs: VecDeque<Unit<D>>,
    idle: usize,
    shutdown: bool,
}

struct Inner<D: BlockIo> {
    queue: Mutex<Queue<D>>,
    ready: Condvar,
    sink: Sink<D>,
    clock: SystemClock,
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
    /// Beats of its group handed to another thread.
    pub handed_over: usize,
}

/// The pool, owned by the main loop.
pub struct Pool<D: BlockIo + Send + 'static> {
    inner: Arc<Inner<D>>,
    io_threads: Vec<Arc<IoThread<D>>>,
    /// How many threads serve the queue (left-behind threads are replaced, not counted).
    size: usize,
    spawned: usize,
}

impl<D: BlockIo + Send + 'static> Pool<D> {
    /// A pool with no thread yet; [`Pool::grow_to`] starts them.
    pub fn new(sink: Sink<D>, clock: SystemClock) -> Self {
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
            io_threads: Vec::new(),
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
        let state = Arc::new(IoThread {
            busy_since_ms: AtomicU64::new(IDLE),
            device: AtomicUsize::new(usize::MAX),
            left_behind: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            group: Mutex::new(Unit::empty()),
        });
        let inner = self.inner.clone();
        let st = state.clone();
        std::thread::Builder::new()
            .name(format!("mmpd-io{}", self.spawned))
            .stack_size(STACK_SIZE)
            .spawn(move || run(&inner, &st))?;
        self.spawned += 1;
        self.io_threads.push(state);
        Ok(())
    }

    /// Queue jobs; wakes as many idle threads as there are units of work. The beats of image
    /// files on one filesystem are grouped (one `syncfs` for the group, see the module
    /// comment); every other job is a unit of its own.
    pub fn submit(&self, jobs: impl IntoIterator<Item = IoJob<D>>) {
        let mut units = Vec::new();
        let mut groups: HashMap<u64, Vec<IoJob<D>>> = HashMap::new();
        let mut order = Vec::new();
        for job in jobs {
            let group = match &job.work {
                Work::Beat(hb) => hb.fs().device().sync_group(),
                Work::Release(_) => None,
            };
            match group {
                Some(g) => {
                    let members = groups.entry(g).or_default();
                    if members.is_empty() {
                        order.push(g);
                    }
                    members.push(job);
                }
                None => units.push(Unit {
                    todo: VecDeque::from([job]),
                    written: Vec::new(),
                }),
            }
        }
        for g in order {
            let members = groups.remove(&g).unwrap_or_default();
            // Even parts, none over GROUP_MAX.
            let parts = members.len().div_ceil(GROUP_MAX).max(1);
            let size = members.len().div_ceil(parts);
            let mut members = members.into_iter().peekable();
            while members.peek().is_some() {
                units.push(Unit {
                    todo: members.by_ref().take(size).collect(),
                    written: Vec::new(),
                });
            }
        }
        self.queue(units, false);
    }

    fn queue(&self, units: Vec<Unit<D>>, front: bool) {
        if units.is_empty() {
            return;
        }
        let mut q = self.inner.lock();
        let added = units.len();
        for u in units {
            if front {
                q.jobs.push_front(u);
            } else {
                q.jobs.push_back(u);
            }
        }
        let wake = added.min(q.idle);
        drop(q);
        for _ in 0..wake {
            self.inner.ready.notify_one();
        }
    }

    /// Leave behind every thread that has been on one operation for longer than `stall`,
    /// handing the rest of its group to another thread and starting a replacement for each
    /// (bounded); forget threads that have exited.
    pub fn supervise(&mut self, stall: Duration) -> Vec<LeftBehind> {
        let now_ms = self.inner.clock.now().as_millis() as u64;
        let stall_ms = stall.as_millis() as u64;
        self.io_threads.retain(|w| !w.exited.load(SeqCst));
        let mut left = Vec::new();
        let mut rescued = Vec::new();
        for w in &self.io_threads {
            let since = w.busy_since_ms.load(SeqCst);
            if since == IDLE || w.left_behind.load(SeqCst) {
                continue;
            }
            let busy = now_ms.saturating_sub(since);
            if busy > stall_ms {
                // Under the group lock: the thread, when its operation returns, either finds
                // itself left behind or has already put its beat back in the group.
                let mut g = w.group();
                w.left_behind.store(true, SeqCst);
                let rest = std::mem::replace(&mut *g, Unit::empty());
                drop(g);
                let handed_over = rest.len();
                if !rest.is_empty() {
                    rescued.push(rest);
                }
                left.push(LeftBehind {
                    device: w.device.load(SeqCst),
                    busy_for: Duration::from_millis(busy),
                    replaced: false,
                    handed_over,
                });
            }
        }
        // Ahead of the queue: these beats are already late.
        self.queue(rescued, true);
        for l in &mut left {
            let behind = self
                .io_threads
                .iter()
                .filter(|w| w.left_behind.load(SeqCst))
                .count();
            l.replaced = behind <= MAX_LEFT_BEHIND && self.spawn().is_ok();
        }
        left
    }

    /// Threads alive now (serving or left behind).
    pub fn threads(&self) -> usize {
        self.io_threads
            .iter()
            .filter(|w| !w.exited.load(SeqCst))
            .count()
    }

    /// Threads left behind in hung I/O that have not returned.
    pub fn left_behind(&self) -> usize {
        self.io_threads
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

fn run<D: BlockIo>(inner: &Inner<D>, me: &IoThread<D>) {
    loop {
        let mut unit = {
            let mut q = inner.lock();
            loop {
                if let Some(u) = q.jobs.pop_front() {
                    break u;
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
        if unit.todo.len() == 1 && unit.written.is_empty() {
            // A lone job: the beat syncs its own device (fdatasync).
            if let Some(job) = unit.todo.pop_front() {
                me.device.store(job.id, SeqCst);
                me.busy_since_ms
                    .store(inner.clock.now().as_millis() as u64, SeqCst);
                let (done, urgent) = execute(job, &inner.clock);
                me.busy_since_ms.store(IDLE, SeqCst);
                (inner.sink)(done, urgent);
            }
        } else {
            run_group(inner, me, unit);
        }
        if me.left_behind.load(SeqCst) {
            me.exited.store(true, SeqCst);
            return;
        }
    }
}

fn send_beat<D: BlockIo>(
    inner: &Inner<D>,
    id: usize,
    hb: Box<Heartbeat<D>>,
    result: Result<Beat, FenceReason>,
) {
    let urgent = !matches!(result, Ok(Beat::Wrote { .. }));
    let at = inner.clock.now();
    (inner.sink)(Done::Beat { id, hb, result, at }, urgent);
}

/// Run a group: every beat's first half, one sync, then every beat's confirmation.
fn run_group<D: BlockIo>(inner: &Inner<D>, me: &IoThread<D>, unit: Unit<D>) {
    let clock = &inner.clock;
    *me.group() = unit;
    loop {
        let Some(job) = me.group().todo.pop_front() else {
            break;
        };
        me.device.store(job.id, SeqCst);
        me.busy_since_ms
            .store(clock.now().as_millis() as u64, SeqCst);
        let id = job.id;
        let mut hb = match job.work {
            Work::Beat(hb) => hb,
            work @ Work::Release(_) => {
                let (done, urgent) = execute(IoJob { id, work }, clock);
                (inner.sink)(done, urgent);
                continue;
            }
        };
        match hb.write_unsynced(clock) {
            Ok(Written::Unsynced) => {
                let mut g = me.group();
                if !me.left_behind.load(SeqCst) {
                    g.written.push((id, hb));
                    continue;
                }
                drop(g);
                // This write hung long enough for the rest of the group to go to another
                // thread: make it durable on its own.
                let synced = hb.fs().sync_mmp();
                let result = hb.confirm(clock, synced);
                send_beat(inner, id, hb, result);
            }
            Ok(Written::Done(beat)) => send_beat(inner, id, hb, Ok(beat)),
            Err(reason) => send_beat(inner, id, hb, Err(reason)),
        }
    }
    // From here the group is this thread's alone: a hung sync is not handed over (another
    // sync of the same filesystem would hang as well).
    let written = std::mem::take(&mut me.group().written);
    if let Some((first, hb)) = written.first() {
        me.device.store(*first, SeqCst);
        me.busy_since_ms
            .store(clock.now().as_millis() as u64, SeqCst);
        let (synced, op) = if written.len() == 1 {
            (
                hb.fs().device().sync(),
                "fdatasync after writing the MMP block",
            )
        } else {
            (
                hb.fs().device().sync_filesystem(),
                "syncfs (group commit) after writing the MMP block",
            )
        };
        tracing::trace!(
            beats = written.len(),
            ok = synced.is_ok(),
            "group commit: {op}"
        );
        for (id, mut hb) in written {
            let synced = synced.as_ref().map(|_| ()).map_err(|e| {
                let copy = e
                    .raw_os_error()
                    .map(std::io::Error::from_raw_os_error)
                    .unwrap_or_else(|| std::io::Error::new(e.kind(), e.to_string()));
                hb.fs().sync_error(op, copy)
            });
            let result = hb.confirm(clock, synced);
            send_beat(inner, id, hb, result);
        }
    }
    me.busy_since_ms.store(IDLE, SeqCst);
}

fn execute<D: BlockIo>(job: IoJob<D>, clock: &SystemClock) -> (Done<D>, bool) {
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
                Ok(Release::NotOurs(found)) => Err(ReleaseFailure::NotOurs {
                    seq: found.mmp_seq,
                    node: found.nodename().to_string(),
                    device: found.bdevname().to_string(),
                }),
                Err(ReleaseError::Fenced(r)) => Err(ReleaseFailure::Fenced(r)),
                Err(ReleaseError::Io(e)) => Err(ReleaseFailure::Io(e)),
            };
            (Done::Released { id, outcome }, true)
        }
    }
}

#[cfg(test)]
mod tests;
