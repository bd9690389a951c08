//! The main loop's periodic work: fence stuck devices, supervise the pool, READY=1, pet the
//! watchdogs, decide when the daemon is done.

use super::{notify, Daemon, SlotState, STUCK_SLACK};
use crate::error::ExitStatus;
use crate::fence::ArmedWatchdog;
use crate::pool;
use libmmp::host::run_dir;
use libmmp::protocol::clock::Clock;
use sd_notify::NotifyState;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

impl Daemon {
    /// Every held device wrote successfully within its limit, and none is fenced.
    pub(super) fn healthy(&self) -> bool {
        let now = self.clock.now();
        self.slots.iter().all(|s| match s.state {
            SlotState::Holding => now.saturating_sub(s.last_success) < s.cfg.heartbeat.fail_after(),
            SlotState::Fenced => false,
            _ => true,
        })
    }

    /// Periodic work, step by step; `Some(status)` ends the daemon.
    pub(super) fn tick(&mut self) -> Option<ExitStatus> {
        let now = self.clock.now();
        if let Some(status) = self.fence_stuck(now) {
            return Some(status);
        }
        self.supervise_pool();
        self.reap_fence_commands();
        if !self.ready_sent && !self.shutting_down && self.initial_devices_held() {
            self.arm_watchdog();
            if !self.shutting_down {
                self.send_ready(now);
            }
        }
        self.pet_watchdogs(now);
        if self.ready_sent && now.saturating_sub(self.last_status) >= Duration::from_secs(5) {
            self.last_status = now;
            let status = self.status_line();
            notify(&[NotifyState::Status(&status)]);
        }
        self.write_states();
        self.done().then(|| self.finish())
    }

    /// Fence the held devices that are stuck; `Some(status)` when a fence ends the daemon.
    ///
    /// A device that has not written for longer than fail_after while its job sat in the
    /// pool for more than STUCK_SLACK is stuck (hung I/O, or no pool thread left to serve
    /// it): its heartbeat cannot fence itself, so fence it here. The slack is small and
    /// fixed, not an interval: readers may call our block stale CI + 1 s after it was
    /// written (CI >= fail_after), so the fence action must run well before that even with
    /// long intervals. An overdue heartbeat that is idle here (the whole daemon was stopped
    /// or starved) goes to the pool in this same pass: its beat finds it too late to write,
    /// reads the block and names whoever took the device, a better reason than ours; if
    /// that beat hangs, this check catches it STUCK_SLACK later.
    fn fence_stuck(&mut self, now: Duration) -> Option<ExitStatus> {
        let stuck: Vec<(usize, Duration)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::Holding && !self.shutting_down)
            .filter_map(|(i, s)| {
                let slack = STUCK_SLACK.min(s.cfg.heartbeat.interval);
                let in_pool_long = s.in_pool.is_some_and(|t| now.saturating_sub(t) > slack);
                let age = now.saturating_sub(s.last_success);
                (in_pool_long && age > s.cfg.heartbeat.fail_after() + slack).then_some((i, age))
            })
            .collect();
        for (i, age) in stuck {
            let s = &self.slots[i];
            let why = match s.in_pool {
                Some(t) => format!(
                    "its I/O has not returned for {:.1} s (hung device?)",
                    now.saturating_sub(t).as_secs_f64()
                ),
                None => "its heartbeat could not run".to_string(),
            };
            let reason = format!(
                "NO SUCCESSFUL MMP WRITE for {:.1} s: {why}",
                age.as_secs_f64()
            );
            let seq = s.seq;
            if let Some(status) = self.fence(i, &reason, seq) {
                return Some(status);
            }
        }
        None
    }

    /// A pool thread hung in one device's I/O must not hold up the others' beats.
    fn supervise_pool(&mut self) {
        let stall = self
            .slots
            .iter()
            .filter(|s| s.state.active())
            .map(|s| s.cfg.heartbeat.interval)
            .min()
            .unwrap_or(Duration::from_secs(1));
        for l in self.pool.supervise(stall) {
            let device = self
                .slots
                .get(l.device)
                .map(|s| s.cfg.path.display().to_string());
            let device = device.unwrap_or_default();
            if l.replaced {
                tracing::warn!(device = %device, busy_s = l.busy_for.as_secs_f64(), left_behind = self.pool.left_behind(), handed_over = l.handed_over, "I/O has not returned: leaving its I/O thread behind and starting another (the other beats of its group go to another thread)");
            } else {
                tracing::error!(device = %device, busy_s = l.busy_for.as_secs_f64(), "I/O has not returned, and {} I/O threads are already left behind: not starting another", pool::MAX_LEFT_BEHIND);
            }
        }
    }

    /// Forget the fence commands that finished (logging how).
    fn reap_fence_commands(&mut self) {
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
    }

    /// Every device of the startup set is held (READY=1 may go out).
    fn initial_devices_held(&self) -> bool {
        self.slots
            .iter()
            .filter(|s| s.initial)
            .all(|s| s.state == SlotState::Holding)
    }

    /// With the watchdog fence, open (arm) the watchdog once the startup set is held; if it
    /// cannot be, release everything.
    fn arm_watchdog(&mut self) {
        if !self.cfg.uses_watchdog() || self.watchdog.is_some() {
            return;
        }
        match ArmedWatchdog::open(&self.cfg.watchdog_device) {
            Ok(w) => {
                self.watchdog = Some(w);
                self.arm_fence_tags();
            }
            Err(e) => {
                tracing::error!("{e}; the watchdog fence cannot work, releasing");
                self.stop_with(&e.into());
            }
        }
    }

    fn send_ready(&mut self, now: Duration) {
        self.ready_sent = true;
        self.last_status = now;
        let status = self.status_line();
        notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
        tracing::info!("ready: {status}");
    }

    /// Pet the watchdog device (every shortest interval) and systemd's watchdog (every
    /// WatchdogSec/2), only while every device is healthy.
    fn pet_watchdogs(&mut self, now: Duration) {
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
    }

    /// Whether the daemon is done: shutting down and nothing left to wait for, or nothing held
    /// any more, no fence command running, and no watchdog fence waiting for its reset.
    fn done(&self) -> bool {
        if self.shutting_down {
            // Wait for the held devices' releases and for the claims that wrote (they release
            // or restore CLEAN); abandon the claims that only read.
            return !self.slots.iter().any(|s| match s.state {
                SlotState::Holding => true,
                SlotState::Claiming => s
                    .claim
                    .as_ref()
                    .is_some_and(|(control, _)| control.writing.load(SeqCst)),
                _ => false,
            });
        }
        let watchdog_fenced = self.watchdog.as_ref().is_some_and(|w| !w.is_petting());
        !self.slots.iter().any(|s| s.state.active()) && self.children.is_empty() && !watchdog_fenced
    }

    pub(super) fn finish(&mut self) -> ExitStatus {
        for s in &mut self.slots {
            if let Some((control, h)) = s.claim.take() {
                if control.finished.load(SeqCst) {
                    let _ = h.join();
                }
            }
            if !matches!(s.state, SlotState::Fenced) {
                let _ = run_dir::remove_state(&self.cfg.run_dir, &s.lock);
            }
        }
        if let Some(w) = self.watchdog.take() {
            if self.final_status == ExitStatus::Success {
                if let Err(e) = w.disarm() {
                    tracing::error!("disarming the watchdog: {e}");
                }
            }
        }
        if self.final_status == ExitStatus::Success {
            tracing::info!("all devices released");
        }
        self.final_status
    }

    pub(super) fn status_line(&self) -> String {
        let parts: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.state != SlotState::Released)
            .map(|s| {
                format!(
                    "{} {} seq {:#010x}",
                    s.cfg.path.display(),
                    s.state.name(),
                    s.seq
                )
            })
            .collect();
        parts.join("; ")
    }
}
