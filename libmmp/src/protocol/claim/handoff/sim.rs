//! A discrete-event simulator for the handoff's fault tests ([`super::faults`]): N actors, one
//! thread each, on one fake timeline, sharing one in-memory device; each actor reaches the
//! device through its own path ([`Disk`]), which can crash, fail, stall or degrade at any of
//! that actor's operations on the MMP block. Also the two holders that follow a claim: a
//! kmmpd-like kernel mount and libmmp's own heartbeat (mmpd).
//!
//! Exactly one actor runs at a time; a sleeping actor wakes when it is the earliest sleeper
//! (ties go to the lower index), so a run is a pure function of its parameters and seed.

use crate::fs::MmpFs;
use crate::io::{BlockIo, MemDevice};
use crate::ondisk::mmp::{SeqClass, EXT4_MMP_SEQ_MAX};
use crate::protocol::clock::Clock;
use crate::protocol::heartbeat::Heartbeat;
use std::cell::{Cell, RefCell};
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// splitmix64: a tiny seeded generator (no dependency, same stream on every machine).
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x6a09_e667_f3bc_c908)
    }
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// Uniform in `lo..=hi` milliseconds.
    pub(super) fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }
    pub(super) fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    pub(super) fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// An independent stream (one per actor, so one actor's draws never shift another's).
    pub(super) fn fork(&mut self) -> Rng {
        Rng(self.next())
    }
}

struct State {
    now: Duration,
    running: Option<usize>,
    /// When each sleeping actor wakes; `None` while it runs, waits for an event, or is done.
    wake: Vec<Option<Duration>>,
    waiting: Vec<Option<usize>>,
    done: Vec<bool>,
    /// When each event was signalled.
    events: Vec<Option<Duration>>,
    stop_at: Option<Duration>,
}

/// The scheduler. Events are one-shot flags an actor can wait for; each has an owner actor,
/// whose end signals it if the actor did not (so nobody waits for a crashed actor forever).
pub(super) struct Sim {
    st: Mutex<State>,
    turn: Vec<Condvar>,
    owner: Vec<usize>,
    horizon: Duration,
}

impl Sim {
    /// `owner[e]` is the actor that signals event `e`. After `horizon` every holder stops.
    pub(super) fn new(actors: usize, owner: Vec<usize>, horizon: Duration) -> Self {
        Sim {
            st: Mutex::new(State {
                now: Duration::ZERO,
                running: None,
                wake: vec![Some(Duration::ZERO); actors],
                waiting: vec![None; actors],
                done: vec![false; actors],
                events: vec![None; owner.len()],
                stop_at: None,
            }),
            turn: (0..actors).map(|_| Condvar::new()).collect(),
            owner,
            horizon,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking actor poisons the lock; the state is still consistent (it only changes
        // under the lock, in a few assignments).
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Let the earliest sleeper run (it may be the caller).
    fn hand_over(&self, st: &mut State) {
        let n = st.done.len();
        let next = (0..n)
            .filter(|&i| !st.done[i])
            .filter_map(|i| st.wake[i].map(|w| (w, i)))
            .min();
        match next {
            Some((w, i)) => {
                st.now = st.now.max(w);
                st.wake[i] = None;
                st.running = Some(i);
                self.turn[i].notify_one();
            }
            None => {
                st.running = None;
                let stuck: Vec<_> = (0..n).filter(|&i| st.waiting[i].is_some()).collect();
                assert!(
                    stuck.is_empty(),
                    "simulation deadlock: actors {stuck:?} wait for events nobody signals"
                );
            }
        }
    }

    fn wait_turn<'a>(&self, me: usize, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        while st.running != Some(me) {
            st = self.turn[me].wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st
    }

    pub(super) fn now(&self) -> Duration {
        self.lock().now
    }

    fn sleep_until(&self, me: usize, t: Duration) {
        let mut st = self.lock();
        let t = t.max(st.now);
        st.wake[me] = Some(t);
        self.hand_over(&mut st);
        drop(self.wait_turn(me, st));
    }

    /// Block until event `e` is signalled.
    pub(super) fn wait(&self, me: usize, e: usize) {
        let mut st = self.lock();
        if st.events[e].is_some() {
            return;
        }
        st.waiting[me] = Some(e);
        self.hand_over(&mut st);
        drop(self.wait_turn(me, st));
    }

    pub(super) fn signal(&self, e: usize) {
        let mut st = self.lock();
        if st.events[e].is_some() {
            return;
        }
        let now = st.now;
        st.events[e] = Some(now);
        for j in 0..st.waiting.len() {
            if st.waiting[j] == Some(e) {
                st.waiting[j] = None;
                st.wake[j] = Some(now);
            }
        }
    }

    fn finish(&self, me: usize) {
        for e in 0..self.owner.len() {
            if self.owner[e] == me {
                self.signal(e);
            }
        }
        let mut st = self.lock();
        st.done[me] = true;
        st.wake[me] = None;
        self.hand_over(&mut st);
    }

    /// End the run: every holder stops at its next step.
    pub(super) fn stop(&self) {
        let mut st = self.lock();
        let now = st.now;
        st.stop_at.get_or_insert(now);
    }

    pub(super) fn stopped(&self) -> bool {
        let st = self.lock();
        st.stop_at.is_some() || st.now >= self.horizon
    }

    /// When the run ended (the stop, or the horizon).
    pub(super) fn end(&self) -> Duration {
        let st = self.lock();
        st.stop_at.unwrap_or(st.now).min(self.horizon.max(st.now))
    }

    /// Run one body per actor (actor `i` starts at time zero); returns their results in order.
    /// A panic in an actor ends that actor only (the others go on) and is raised here after
    /// all have ended.
    pub(super) fn run<'s, R: Send>(&'s self, bodies: Vec<Body<'s, R>>) -> Vec<R> {
        struct Finish<'a>(&'a Sim, usize);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                self.0.finish(self.1);
            }
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = bodies
                .into_iter()
                .enumerate()
                .map(|(me, body)| {
                    scope.spawn(move || {
                        let _finish = Finish(self, me);
                        drop(self.wait_turn(me, self.lock()));
                        body(SimClock { sim: self, me })
                    })
                })
                .collect();
            {
                let mut st = self.lock();
                self.hand_over(&mut st);
            }
            let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
            results
                .into_iter()
                .map(|r| r.unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }
}

/// One actor's body: it gets its clock and returns what the run collects from it.
pub(super) type Body<'s, R> = Box<dyn FnOnce(SimClock<'s>) -> R + Send + 's>;

/// One actor's view of the shared timeline.
#[derive(Clone, Copy)]
pub(super) struct SimClock<'a> {
    pub(super) sim: &'a Sim,
    pub(super) me: usize,
}

impl SimClock<'_> {
    pub(super) fn wait(&self, e: usize) {
        self.sim.wait(self.me, e);
    }
    pub(super) fn signal(&self, e: usize) {
        self.sim.signal(e);
    }
}

impl Clock for SimClock<'_> {
    fn now(&self) -> Duration {
        self.sim.now()
    }
    fn sleep(&self, d: Duration) {
        let t = self.sim.now() + d;
        self.sim.sleep_until(self.me, t);
    }
}

/// What an actor is doing when it touches the MMP block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Offer,
    Claim,
    Rollback,
    Confirm,
    /// `mmp-tool mount` after a won claim: CLEAN over its own block, then `mount(2)`'s first
    /// read (still the process: a crash before it means no mount).
    Tool,
    /// The kernel: the rest of the mount and kmmpd. A process crash or stop does not touch it.
    Kernel,
    Mmpd,
}

impl Phase {
    /// A holder's write (what `confirm` waits for).
    pub(super) fn holder(self) -> bool {
        matches!(self, Phase::Kernel | Phase::Mmpd)
    }
}

/// One operation on the MMP block: when it took effect, what, whether it succeeded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Op {
    pub(super) at: Duration,
    pub(super) phase: Phase,
    pub(super) write: bool,
    pub(super) ok: bool,
}

/// A fault on one actor's path, from its operation number `at` on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Fault {
    None,
    /// The process (`node: false`; the kernel's kmmpd goes on) or the whole node (`node:
    /// true`: powered off, kmmpd too) dies: that operation and every later one fail.
    Crash {
        at: usize,
        node: bool,
    },
    /// The path to the disk fails for good (EIO); the actor's code decides what to do.
    Eio {
        at: usize,
    },
    /// Slow and intermittent I/O: each operation takes up to `max_delay` (taking effect at a
    /// random moment inside it) and fails with EIO with `eio_percent` % probability.
    Degraded {
        at: usize,
        max_delay: Duration,
        eio_percent: u64,
    },
    /// SIGSTOP right before that operation, SIGCONT `for_` later (the protocol steps only,
    /// never a holder's beat).
    Stop {
        at: usize,
        for_: Duration,
    },
}

/// One actor's path to the shared device: counts its MMP operations and injects its fault.
pub(super) struct Disk<'a> {
    dev: &'a MemDevice,
    clock: SimClock<'a>,
    mmp_offset: u64,
    fault: Fault,
    /// Every write takes this long and lands at its end.
    write_latency: Duration,
    rng: RefCell<Rng>,
    ops: Cell<usize>,
    phase: Cell<Phase>,
    kernel: Cell<bool>,
    crashed_at: Cell<Option<Duration>>,
    path_lost_at: Cell<Option<Duration>>,
    pub(super) log: RefCell<Vec<Op>>,
}

impl<'a> Disk<'a> {
    pub(super) fn new(
        dev: &'a MemDevice,
        clock: SimClock<'a>,
        mmp_offset: u64,
        fault: Fault,
        write_latency: Duration,
        rng: Rng,
    ) -> Self {
        Disk {
            dev,
            clock,
            mmp_offset,
            fault,
            write_latency,
            rng: RefCell::new(rng),
            ops: Cell::new(0),
            phase: Cell::new(Phase::Offer),
            kernel: Cell::new(false),
            crashed_at: Cell::new(None),
            path_lost_at: Cell::new(None),
            log: RefCell::new(Vec::new()),
        }
    }

    pub(super) fn set_phase(&self, p: Phase) {
        self.phase.set(p);
    }
    /// From now on the kernel does the I/O (past `mount(2)`'s first read).
    pub(super) fn kernel_from_now(&self) {
        self.kernel.set(true);
    }
    pub(super) fn ops(&self) -> usize {
        self.ops.get()
    }
    pub(super) fn crashed(&self) -> bool {
        self.crashed_at.get().is_some()
    }
    pub(super) fn path_lost(&self) -> bool {
        self.path_lost_at.get().is_some()
    }
    fn eio() -> io::Error {
        io::Error::from_raw_os_error(5)
    }

    /// One operation on the MMP block through the fault: `f` does it.
    fn op(&self, write: bool, f: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let k = self.ops.get();
        self.ops.set(k + 1);
        let kernel = self.kernel.get();
        let mut fail = self.crashed() || self.path_lost();
        let (mut before, mut after) = (Duration::ZERO, Duration::ZERO);
        match self.fault {
            Fault::Crash { at, node } if k >= at && !fail && (node || !kernel) => {
                self.crashed_at.set(Some(self.clock.now()));
                fail = true;
            }
            Fault::Eio { at } if k >= at && !fail => {
                self.path_lost_at.set(Some(self.clock.now()));
                fail = true;
            }
            // Not a holder: one stopped between its last check and its write lands that write late
            // whatever protocol it runs (the heartbeat's watchdog covers it, not the handoff).
            Fault::Stop { at, for_ } if k == at && !self.phase.get().holder() => {
                self.clock.sleep(for_)
            }
            Fault::Degraded {
                at,
                max_delay,
                eio_percent,
            } if k >= at => {
                let mut rng = self.rng.borrow_mut();
                let d = rng.ms(0, max_delay.as_millis() as u64);
                before = d.mul_f64(rng.below(1001) as f64 / 1000.0);
                after = d - before;
                fail |= rng.percent(eio_percent);
            }
            _ => {}
        }
        if write {
            before += self.write_latency;
        }
        if !before.is_zero() {
            self.clock.sleep(before);
        }
        let at = self.clock.now();
        let r = if fail { Err(Self::eio()) } else { f() };
        self.log.borrow_mut().push(Op {
            at,
            phase: self.phase.get(),
            write,
            ok: r.is_ok(),
        });
        if !after.is_zero() {
            self.clock.sleep(after);
        }
        r
    }
}

impl BlockIo for Disk<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset != self.mmp_offset {
            return self.dev.read_at(offset, buf);
        }
        self.op(false, || self.dev.read_at(offset, buf))
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.op(true, || self.dev.write_at(offset, buf))
    }
    fn sync(&self) -> io::Result<()> {
        if self.crashed() || self.path_lost() {
            return Err(Disk::eio());
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.dev.size()
    }
    fn logical_block_size(&self) -> u32 {
        512
    }
    fn name(&self) -> &str {
        "sim"
    }
}

/// How a holder ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HoldEnd {
    /// Still holding when the run ended.
    Alive,
    /// `mmp-tool mount` or the kernel refused to mount (the block was not what it expected).
    MountAborted,
    /// mmpd fenced (a foreign write, or no successful write for too long).
    Fenced,
    /// The process or node died, or its path to the disk is gone for good.
    Dead,
    /// kmmpd's writes failed for longer than a reader waits: by the MMP rules any node may take
    /// the device now (the kernel's limit, outside the handoff).
    Lapsed,
}

/// What a reader waits for a kmmpd block (`s_mmp_update_interval` 5 s: check interval 5).
const KMMPD_READERS_WAIT: Duration = Duration::from_secs(11);
const KMMPD_INTERVAL: Duration = Duration::from_secs(5);

/// A kernel mount and its kmmpd. With `claimed` (the block and bytes a claim left), first
/// `mmp-tool mount`'s CLEAN over that block (a rollback left CLEAN already). The mount writes
/// a random sequence over the CLEAN block and re-reads it (no wait for CLEAN); kmmpd then
/// writes 1, 2, 3 ... every 5 s, keeping the padding, never reading, never stopping.
pub(super) fn kmmpd(
    fs: &MmpFs<&Disk<'_>>,
    disk: &Disk<'_>,
    clock: &SimClock<'_>,
    claimed: Option<&crate::protocol::claim::Claimed>,
    rng: &mut Rng,
) -> HoldEnd {
    use crate::protocol::claim::{release_for_mount, Handover};
    disk.set_phase(Phase::Tool);
    if let Some(c) = claimed {
        match release_for_mount(fs, clock, c) {
            Ok(Handover::Clean) => {}
            _ if disk.crashed() => return HoldEnd::Dead,
            _ => return HoldEnd::MountAborted,
        }
    }
    let found = match fs.read_mmp() {
        Ok(b) if b.seq_class() == SeqClass::Clean => b,
        _ if disk.crashed() => return HoldEnd::Dead,
        _ => return HoldEnd::MountAborted,
    };
    disk.kernel_from_now();
    disk.set_phase(Phase::Kernel);
    let mut blk = found;
    blk.mmp_seq = 1 + rng.below(u64::from(EXT4_MMP_SEQ_MAX - 1)) as u32;
    if fs.write_mmp_synced(&blk).is_err() {
        return if disk.crashed() {
            HoldEnd::Dead
        } else {
            HoldEnd::MountAborted
        };
    }
    match fs.read_mmp() {
        Ok(b) if b.mmp_seq == blk.mmp_seq && b.mmp_nodename == blk.mmp_nodename => {}
        _ if disk.crashed() || disk.path_lost() => return HoldEnd::Dead,
        _ => return HoldEnd::MountAborted,
    }
    let mut last_ok = clock.now();
    let mut seq = 0;
    loop {
        if clock.sim.stopped() {
            return HoldEnd::Alive;
        }
        seq += 1;
        blk.mmp_seq = seq;
        blk.mmp_time += 1;
        let t = clock.now();
        match fs.write_mmp_synced(&blk) {
            Ok(()) => last_ok = t,
            Err(_) if disk.crashed() || disk.path_lost() => return HoldEnd::Dead,
            Err(_) if t.saturating_sub(last_ok) >= KMMPD_READERS_WAIT => return HoldEnd::Lapsed,
            Err(_) => {}
        }
        clock.sleep(KMMPD_INTERVAL);
    }
}

/// mmpd: libmmp's heartbeat, every second, until it fences, dies or the run ends.
pub(super) fn mmpd(mut hb: Heartbeat<&Disk<'_>>, disk: &Disk<'_>, clock: &SimClock<'_>) -> HoldEnd {
    disk.set_phase(Phase::Mmpd);
    loop {
        if clock.sim.stopped() {
            return HoldEnd::Alive;
        }
        if disk.crashed() {
            return HoldEnd::Dead;
        }
        let due = hb.next_due();
        let now = clock.now();
        if due > now {
            clock.sleep(due - now);
            continue;
        }
        if hb.beat(clock).is_err() {
            return if disk.crashed() {
                HoldEnd::Dead
            } else {
                HoldEnd::Fenced
            };
        }
    }
}
