//! What the supervisor and its helpers say to each other: the lock targets and helper
//! parameters (JSON on a helper's command line) and the events a helper prints, one JSON
//! object per line, on its stdout.

use std::io::{self, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::lock::{LockKind, Range};

/// One lock the holder keeps: a byte range of a file (the whole file for flock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub path: PathBuf,
    pub range: Range,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProbeMode {
    /// Ask with F_GETLK / F_OFD_GETLK whether a conflicting write lock would be granted.
    Getlk,
    /// Try to take a conflicting write lock without waiting (and release it at once if granted).
    Setlk,
    /// No probe: only the holder's own view (I/O errors, death).
    None,
}

/// Parameters handed to the holder and probe helpers (as JSON on their command line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelperParams {
    pub kind: LockKind,
    pub targets: Vec<Target>,
    pub interval_ms: u64,
    pub probe: ProbeMode,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IoResult {
    pub lock: u32,
    /// None: the write and fsync succeeded.
    pub errno: Option<String>,
    /// How long write + fsync took.
    pub ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum HolderEvent {
    Acquired {
        lock: u32,
        /// CLOCK_MONOTONIC (system-wide) when the lock was granted.
        #[serde(default)]
        mono_ns: u64,
    },
    AcquireFailed {
        lock: u32,
        errno: String,
    },
    Ready {
        pid: i32,
    },
    Tick {
        seq: u64,
        results: Vec<IoResult>,
    },
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    /// A conflicting lock would not be granted (someone holds the range).
    Held,
    /// F_GETLK: a conflicting lock *would* be granted.
    Free,
    /// setlk: a conflicting lock *was* granted (and released at once).
    Granted,
    Error,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub lock: u32,
    pub state: ProbeState,
    /// l_pid of the holder as F_GETLK reports it (POSIX: a pid; OFD: -1).
    pub pid: Option<i32>,
    pub errno: Option<String>,
    pub ms: f64,
    /// CLOCK_MONOTONIC (system-wide) when this check started.
    #[serde(default)]
    pub mono_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum ProbeEvent {
    Round {
        round: u64,
        #[serde(rename = "final")]
        final_round: bool,
        results: Vec<ProbeResult>,
    },
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the host, so the supervisor
/// can order a probe's check against a holder's grant whatever order their messages arrive in.
pub fn mono_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            (t.tv_sec() as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(t.tv_nsec() as u64)
        })
        .unwrap_or(0)
}

pub(super) fn write_event<T: Serialize>(out: &mut impl Write, ev: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(ev).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}
