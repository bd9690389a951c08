//! The state files in the run directory (read by `mmp-tool status`).

use super::{Daemon, SlotState};
use libmmp::host::run_dir::{self, HolderState};
use libmmp::protocol::clock::wall_now;

impl Daemon {
    pub(super) fn write_states(&mut self) {
        let run_dir = self.cfg.run_dir.clone();
        for s in &mut self.slots {
            // Only on a change of state: `seq` and `updated` are those of the change (the live
            // sequence is in the MMP block).
            if s.state_written == Some(s.state) {
                continue;
            }
            let seq = s.seq;
            let st = HolderState {
                pid: std::process::id(),
                device: s.cfg.path.display().to_string(),
                state: s.state.name().parse().ok(),
                node_name: self.cfg.node_name.clone(),
                seq,
                since: s.since,
                updated: wall_now(),
                interval_ms: s.cfg.heartbeat.interval.as_millis() as u64,
                fail_intervals: s.cfg.heartbeat.fail_intervals,
                check_interval: s.cfg.check_interval,
                fence: s.cfg.fence.name().to_string(),
                reason: s.reason.clone(),
            };
            let r = if matches!(s.state, SlotState::Released | SlotState::Failed) {
                run_dir::remove_state(&run_dir, &s.lock)
            } else {
                run_dir::write_state(&run_dir, &s.lock, &st)
            };
            match r {
                Ok(()) => s.state_written = Some(s.state),
                Err(e) => tracing::warn!(run_dir = %run_dir.display(), "state file: {e}"),
            }
        }
    }
}
