//! The main thread: signals (signalfd + poll), systemd notifications, the watchdog, state files,
//! fence actions, and the supervision of the device threads.

use crate::cli::{Cli, FenceAction};
use crate::config::{self, Config, DeviceConfig};
use crate::exit;
use crate::fence::{self, Watchdog};
use crate::worker::{self, EpochClock, Event, Shared};
use libmmp::claim::{bdevname_of, wall_now, ClaimOptions};
use libmmp::device::{Access, Device};
use libmmp::fs::MmpFs;
use libmmp::holder::{self, HolderLock, HolderState, LockError};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use sd_notify::NotifyState;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An error that stops the daemon, with its exit code.
#[derive(Debug)]
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

impl Fatal {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Fatal {
            code,
            message: message.into(),
        }
    }
}

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
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    lock: HolderLock,
    state: SlotState,
    since: u64,
    /// Part of the startup set: READY=1 waits for it, and its failure fails the start.
    initial: bool,
    reason: String,
    state_written: Option<(SlotState, u32)>,
}

/// Open and check a device, and take its lock, without writing anything.
fn prepare(
    run_dir: &Path,
    dc: &DeviceConfig,
    access: Access,
) -> Result<(HolderLock, MmpFs<Device>), Fatal> {
    let lock = holder::lock_device(run_dir, &dc.path).map_err(|e| match e {
        LockError::Busy { .. } => Fatal::new(exit::BUSY, e.to_string()),
        e => Fatal::new(exit::ERROR, e.to_string()),
    })?;
    let dev = Device::open(&dc.path, access).map_err(|e| Fatal::new(exit::ERROR, e.to_string()))?;
    let fs = MmpFs::open(dev).map_err(|e| Fatal::new(exit::ERROR, e.to_string()))?;
    fs.require_mmp()
        .map_err(|e| Fatal::new(exit::ERROR, e.to_string()))?;
    libmmp::write::mmp_write_span(
        fs.superblock().block_size(),
        libmmp::device::BlockIo::logical_block_size(fs.device()),
    )
    .map_err(|m| Fatal::new(exit::ERROR, format!("{}: {m}", dc.path.display())))?;
    Ok((lock, fs))
}

pub struct Daemon {
    cli: Cli,
    cfg: Config,
    clock: EpochClock,
    slots: Vec<Slot>,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
    ready_sent: bool,
    shutting_down: bool,
    watchdog: Option<Watchdog>,
    sd_watchdog: Option<Duration>,
    last_sd_pet: Duration,
    last_pet: Duration,
    last_status: Duration,
    children: Vec<(String, Child)>,
    /// The exit code once no device is held any more.
    final_code: u8,
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify: {e}");
    }
}

impl Daemon {
    pub fn new(cli: Cli, cfg: Config) -> Self {
        let (events_tx, events) = mpsc::channel();
        let mut usec = 0u64;
        let sd_watchdog =
            sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec) / 2);
        Daemon {
            cli,
            cfg,
            clock: EpochClock {
                origin: Instant::now(),
            },
            slots: Vec::new(),
            events_tx,
            events,
            ready_sent: false,
            shutting_down: false,
            watchdog: None,
            sd_watchdog,
            last_sd_pet: Duration::ZERO,
            last_pet: Duration::ZERO,
            last_status: Duration::ZERO,
            children: Vec::new(),
            final_code: exit::OK,
        }
    }

    /// Check every device read-only and print what would be held (`--check-config`).
    pub fn check_only(&self) -> Result<(), Fatal> {
        for dc in &self.cfg.devices {
            let (_lock, fs) = prepare(&self.cfg.run_dir, dc, Access::ReadOnly)?;
            let (blk, _) = fs
                .read_mmp_raw()
                .map_err(|e| Fatal::new(exit::ERROR, e.to_string()))?;
            println!(
                "{}: MMP block {} ({} now, last node '{}'); interval {:.1} s, fail after {} intervals, publish check interval {} s, fence {}",
                dc.path.display(),
                fs.superblock().s_mmp_block,
                blk.seq_class().name(),
                blk.nodename(),
                dc.heartbeat.interval.as_secs_f64(),
                dc.heartbeat.fail_intervals,
                dc.heartbeat.publish_check_interval(),
                dc.fence.name()
            );
        }
        Ok(())
    }

    fn start_device(&mut self, dc: DeviceConfig, initial: bool) -> Result<(), Fatal> {
        let (lock, fs) = prepare(&self.cfg.run_dir, &dc, Access::ReadWrite)?;
        let shared = Arc::new(Shared::default());
        let id = self.slots.len();
        let job = worker::Job {
            id,
            fs,
            heartbeat: dc.heartbeat,
            claim: ClaimOptions {
                nodename: self.cfg.node_name.clone(),
                bdevname: bdevname_of(&dc.path.display().to_string()),
                check_interval: dc.heartbeat.publish_check_interval(),
                poll: self.cfg.poll,
            },
            shared: shared.clone(),
            events: self.events_tx.clone(),
            clock: self.clock,
        };
        let handle = worker::spawn(job)
            .map_err(|e| Fatal::new(exit::ERROR, format!("cannot start a device thread: {e}")))?;
        self.slots.push(Slot {
            cfg: dc,
            shared,
            handle: Some(handle),
            lock,
            state: SlotState::Claiming,
            since: wall_now(),
            initial,
            reason: String::new(),
            state_written: None,
        });
        Ok(())
    }

    /// Run until released, fenced or failed; the exit code.
    pub fn run(mut self) -> Result<u8, Fatal> {
        // Block the signals before any thread starts, so they all inherit the mask and only
        // the signalfd sees them.
        let mut mask = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            mask.add(s);
        }
        mask.thread_block()
            .map_err(|e| Fatal::new(exit::ERROR, format!("sigprocmask: {e}")))?;
        let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| Fatal::new(exit::ERROR, format!("signalfd: {e}")))?;

        // Check and lock every device before claiming any: a bad device fails the start with
        // nothing written.
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

        loop {
            let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => tracing::error!("poll: {e}"),
            }
            loop {
                match sfd.read_signal() {
                    Ok(Some(si)) => self.on_signal(si.ssi_signo as i32),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!("reading signalfd: {e}");
                        break;
                    }
                }
            }
            while let Ok(ev) = self.events.try_recv() {
                if let Some(code) = self.on_event(ev) {
                    return Ok(code);
                }
            }
            if let Some(code) = self.tick() {
                return Ok(code);
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
        for slot in &mut self.slots {
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
                    slot.shared.request_stop();
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
                tracing::error!(device = %path.display(), "not holding it: {}", f.message);
            }
        }
        notify(&[NotifyState::Ready]);
    }

    /// Handle a device thread's report; `Some(code)` ends the daemon.
    fn on_event(&mut self, ev: Event) -> Option<u8> {
        match ev {
            Event::Claimed {
                id,
                seq,
                previous,
                elapsed,
            } => {
                let s = &mut self.slots[id];
                if s.state == SlotState::Fenced {
                    return None;
                }
                s.state = SlotState::Holding;
                tracing::info!(device = %s.cfg.path.display(), seq = format_args!("{seq:#010x}"), ?previous, elapsed_s = elapsed.as_secs_f64(), "claimed: holding the device");
            }
            Event::ClaimFailed { id, error, refusal } => {
                let s = &mut self.slots[id];
                s.state = SlotState::Failed;
                s.reason = error.clone();
                tracing::error!(device = %s.cfg.path.display(), "claim failed: {error}");
                if s.initial && !self.ready_sent && !self.shutting_down {
                    // The start fails: release whatever else was claimed.
                    self.final_code = if refusal { exit::REFUSED } else { exit::ERROR };
                    self.begin_shutdown();
                }
            }
            Event::Fenced { id, reason, seq } => {
                let msg = reason.to_string();
                return self.fence(id, &msg, seq);
            }
            Event::Released { id, outcome } => {
                let s = &mut self.slots[id];
                match outcome {
                    Ok(()) => {
                        s.state = SlotState::Released;
                        tracing::info!(device = %s.cfg.path.display(), "released: MMP block set to CLEAN");
                    }
                    Err(e) => {
                        s.state = SlotState::Failed;
                        s.reason = e.clone();
                        tracing::error!(device = %s.cfg.path.display(), "release: {e}");
                        self.final_code = self.final_code.max(exit::FENCED);
                    }
                }
            }
        }
        None
    }

    fn begin_shutdown(&mut self) {
        if !self.shutting_down {
            self.shutting_down = true;
            notify(&[NotifyState::Stopping]);
            for s in &self.slots {
                s.shared.request_stop();
            }
        }
    }

    /// Fence device `id`; `Some(code)` when the daemon must exit now.
    fn fence(&mut self, id: usize, reason: &str, seq: u32) -> Option<u8> {
        let node = self.cfg.node_name.clone();
        let s = &mut self.slots[id];
        if s.state == SlotState::Fenced {
            return None;
        }
        s.state = SlotState::Fenced;
        s.reason = reason.to_string();
        s.shared.fence_from_main();
        let device = s.cfg.path.clone();
        let action = s.cfg.fence;
        tracing::error!(
            device = %device.display(),
            action = action.name(),
            "FENCING: {reason}. This node no longer holds the device and will not write its MMP block again."
        );
        self.final_code = exit::FENCED;
        self.write_states();
        notify(&[NotifyState::Status(&format!(
            "FENCED {}: {reason}",
            device.display()
        ))]);
        match action {
            FenceAction::Exit => {
                tracing::error!(device = %device.display(), "fence action exit: mmpd exits with status {}", exit::FENCED);
                return Some(exit::FENCED);
            }
            FenceAction::Command => {
                let cmd = self.slots[id].cfg.fence_command.clone().unwrap_or_default();
                match fence::spawn_command(&cmd, &device, reason, seq, &node) {
                    Ok(child) => {
                        tracing::error!(device = %device.display(), pid = child.id(), "fence action command: running `{cmd}`");
                        self.children.push((cmd, child));
                    }
                    Err(e) => {
                        tracing::error!(device = %device.display(), "fence command `{cmd}` could not start: {e}; exiting instead");
                        return Some(exit::FENCED);
                    }
                }
            }
            FenceAction::SysrqReboot => {
                tracing::error!(device = %device.display(), trigger = %self.cfg.sysrq_trigger.display(), "fence action sysrq-reboot: rebooting now");
                if let Err(e) = fence::sysrq_reboot(&self.cfg.sysrq_trigger) {
                    tracing::error!("sysrq reboot failed: {e}; exiting instead");
                }
                return Some(exit::FENCED);
            }
            FenceAction::Watchdog => {
                if self.watchdog.is_none() {
                    match Watchdog::open(&self.cfg.watchdog_device) {
                        Ok(w) => self.watchdog = Some(w),
                        Err(e) => {
                            tracing::error!(
                                "cannot open {}: {e}; exiting instead",
                                self.cfg.watchdog_device.display()
                            );
                            return Some(exit::FENCED);
                        }
                    }
                }
                if let Some(w) = &mut self.watchdog {
                    w.stop_petting();
                    tracing::error!(watchdog = %w.path().display(), "fence action watchdog: no longer petting the watchdog; the node resets when its timeout runs out");
                }
            }
        }
        None
    }

    /// Every held device wrote successfully within its limit, and none is fenced.
    fn healthy(&self) -> bool {
        let now_ms = self.clock.origin.elapsed().as_millis() as u64;
        self.slots.iter().all(|s| match s.state {
            SlotState::Holding => {
                let limit = s.cfg.heartbeat.fail_after().as_millis() as u64;
                now_ms.saturating_sub(s.shared.last_success_ms.load(SeqCst)) < limit
            }
            SlotState::Fenced => false,
            _ => true,
        })
    }

    fn write_states(&mut self) {
        let run_dir = self.cfg.run_dir.clone();
        for s in &mut self.slots {
            let seq = s.shared.seq.load(SeqCst);
            if s.state_written == Some((s.state, seq)) {
                continue;
            }
            let st = HolderState {
                pid: std::process::id(),
                device: s.cfg.path.display().to_string(),
                state: s.state.name().to_string(),
                node_name: self.cfg.node_name.clone(),
                seq,
                since: s.since,
                updated: wall_now(),
                interval_ms: s.cfg.heartbeat.interval.as_millis() as u64,
                fail_intervals: s.cfg.heartbeat.fail_intervals,
                check_interval: s.cfg.heartbeat.publish_check_interval(),
                fence: s.cfg.fence.name().to_string(),
                reason: s.reason.clone(),
            };
            let r = if matches!(s.state, SlotState::Released | SlotState::Failed) {
                holder::remove_state(&run_dir, &s.lock)
            } else {
                holder::write_state(&run_dir, &s.lock, &st)
            };
            match r {
                Ok(()) => s.state_written = Some((s.state, seq)),
                Err(e) => tracing::warn!(run_dir = %run_dir.display(), "state file: {e}"),
            }
        }
    }

    /// Periodic work; `Some(code)` ends the daemon.
    fn tick(&mut self) -> Option<u8> {
        let now = self.clock.origin.elapsed();
        // A device thread that has not written for longer than its limit is stuck (hung I/O):
        // it cannot fence itself, so fence it from here.
        let now_ms = now.as_millis() as u64;
        let stuck: Vec<(usize, u64)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::Holding && !self.shutting_down)
            .filter_map(|(i, s)| {
                let age = now_ms.saturating_sub(s.shared.last_success_ms.load(SeqCst));
                let limit = (s.cfg.heartbeat.fail_after() + s.cfg.heartbeat.interval).as_millis();
                (u128::from(age) > limit).then_some((i, age))
            })
            .collect();
        for (i, age) in stuck {
            let seq = self.slots[i].shared.seq.load(SeqCst);
            let reason = format!(
                "NO SUCCESSFUL MMP WRITE for {:.1} s: the device thread is stuck (hung I/O?)",
                age as f64 / 1000.0
            );
            if let Some(code) = self.fence(i, &reason, seq) {
                return Some(code);
            }
        }

        // Fence commands that finished.
        self.children.retain_mut(|(cmd, c)| match c.try_wait() {
            Ok(Some(st)) => {
                tracing::error!("fence command `{cmd}` finished: {st}");
                false
            }
            Ok(None) => true,
            Err(e) => {
                tracing::error!("fence command `{cmd}`: {e}");
                false
            }
        });

        if !self.ready_sent && !self.shutting_down {
            let initial_held = self
                .slots
                .iter()
                .filter(|s| s.initial)
                .all(|s| s.state == SlotState::Holding);
            if initial_held {
                if self.cfg.uses_watchdog() && self.watchdog.is_none() {
                    match Watchdog::open(&self.cfg.watchdog_device) {
                        Ok(w) => {
                            tracing::info!(watchdog = %w.path().display(), "watchdog armed");
                            self.watchdog = Some(w);
                        }
                        Err(e) => {
                            tracing::error!(
                                "cannot open the watchdog device {}: {e}; the watchdog fence cannot work, releasing",
                                self.cfg.watchdog_device.display()
                            );
                            self.final_code = exit::ERROR;
                            self.begin_shutdown();
                        }
                    }
                }
                if !self.shutting_down {
                    self.ready_sent = true;
                    self.last_status = now;
                    let status = self.status_line();
                    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
                    tracing::info!("ready: {status}");
                }
            }
        }

        let healthy = self.healthy();
        let pet_every = self
            .slots
            .iter()
            .map(|s| s.cfg.heartbeat.interval)
            .min()
            .unwrap_or(Duration::from_secs(1));
        if healthy && now.saturating_sub(self.last_pet) >= pet_every {
            self.last_pet = now;
            if let Some(w) = &mut self.watchdog {
                if let Err(e) = w.pet() {
                    tracing::error!(watchdog = %w.path().display(), "petting the watchdog failed: {e}");
                }
            }
        }
        if let Some(every) = self.sd_watchdog {
            if healthy && now.saturating_sub(self.last_sd_pet) >= every {
                self.last_sd_pet = now;
                notify(&[NotifyState::Watchdog]);
            }
        }
        if self.ready_sent && now.saturating_sub(self.last_status) >= Duration::from_secs(5) {
            self.last_status = now;
            let status = self.status_line();
            notify(&[NotifyState::Status(&status)]);
        }
        self.write_states();

        // Done?
        let watchdog_fenced = self.watchdog.as_ref().is_some_and(|w| !w.is_petting());
        if self.shutting_down {
            // Wait for the threads that wrote (they release); abandon those that only read.
            let waiting = self.slots.iter().any(|s| {
                s.handle.as_ref().is_some_and(|h| !h.is_finished())
                    && (s.state == SlotState::Holding || s.shared.writing.load(SeqCst))
                    && s.state.active()
            });
            if !waiting {
                return Some(self.finish());
            }
        } else if !self.slots.iter().any(|s| s.state.active())
            && self.children.is_empty()
            && !watchdog_fenced
        {
            return Some(self.finish());
        }
        None
    }

    fn finish(&mut self) -> u8 {
        for s in &mut self.slots {
            if let Some(h) = s.handle.take() {
                if h.is_finished() {
                    let _ = h.join();
                }
            }
            if !matches!(s.state, SlotState::Fenced) {
                let _ = holder::remove_state(&self.cfg.run_dir, &s.lock);
            }
        }
        if let Some(w) = self.watchdog.take() {
            if self.final_code == exit::OK {
                if let Err(e) = w.disarm() {
                    tracing::error!("disarming the watchdog: {e}");
                }
            }
        }
        if self.final_code == exit::OK {
            tracing::info!("all devices released");
        }
        self.final_code
    }

    fn status_line(&self) -> String {
        let parts: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.state != SlotState::Released)
            .map(|s| {
                format!(
                    "{} {} seq {:#010x}",
                    s.cfg.path.display(),
                    s.state.name(),
                    s.shared.seq.load(SeqCst)
                )
            })
            .collect();
        parts.join("; ")
    }
}
