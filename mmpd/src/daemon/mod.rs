//! The main thread: signals (signalfd + poll), systemd notifications, the watchdog, state files,
//! fence actions, and the heartbeat schedule.
//!
//! One loop holds every device: it owns each held device's [`Heartbeat`], hands it to the I/O
//! pool ([`crate::pool`]) when its beat is due and gets it back with the result. It does no
//! device I/O itself, so it can always fence: a device whose I/O hangs is fenced here when its
//! last successful write gets too old, and its pool thread is replaced so that the other
//! devices keep beating. Claims run on threads of their own ([`crate::claim_thread`]).
//!
//! The loop sleeps in `poll` on the signalfd and an eventfd that the pool and the claim threads
//! write, until the next beat is due or at most [`TICK`] (less for intervals under 1 s): a
//! successful beat does not wake it, failures, fences, claims and releases do. Beats due within
//! a twentieth of their interval are issued together (a little early, never late), so 1,000
//! devices cost a few wake-ups per second, not 1,000. A device's state file is rewritten only
//! when its state changes (claiming, holding, fenced), not at every sequence.
//!
//! Here: the loop, claims, beats and releases, signals and SIGHUP. Beside it: `inbox` (what the
//! pool and claim threads send), `tick` (the periodic steps: stuck devices, READY=1, the
//! watchdogs, when to stop), `fencing` (fence actions, the self-fence tag), `state_files` (the
//! run directory's state files).

use crate::claim_thread::{self, ClaimControl, Event};
use crate::cli::{Cli, FenceAction};
use crate::config::{self, Config, DeviceConfig};
use crate::error::{DaemonError, ExitStatus};
use crate::fence::{self, ArmedWatchdog};
use crate::pool::{Done, IoJob, Pool, Work};
use libmmp::fs::MmpFs;
use libmmp::host::run_dir::{self, HolderLock};
use libmmp::io::device::{Access, Device};
use libmmp::protocol::claim::{bdevname_of, ClaimOptions};
use libmmp::protocol::clock::{wall_now, Clock, SystemClock};
use libmmp::protocol::heartbeat::{Beat, Heartbeat};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use sd_notify::NotifyState;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

mod fencing;
mod inbox;
mod sdnotify;
mod state_files;
mod tick;

use inbox::{Inbox, Msg};

/// How far past fail_after (and how long in the pool) a heartbeat may go before the main loop
/// fences it as stuck: far below the 1 s that readers wait beyond the check interval.
const STUCK_SLACK: Duration = Duration::from_millis(500);

/// The longest the main loop sleeps: fence checks, the watchdogs, finished beats, claims' and
/// fence commands' ends are looked at this often (failures, fences, claims and releases wake
/// it at once).
const TICK: Duration = Duration::from_millis(250);
/// I/O pool threads (fewer while fewer devices are held). A beat is a read, a write and a
/// sync of one block: a few hundred microseconds, so 4 threads serve thousands of devices at
/// 1 s while keeping a few I/Os in flight. The beats of image files on one filesystem in one
/// batch share one `syncfs` (group commit, see [`crate::pool`]).
const POOL_THREADS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Claiming,
    Holding,
    Fenced,
    Released,
    Failed,
}

impl SlotState {
    fn name(self) -> &'static str {
        match self {
            SlotState::Claiming => "claiming",
            SlotState::Holding => "holding",
            SlotState::Fenced => "fenced",
            SlotState::Released => "released",
            SlotState::Failed => "failed",
        }
    }
    fn active(self) -> bool {
        matches!(self, SlotState::Claiming | SlotState::Holding)
    }
}

struct Slot {
    cfg: DeviceConfig,
    /// The claim thread, while claiming.
    claim: Option<(Arc<ClaimControl>, JoinHandle<()>)>,
    lock: HolderLock,
    state: SlotState,
    since: u64,
    /// Part of the startup set: READY=1 waits for it, and its failure fails the start.
    initial: bool,
    reason: String,
    state_written: Option<SlotState>,
    /// The heartbeat while it is here (holding, and no job in the pool).
    hb: Option<Box<Heartbeat<Device>>>,
    /// When its job (beat or release) went to the pool, while the pool has it.
    in_pool: Option<Duration>,
    /// Release at the next chance (SIGTERM, removed from the configuration).
    release: bool,
    /// Our last sequence on disk.
    seq: u32,
    /// When the last write succeeded (or the claim won).
    last_success: Duration,
    failing: bool,
}

impl Slot {
    /// Its heartbeat, to hand to the pool at `now`: only while holding with no job there yet.
    fn take_for_pool(&mut self, now: Duration) -> Option<Box<Heartbeat<Device>>> {
        if self.state != SlotState::Holding || self.in_pool.is_some() {
            return None;
        }
        let hb = self.hb.take()?;
        self.in_pool = Some(now);
        Some(hb)
    }
}

/// Open and check a device, and take its lock, without writing anything.
fn prepare(
    run_dir: &Path,
    dc: &DeviceConfig,
    access: Access,
) -> Result<(HolderLock, MmpFs<Device>), DaemonError> {
    let lock = run_dir::lock_device(run_dir, &dc.path)?;
    let fs = MmpFs::open_path(&dc.path, access)?;
    fs.require_mmp()?;
    libmmp::fs::mmp_write_span(
        fs.superblock().block_size(),
        libmmp::io::BlockIo::logical_block_size(fs.device()),
    )
    .map_err(|source| DaemonError::WriteSpan {
        path: dc.path.clone(),
        source,
    })?;
    Ok((lock, fs))
}

/// Block the signals mmpd handles, before any thread starts, so that every thread inherits
/// the mask and only the signalfd sees them.
fn block_signals() -> Result<SignalFd, DaemonError> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().map_err(DaemonError::SignalMask)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(DaemonError::Signalfd)
}

pub struct Daemon {
    cli: Cli,
    cfg: Config,
    clock: SystemClock,
    slots: Vec<Slot>,
    inbox: Arc<Inbox>,
    pool: Pool<Device>,
    /// Idle heartbeats by the time their next beat is due, earliest first. An entry whose slot
    /// no longer has its heartbeat idle is skipped when it comes up.
    schedule: BinaryHeap<Reverse<(Duration, usize)>>,
    /// Idle heartbeats to release at once.
    releases: Vec<usize>,
    /// When beats were last handed to the pool.
    last_batch: Duration,
    /// The longest sleep: [`TICK`], or a quarter of the shortest interval held, so that a beat's
    /// result (which does not wake the loop) is back well before the next beat is due.
    max_sleep: Duration,
    ready_sent: bool,
    shutting_down: bool,
    watchdog: Option<ArmedWatchdog>,
    /// The watchdog's timeout once armed, when it is a real watchdog whose timeout mmpd set:
    /// devices with the watchdog fence then publish their self-fence tag.
    watchdog_timeout: Option<Duration>,
    sd_watchdog: Option<Duration>,
    last_sd_pet: Duration,
    last_pet: Duration,
    last_status: Duration,
    children: Vec<(String, Child)>,
    /// The exit code once no device is held any more.
    final_status: ExitStatus,
}

use sdnotify::notify;

impl Daemon {
    pub fn new(cli: Cli, cfg: Config) -> Result<Self, DaemonError> {
        let mut usec = 0u64;
        let sd_watchdog =
            sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec) / 2);
        let clock = SystemClock::start();
        let inbox = Arc::new(Inbox::new().map_err(DaemonError::Eventfd)?);
        let sink = inbox.clone();
        let pool = Pool::new(Arc::new(move |d, wake| sink.push(Msg::Io(d), wake)), clock);
        Ok(Daemon {
            cli,
            cfg,
            clock,
            slots: Vec::new(),
            inbox,
            pool,
            schedule: BinaryHeap::new(),
            releases: Vec::new(),
            last_batch: Duration::ZERO,
            max_sleep: TICK,
            ready_sent: false,
            shutting_down: false,
            watchdog: None,
            watchdog_timeout: None,
            sd_watchdog,
            last_sd_pet: Duration::ZERO,
            last_pet: Duration::ZERO,
            last_status: Duration::ZERO,
            children: Vec::new(),
            final_status: ExitStatus::Success,
        })
    }

    /// Check every device read-only and print what would be held (`--check-config`).
    pub fn check_only(&self) -> Result<(), DaemonError> {
        self.check_watchdog()?;
        for dc in &self.cfg.devices {
            let (_lock, fs) = prepare(&self.cfg.run_dir, dc, Access::ReadOnly)?;
            let (blk, _) = fs.read_mmp_raw()?;
            println!(
                "{}: MMP block {} ({} now, last node '{}'); interval {:.1} s, fail after {} intervals, publish check interval {} s, fence {}",
                dc.path.display(),
                fs.superblock().s_mmp_block,
                blk.seq_class().name(),
                blk.nodename(),
                dc.heartbeat.interval.as_secs_f64(),
                dc.heartbeat.fail_intervals,
                dc.check_interval,
                dc.fence.name()
            );
        }
        Ok(())
    }

    /// With the watchdog fence, the watchdog must be one (see [`fence::check_watchdog_path`]).
    fn check_watchdog(&self) -> Result<(), DaemonError> {
        if !self.cfg.uses_watchdog() {
            return Ok(());
        }
        Ok(fence::check_watchdog_path(&self.cfg.watchdog_device)?)
    }

    fn start_device(&mut self, dc: DeviceConfig, initial: bool) -> Result<(), DaemonError> {
        let (lock, fs) = prepare(&self.cfg.run_dir, &dc, Access::ReadWrite)?;
        let control = Arc::new(ClaimControl::default());
        let id = self.slots.len();
        let task = claim_thread::ClaimTask {
            id,
            fs,
            heartbeat: dc.heartbeat,
            claim: ClaimOptions {
                nodename: self.cfg.node_name.clone(),
                bdevname: bdevname_of(&dc.path.display().to_string()),
                check_interval: dc.check_interval,
                poll: self.cfg.poll,
            },
            control: control.clone(),
            events: {
                let inbox = self.inbox.clone();
                Arc::new(move |e| inbox.push(Msg::Claim(e), true))
            },
            clock: self.clock,
            fenced: if initial {
                self.cfg.fenced.clone()
            } else {
                None
            },
            handoff: if initial { self.cfg.handoff } else { None },
        };
        let handle = claim_thread::spawn(task).map_err(DaemonError::ClaimThread)?;
        self.slots.push(Slot {
            cfg: dc,
            claim: Some((control, handle)),
            lock,
            state: SlotState::Claiming,
            since: wall_now(),
            initial,
            reason: String::new(),
            state_written: None,
            hb: None,
            in_pool: None,
            release: false,
            seq: 0,
            last_success: Duration::ZERO,
            failing: false,
        });
        Ok(())
    }

    /// Run until released, fenced or failed; the exit code.
    pub fn run(mut self) -> Result<ExitStatus, DaemonError> {
        let sfd = block_signals()?;
        self.start()?;
        let inbox = self.inbox.clone();
        let mut next_tick = Duration::ZERO;
        loop {
            self.sleep(&sfd, &inbox);
            let mut changed = self.take_signals(&sfd);
            for m in inbox.take() {
                let (status, urgent) = match m {
                    Msg::Claim(ev) => (self.on_event(ev), true),
                    Msg::Io(done) => self.on_done(done),
                };
                changed |= urgent;
                if let Some(status) = status {
                    return Ok(status);
                }
            }
            let now = self.clock.now();
            if changed || now >= next_tick {
                next_tick = now + self.max_sleep;
                if let Some(status) = self.tick() {
                    return Ok(status);
                }
            }
            self.dispatch(self.clock.now());
        }
    }

    /// Check the watchdog, and check and lock every device, before claiming any (a bad
    /// watchdog or device fails the start with nothing written); then start every claim.
    fn start(&mut self) -> Result<(), DaemonError> {
        self.check_watchdog()?;
        let mut prepared = Vec::new();
        for dc in &self.cfg.devices {
            prepared.push(prepare(&self.cfg.run_dir, dc, Access::ReadOnly)?);
        }
        drop(prepared);
        for dc in self.cfg.devices.clone() {
            self.start_device(dc, true)?;
        }
        notify(&[NotifyState::Status(&format!(
            "claiming {} device(s)",
            self.slots.len()
        ))]);
        Ok(())
    }

    /// Sleep in `poll` on the signalfd and the inbox's eventfd until the next beat is due (at
    /// most `max_sleep`).
    fn sleep(&self, sfd: &SignalFd, inbox: &Inbox) {
        let wait = self.next_wake(self.clock.now()).min(self.max_sleep);
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(inbox.efd.as_fd(), PollFlags::POLLIN),
        ];
        // Rounded up: a wait of 0.4 ms must not become a busy poll(0) loop.
        let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => tracing::error!("poll: {e}"),
        }
        let woken = fds[1].revents().is_some_and(|r| !r.is_empty());
        if woken {
            // EAGAIN: a wake-up already consumed; the messages are taken anyway.
            let _ = inbox.efd.read();
        }
    }

    /// Handle the pending signals; whether there were any.
    fn take_signals(&mut self, sfd: &SignalFd) -> bool {
        let mut any = false;
        loop {
            match sfd.read_signal() {
                Ok(Some(si)) => {
                    any = true;
                    self.on_signal(si.ssi_signo as i32);
                }
                Ok(None) => return any,
                Err(e) => {
                    tracing::error!("reading signalfd: {e}");
                    return any;
                }
            }
        }
    }

    /// Beats due within this much of the first are issued with it (early, never late): a
    /// twentieth of the shortest interval held (50 ms at 1 s), so the loop wakes at most about
    /// 20 times per interval for beats however many devices it holds.
    fn batch_window(&self) -> Duration {
        self.max_sleep / 5
    }

    /// How long until the next batch of beats is due (zero if one is due now).
    fn next_wake(&self, now: Duration) -> Duration {
        if !self.releases.is_empty() {
            return Duration::ZERO;
        }
        // Every beat due up to a window past the last batch went with it, so waiting until one
        // window after it is never late, and keeps batches at least a window apart.
        self.schedule.peek().map_or(TICK, |Reverse((t, _))| {
            let w = self.batch_window();
            t.saturating_sub(w)
                .max(self.last_batch + w)
                .saturating_sub(now)
        })
    }

    /// The self-fence tag device `id` writes now: only with the watchdog fence, once the
    /// watchdog is armed with a known timeout, and while it is still petted.
    fn fence_tag(&self, id: usize) -> Option<libmmp::ondisk::fence_tag::FenceTag> {
        let s = &self.slots[id];
        let petting = self.watchdog.as_ref().is_some_and(|w| w.is_petting());
        if s.cfg.fence != FenceAction::Watchdog || !petting {
            return None;
        }
        s.cfg.heartbeat.watchdog_fence_tag(self.watchdog_timeout?)
    }

    /// Put a heartbeat back in its slot, scheduled for its next beat or for release.
    fn park(&mut self, id: usize, mut hb: Box<Heartbeat<Device>>) {
        hb.set_fence_tag(self.fence_tag(id));
        let s = &mut self.slots[id];
        if s.release || self.shutting_down {
            self.releases.push(id);
        } else {
            self.schedule.push(Reverse((hb.next_due(), id)));
        }
        s.hb = Some(hb);
    }

    /// Hand every due beat (and every requested release) to the pool, in one batch.
    fn dispatch(&mut self, now: Duration) {
        let mut jobs = Vec::new();
        for id in std::mem::take(&mut self.releases) {
            if let Some(hb) = self.slots[id].take_for_pool(now) {
                jobs.push(IoJob {
                    id,
                    work: Work::Release(hb),
                });
            }
        }
        let until = now + self.batch_window();
        self.last_batch = now;
        while let Some(&Reverse((t, id))) = self.schedule.peek() {
            if t > until {
                break;
            }
            self.schedule.pop();
            if let Some(hb) = self.slots[id].take_for_pool(now) {
                jobs.push(IoJob {
                    id,
                    work: Work::Beat(hb),
                });
            }
        }
        if !jobs.is_empty() {
            self.pool.submit(jobs);
        }
    }

    /// A job came back from the pool: `(exit code, whether the loop should look at once)`.
    fn on_done(&mut self, done: Done<Device>) -> (Option<ExitStatus>, bool) {
        match done {
            Done::Beat { id, hb, result, at } => {
                let s = &mut self.slots[id];
                s.in_pool = None;
                if s.state != SlotState::Holding {
                    // Fenced while the beat ran: the heartbeat is dropped, never used again.
                    return (None, false);
                }
                match result {
                    Ok(Beat::Wrote { seq }) => {
                        if s.failing {
                            tracing::warn!(device = %s.cfg.path.display(), "MMP writes succeed again");
                            s.failing = false;
                        }
                        s.seq = seq;
                        // From the write's submission, as the heartbeat counts (the watchdog
                        // is petted only while this is recent: the self-fence bound).
                        s.last_success = hb.last_success().min(at);
                        self.park(id, hb);
                        (None, false)
                    }
                    Ok(Beat::Failed {
                        error,
                        since_success,
                    }) => {
                        s.failing = true;
                        tracing::warn!(device = %s.cfg.path.display(), since_success_s = since_success.as_secs_f64(), "MMP heartbeat failed: {error}");
                        self.park(id, hb);
                        (None, true)
                    }
                    Err(reason) => {
                        s.seq = hb.seq();
                        let seq = s.seq;
                        (self.fence(id, &reason.to_string(), seq), true)
                    }
                }
            }
            Done::Released { id, outcome } => {
                let s = &mut self.slots[id];
                s.in_pool = None;
                match outcome {
                    Ok(()) => {
                        s.state = SlotState::Released;
                        tracing::info!(device = %s.cfg.path.display(), "released: MMP block set to CLEAN");
                    }
                    Err(e) => {
                        s.state = SlotState::Failed;
                        s.reason = e.to_string();
                        tracing::error!(device = %s.cfg.path.display(), "release: {e}");
                        self.final_status = self.final_status.max(ExitStatus::Fenced);
                    }
                }
                (None, true)
            }
        }
    }

    fn on_signal(&mut self, signo: i32) {
        match Signal::try_from(signo) {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) if !self.shutting_down => {
                tracing::info!("signal {signo}: releasing every device");
                self.begin_shutdown();
            }
            Ok(Signal::SIGHUP) => self.reload(),
            _ => {}
        }
    }

    fn reload(&mut self) {
        let Some(path) = self.cli.config.clone() else {
            tracing::info!("SIGHUP: no configuration file (--config) to re-read");
            return;
        };
        notify(&[NotifyState::Reloading]);
        let new = match config::load(&self.cli) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("SIGHUP: {e}; keeping the running configuration");
                notify(&[NotifyState::Ready]);
                return;
            }
        };
        tracing::info!(config = %path.display(), "SIGHUP: configuration re-read");
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !slot.state.active() {
                continue;
            }
            match new.devices.iter().find(|d| d.path == slot.cfg.path) {
                Some(d) => {
                    if d.heartbeat != slot.cfg.heartbeat {
                        tracing::warn!(device = %d.path.display(), "interval/fail_intervals changed: restart mmpd to apply (a running holder keeps its published check interval)");
                    }
                    slot.cfg.fence = d.fence;
                    slot.cfg.fence_command = d.fence_command.clone();
                }
                None => {
                    tracing::info!(device = %slot.cfg.path.display(), "removed from the configuration: releasing");
                    slot.release = true;
                    if let Some((control, _)) = &slot.claim {
                        control.request_stop();
                    }
                    if slot.hb.is_some() {
                        self.releases.push(i);
                    }
                }
            }
        }
        let added: Vec<DeviceConfig> = new
            .devices
            .iter()
            .filter(|d| {
                !self
                    .slots
                    .iter()
                    .any(|s| s.cfg.path == d.path && s.state.active())
            })
            .cloned()
            .collect();
        self.cfg.devices = new.devices.clone();
        for dc in added {
            let path = dc.path.clone();
            if let Err(f) = self.start_device(dc, false) {
                tracing::error!(device = %path.display(), "not holding it: {f}");
            }
        }
        notify(&[NotifyState::Ready]);
    }

    /// Handle a claim thread's report; `Some(code)` ends the daemon.
    fn on_event(&mut self, ev: Event) -> Option<ExitStatus> {
        match ev {
            Event::Claimed {
                id,
                hb,
                previous,
                elapsed,
            } => {
                let now = self.clock.now();
                let s = &mut self.slots[id];
                let stop = s
                    .claim
                    .take()
                    .is_some_and(|(control, _)| control.stop_requested());
                s.state = SlotState::Holding;
                s.seq = hb.seq();
                s.last_success = now;
                s.release |= stop;
                tracing::info!(device = %s.cfg.path.display(), seq = format_args!("{:#010x}", s.seq), ?previous, elapsed_s = elapsed.as_secs_f64(), "claimed: holding the device");
                self.max_sleep = self.max_sleep.min(s.cfg.heartbeat.interval / 4);
                self.park(id, hb);
                let held = self
                    .slots
                    .iter()
                    .filter(|s| s.state == SlotState::Holding)
                    .count();
                if let Err(e) = self.pool.grow_to(held.min(POOL_THREADS)) {
                    // The threads already there serve the queue; with none at all the device
                    // is fenced when its heartbeat gets too old.
                    tracing::error!("cannot start an I/O thread: {e}");
                }
            }
            Event::ClaimFailed { id, error } => {
                let s = &mut self.slots[id];
                s.claim = None;
                s.state = SlotState::Failed;
                s.reason = error.to_string();
                tracing::error!(device = %s.cfg.path.display(), "claim failed: {error}");
                if s.initial && !self.ready_sent && !self.shutting_down {
                    // The start fails: release whatever else was claimed.
                    let path = s.cfg.path.clone();
                    self.stop_with(&DaemonError::Claim {
                        path,
                        source: error,
                    });
                }
            }
        }
        None
    }

    /// Release every device and exit with the status of `e` (already logged).
    fn stop_with(&mut self, e: &DaemonError) {
        self.final_status = e.exit_status();
        self.begin_shutdown();
    }

    fn begin_shutdown(&mut self) {
        if !self.shutting_down {
            self.shutting_down = true;
            notify(&[NotifyState::Stopping]);
            for (i, s) in self.slots.iter_mut().enumerate() {
                s.release = true;
                if let Some((control, _)) = &s.claim {
                    control.request_stop();
                }
                if s.hb.is_some() {
                    self.releases.push(i);
                }
            }
        }
    }
}
