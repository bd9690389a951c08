//! The run's verdict: the report `--json` prints, and how a probe round changes it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::events::{ProbeMode, ProbeResult, ProbeState};
use crate::lock::LockKind;
use crate::stats::ErrnoCounts;

/// One held → lost transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossEvent {
    pub lock: u32,
    pub at_s: f64,
    pub reason: String,
}

/// The failover report (`--json` prints exactly this).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailoverReport {
    pub mode: String,
    /// "holder" (holder and probe here) or "probe-only" (the locks are held elsewhere).
    pub role: String,
    pub path: String,
    pub fs_type: String,
    pub kind: LockKind,
    pub probe: ProbeMode,
    pub locks: u32,
    pub duration_s: f64,
    pub stopped_by: String,
    /// Locks held by the holder at the end, confirmed by the final probe where there is one.
    pub locks_held_at_end: u32,
    /// Held → lost transitions (a lock lost twice counts twice).
    pub locks_lost: u32,
    pub loss_events: Vec<LossEvent>,
    pub holder_restarts: u32,
    pub holder_exits: Vec<String>,
    pub writes_ok: u64,
    pub write_errors: ErrnoCounts,
    pub enolck: u64,
    pub eio: u64,
    /// The longest single write + fsync.
    pub longest_io_call_ms: f64,
    /// The longest time between two rounds in which every write succeeded (includes the
    /// interval itself, and the time a dead holder took to come back).
    pub longest_io_gap_ms: f64,
    /// setlk probe: times another owner was granted a conflicting lock.
    pub conflicting_grants: u64,
    /// getlk probe: times a conflicting lock would have been granted on a held range.
    pub free_observations: u64,
    /// getlk probe (POSIX): times the range was held by a process other than the holder.
    pub foreign_holder_observations: u64,
    pub probe_rounds: u64,
    pub probe_errors: ErrnoCounts,
    pub probe_longest_ms: f64,
    pub verdict: String,
}

impl FailoverReport {
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    pub(super) fn decide(&mut self) {
        let ok = self.locks_lost == 0
            && self.locks_held_at_end == self.locks
            && self.conflicting_grants == 0
            && self.free_observations == 0
            && self.foreign_holder_observations == 0
            && self.write_errors.is_empty();
        self.verdict = if ok { "pass" } else { "fail" }.into();
    }

    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "lock-torture failover ({}): {} {} locks on {} ({}), {:.1} s, stopped by {}",
            self.role,
            self.locks,
            self.kind,
            self.path,
            self.fs_type,
            self.duration_s,
            self.stopped_by
        );
        let _ = writeln!(
            s,
            "  locks held at end      {}/{}",
            self.locks_held_at_end, self.locks
        );
        let _ = writeln!(s, "  locks lost             {}", self.locks_lost);
        for e in &self.loss_events {
            let _ = writeln!(s, "    - lock {} at {:.2} s: {}", e.lock, e.at_s, e.reason);
        }
        let _ = writeln!(s, "  holder restarts        {}", self.holder_restarts);
        for e in &self.holder_exits {
            let _ = writeln!(s, "    - {e}");
        }
        let _ = writeln!(s, "  writes ok              {}", self.writes_ok);
        let _ = writeln!(
            s,
            "  write errors           {} (ENOLCK {}, EIO {})",
            self.write_errors, self.enolck, self.eio
        );
        let _ = writeln!(
            s,
            "  longest write+fsync    {:.1} ms",
            self.longest_io_call_ms
        );
        let _ = writeln!(
            s,
            "  longest I/O gap        {:.1} ms",
            self.longest_io_gap_ms
        );
        let _ = writeln!(
            s,
            "  probe ({:?})           {} rounds, errors {}, slowest {:.1} ms",
            self.probe, self.probe_rounds, self.probe_errors, self.probe_longest_ms
        );
        let _ = writeln!(s, "  conflicting grants     {}", self.conflicting_grants);
        let _ = writeln!(s, "  found free while held  {}", self.free_observations);
        let _ = writeln!(
            s,
            "  held by another pid    {}",
            self.foreign_holder_observations
        );
        let _ = writeln!(
            s,
            "verdict: {}",
            if self.passed() {
                "PASS (every lock held throughout and exclusive, no I/O error)"
            } else {
                "FAIL (see above)"
            }
        );
        s
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LockState {
    Acquiring,
    Held,
    Lost,
}

/// Count a held → lost transition of `lock` (a lock not believed held cannot be lost again).
/// At most 100 events are kept in the report; every one is logged.
pub(super) fn record_loss(
    rep: &mut FailoverReport,
    state: &mut [LockState],
    lock: usize,
    reason: String,
    at_s: f64,
) {
    if state[lock] == LockState::Held {
        state[lock] = LockState::Lost;
        rep.locks_lost += 1;
        warn!("lock {lock} lost: {reason}");
        if rep.loss_events.len() < 100 {
            rep.loss_events.push(LossEvent {
                lock: lock as u32,
                at_s,
                reason,
            });
        }
    }
}

pub(super) type LoseFn<'a> = dyn Fn(&mut FailoverReport, &mut [LockState], usize, String) + 'a;

/// What the supervisor knows about the holder, to judge probe results against.
pub(super) struct Holders<'a> {
    pub kind: LockKind,
    /// The live holder's pid, if any.
    pub current_pid: Option<i64>,
    /// Every holder pid so far (an earlier holder's lock may still be reported in flight).
    pub pids: &'a BTreeSet<i64>,
    /// When each lock was last granted (CLOCK_MONOTONIC ns).
    pub acquired_at: &'a [u64],
}

pub(super) fn judge_probe(
    rep: &mut FailoverReport,
    state: &mut [LockState],
    results: &[ProbeResult],
    h: &Holders<'_>,
    lose: &LoseFn<'_>,
) {
    let (kind, current_pid, holder_pids, acquired_at) =
        (h.kind, h.current_pid, h.pids, h.acquired_at);
    for r in results {
        let i = r.lock as usize;
        if i >= state.len() {
            continue;
        }
        if r.mono_ns < acquired_at.get(i).copied().unwrap_or(0) {
            // Checked before the current holder was granted the lock (e.g. while a restarted
            // holder was on its way): stale.
            continue;
        }
        rep.probe_longest_ms = rep.probe_longest_ms.max(r.ms);
        let held = state[i] == LockState::Held;
        match r.state {
            ProbeState::Held => {
                // F_GETLK names the owner of a POSIX lock. A pid that is not the current
                // holder's (and not an earlier holder's, whose last lock may still be in
                // flight) means somebody else has the range.
                if let (LockKind::Posix, Some(pid)) = (kind, r.pid) {
                    let pid = i64::from(pid);
                    let known = current_pid.is_some() || !holder_pids.is_empty();
                    if held
                        && known
                        && pid > 0
                        && Some(pid) != current_pid
                        && !holder_pids.contains(&pid)
                    {
                        rep.foreign_holder_observations += 1;
                        lose(
                            rep,
                            state,
                            i,
                            format!("probe found the range held by pid {pid}, not by the holder"),
                        );
                    }
                }
            }
            ProbeState::Free if held => {
                rep.free_observations += 1;
                lose(
                    rep,
                    state,
                    i,
                    "probe found the range free: a conflicting lock would have been granted".into(),
                );
            }
            ProbeState::Granted => {
                if held {
                    lose(rep, state, i, "probe was granted a conflicting lock".into());
                }
                rep.conflicting_grants += 1;
            }
            ProbeState::Error => rep
                .probe_errors
                .add(r.errno.as_deref().unwrap_or("unknown"), 1),
            ProbeState::Free => {}
        }
    }
}
