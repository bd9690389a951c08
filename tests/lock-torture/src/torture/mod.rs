//! Torture mode: processes (and, for OFD and flock, threads) contend for overlapping byte ranges
//! of one file, and every lock holder proves with data that it was alone.
//!
//! Each operation picks a random run of records, locks it (first without waiting, to count
//! conflicts, then waiting), and then:
//! - write lock: reads the records, checks their checksums, increments every record's count,
//!   stamps its writer id and operation number, writes them, optionally holds, re-reads them
//!   and checks nothing changed;
//! - read lock: reads the records, checks them, optionally holds, re-reads them and checks they
//!   are byte-for-byte the same.
//!
//! At the end the sum of all record counts must equal the increments the writers performed; a
//! lock that let two writers in at once loses updates (see [`crate::record`]).
//!
//! [`params`] is what to run, [`run`] starts the worker processes of one host, [`worker`] is
//! what each of their threads does, [`file`] prepares and finally checks the shared file, and
//! [`report`] sums it all up.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use thiserror::Error;

mod file;
mod params;
mod report;
mod run;
mod worker;

pub use file::{prepare_file, verify_file, FileCheck};
pub use params::{ParamsError, TortureParams};
pub use report::{HostRun, TortureReport};
pub use run::{run_local, LocalRun};
pub use worker::{worker_main, WorkerStats};

/// Violation descriptions kept per worker (the count is always exact).
const MAX_SAMPLES: usize = 8;
/// How long after the planned end a worker may take before it is killed (a hung NFS server).
const WORKER_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum TortureError {
    #[error("invalid parameters: {0}")]
    Params(#[from] ParamsError),
    #[error("invalid parameters: {0}")]
    Encode(serde_json::Error),
    #[error("cannot prepare {path}: {source} (is the directory writable?)")]
    Prepare { path: PathBuf, source: io::Error },
    #[error("cannot start worker process {index}: {source}")]
    Spawn { index: u32, source: io::Error },
    #[error("worker process {index} failed: unreadable result ({source}); stderr: {stderr}")]
    WorkerResult {
        index: u32,
        source: serde_json::Error,
        stderr: String,
    },
    #[error("worker process {index} failed: {status}; stderr: {stderr}")]
    WorkerExited {
        index: u32,
        status: ExitStatus,
        stderr: String,
    },
    #[error(
        "worker process {index} failed: did not finish (blocked in a lock or I/O call?) and was killed"
    )]
    WorkerKilled { index: u32 },
    #[error("worker process {index} failed: a thread panicked")]
    ThreadPanicked { index: u32 },
    #[error("cannot open {path} in a worker: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read {path} for the final check: {source}")]
    Verify { path: PathBuf, source: io::Error },
}

#[cfg(test)]
mod tests;
