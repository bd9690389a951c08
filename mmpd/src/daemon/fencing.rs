//! Fencing a device, and arming the watchdog's self-fence tags.

use super::{notify, Daemon, SlotState};
use crate::cli::FenceAction;
use crate::error::{DaemonError, ExitStatus};
use crate::fence::{self, ArmedWatchdog};
use sd_notify::NotifyState;

impl Daemon {
    /// Fence device `id`; `Some(code)` when the daemon must exit now.
    pub(super) fn fence(&mut self, id: usize, reason: &str, seq: u32) -> Option<ExitStatus> {
        let node = self.cfg.node_name.clone();
        let s = &mut self.slots[id];
        if s.state == SlotState::Fenced {
            return None;
        }
        s.state = SlotState::Fenced;
        s.reason = reason.to_string();
        // Never write again: the heartbeat is dropped here, or when its job comes back.
        s.hb = None;
        let device = s.cfg.path.clone();
        let action = s.cfg.fence;
        tracing::error!(
            device = %device.display(),
            action = action.name(),
            "FENCING: {reason}. This node no longer holds the device and will not write its MMP block again."
        );
        self.final_status = ExitStatus::Fenced;
        self.write_states();
        notify(&[NotifyState::Status(&format!(
            "FENCED {}: {reason}",
            device.display()
        ))]);
        match action {
            FenceAction::Exit => {
                tracing::error!(device = %device.display(), "fence action exit: mmpd exits with status {}", ExitStatus::Fenced.code());
                return Some(ExitStatus::Fenced);
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
                        return Some(ExitStatus::Fenced);
                    }
                }
            }
            FenceAction::SysrqReboot => {
                tracing::error!(device = %device.display(), trigger = %self.cfg.sysrq_trigger.display(), "fence action sysrq-reboot: rebooting now");
                if let Err(e) = fence::sysrq_reboot(&self.cfg.sysrq_trigger) {
                    tracing::error!("sysrq reboot failed: {e}; exiting instead");
                }
                return Some(ExitStatus::Fenced);
            }
            FenceAction::Watchdog => {
                if self.watchdog.is_none() {
                    match ArmedWatchdog::open(&self.cfg.watchdog_device) {
                        Ok(w) => self.watchdog = Some(w),
                        Err(e) => {
                            tracing::error!("{e}; exiting instead");
                            return Some(ExitStatus::Fenced);
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

    /// The watchdog was just opened (armed): set its timeout, and if it is the configured one
    /// (or shorter), let the devices with the watchdog fence publish their self-fence tag. A
    /// longer timeout than configured would outlast the check interval we published: refuse.
    pub(super) fn arm_fence_tags(&mut self) {
        let want = self.cfg.watchdog_timeout;
        let Some((set, path)) = self
            .watchdog
            .as_mut()
            .map(|w| (w.set_timeout(want), w.path().display().to_string()))
        else {
            return;
        };
        match set {
            Ok(Some(t)) if t <= want => {
                tracing::info!(watchdog = %path, timeout_s = t.as_secs(), "watchdog armed; publishing the self-fence bound (fail_after + timeout + 1 s) in the MMP blocks");
                self.watchdog_timeout = Some(t);
                // Idle heartbeats now; those in the pool get theirs when they are parked.
                for id in 0..self.slots.len() {
                    let tag = self.fence_tag(id);
                    if let Some(hb) = self.slots[id].hb.as_mut() {
                        hb.set_fence_tag(tag);
                    }
                }
            }
            Ok(Some(found)) => {
                let e = DaemonError::WatchdogTimeoutTooLong {
                    found,
                    configured: want,
                };
                tracing::error!(watchdog = %path, "{e}; releasing");
                self.stop_with(&e);
            }
            Ok(None) => {
                tracing::warn!(watchdog = %path, "watchdog armed, but it is the test fake (a plain file) and promises no timeout: no self-fence bound is published, other nodes wait the full time");
            }
            Err(e) => {
                tracing::error!(watchdog = %path, "{e}; releasing");
                self.stop_with(&e.into());
            }
        }
    }
}
