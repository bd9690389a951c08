//! Failover mode: hold a set of locks while the server fails over, keep writing through them,
//! and report what survived.
//!
//! Three processes, so that each can be blocked or killed without blinding the others:
//! - the **supervisor** (the command the user ran) keeps time, handles SIGINT/SIGTERM, writes
//!   the status file and the report;
//! - the **holder** (`__holder`) takes the locks, then every interval writes a timestamp into
//!   each locked range and fsyncs it (the Longhorn writer loop
//!   `flock -x 7; while date | dd conv=fsync >&7; do sleep 1; done`, reference §5.5 item 8);
//! - the **probe** (`__probe`), another lock owner with its own open file descriptions, asks
//!   every interval whether a conflicting lock would be granted (`F_GETLK`/`F_OFD_GETLK`), or
//!   tries to take one (`--probe setlk`, the only way for flock).
//!
//! A lock counts as lost when the probe finds its range free or held by another process, or
//! when the holder dies. If the holder dies it is restarted (unless `--no-restart`) and retakes
//! the locks, so a run always ends with a clear picture: what was lost, when, and what is held.
//!
//! The code follows that picture: [`events`] is what the processes say to each other,
//! [`helpers`] the holder and probe processes, [`plan`] the options and lock targets,
//! [`phases`] the supervisor's run step by step, [`verdict`] the report and how a probe round
//! changes it, [`status`] the status file.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::lock::{LockKind, Range};

mod events;
mod helpers;
mod phases;
mod plan;
mod status;
mod verdict;

pub use events::{
    mono_ns, HelperParams, HolderEvent, IoResult, ProbeEvent, ProbeMode, ProbeResult, ProbeState,
    Target,
};
pub use helpers::{holder_main, probe_main};
pub use phases::run;
pub use plan::prepare_targets;
pub use status::{read_status, Status};
pub use verdict::{FailoverReport, LossEvent};

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct FailoverOptions {
    pub dir: PathBuf,
    pub file: String,
    pub kind: LockKind,
    pub locks: u32,
    pub lock_len: u64,
    /// None: until SIGINT/SIGTERM.
    pub duration: Option<Duration>,
    pub interval: Duration,
    pub probe_interval: Duration,
    pub probe: ProbeMode,
    pub restart: bool,
    pub status_file: Option<PathBuf>,
    /// Run only the probe against locks another process (usually on another client) holds.
    pub probe_only: bool,
}

#[derive(Debug, Error)]
pub enum FailoverError {
    #[error("invalid options: {0}")]
    Options(String),
    #[error("cannot create {path}: {source} (is the directory writable?)")]
    Prepare { path: PathBuf, source: io::Error },
    #[error("cannot start the {what} helper: {source}")]
    Spawn {
        what: &'static str,
        source: io::Error,
    },
    #[error("the holder could not take lock {lock} on {path} {range}: {errno} (another process holds it? free it or use another --file)")]
    Acquire {
        lock: u32,
        path: PathBuf,
        range: Range,
        errno: String,
    },
    #[error("the holder did not report ready within {0:?}")]
    NotReady(Duration),
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(nix::errno::Errno),
}

#[cfg(test)]
mod tests;
