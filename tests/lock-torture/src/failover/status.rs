//! The status file: rewritten about once per interval while running, so the failover lab's
//! scripts can see whether the locks are held without waiting for the report.

use std::io;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::verdict::LockState;

/// The status file, rewritten about once per interval while running (for the failover lab).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub elapsed_s: f64,
    pub holder_pid: Option<u32>,
    pub holder_generation: u32,
    pub probe_pid: Option<u32>,
    /// Per lock: "acquiring", "held" or "lost".
    pub locks: Vec<String>,
    pub locks_lost: u32,
    pub ready: bool,
}

/// What the supervisor knows when it writes the status file.
pub(super) struct Snapshot<'a> {
    pub start: Instant,
    /// The live holder's pid; `None` also means "not ready".
    pub holder_pid: Option<u32>,
    pub generation: u32,
    pub probe_pid: Option<u32>,
    pub state: &'a [LockState],
    pub lost: u32,
}

/// Write the status file atomically (a temporary file renamed over it); a failure is logged,
/// never fatal: the run matters more than its progress file.
pub(super) fn write_status(path: &Path, s: &Snapshot<'_>) {
    let st = Status {
        pid: std::process::id(),
        elapsed_s: s.start.elapsed().as_secs_f64(),
        holder_pid: s.holder_pid,
        holder_generation: s.generation,
        probe_pid: s.probe_pid,
        locks: s
            .state
            .iter()
            .map(|s| match s {
                LockState::Acquiring => "acquiring",
                LockState::Held => "held",
                LockState::Lost => "lost",
            })
            .map(String::from)
            .collect(),
        locks_lost: s.lost,
        ready: s.holder_pid.is_some(),
    };
    let tmp = path.with_extension("tmp");
    let r = serde_json::to_vec_pretty(&st)
        .map_err(io::Error::other)
        .and_then(|v| std::fs::write(&tmp, v))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = r {
        warn!("cannot write the status file {}: {e}", path.display());
    }
}

/// Read a status file (for tests and for the lab's scripts).
pub fn read_status(path: &Path) -> Option<Status> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}
