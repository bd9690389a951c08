//! What a torture run does, and the checks every host applies before running it.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::lock::LockKind;
use crate::protocol::ProtocolError;
use crate::record::RECORD_SIZE;

/// Why torture parameters were refused; the message names the option to fix.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParamsError {
    /// `--file` is not a single path component.
    #[error(transparent)]
    File(ProtocolError),
    #[error("{0}")]
    OutOfRange(&'static str),
}

/// What to run; sent as-is to remote workers, so every field is validated on arrival.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TortureParams {
    pub kind: LockKind,
    /// Processes (per host).
    pub procs: u32,
    /// Threads per process, each with its own open file description (OFD and flock only).
    pub threads: u32,
    pub duration_ms: u64,
    /// File name inside the directory.
    pub file: String,
    /// File size in 32-byte records.
    pub records: u32,
    /// Longest range one operation locks, in records.
    pub max_records: u32,
    /// Share of operations that take read locks, 0..=100.
    pub read_percent: u32,
    /// Time to hold each lock between the write and the re-read, in microseconds.
    pub hold_us: u64,
    /// Writer ids start above this; hosts get disjoint bases in multi-host mode.
    pub id_base: u32,
    /// Random seed; 0 picks one from the clock.
    pub seed: u64,
}

impl TortureParams {
    pub fn validate(&self) -> Result<(), ParamsError> {
        crate::protocol::check_name(&self.file).map_err(ParamsError::File)?;
        let check = |ok: bool, msg: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(ParamsError::OutOfRange(msg))
            }
        };
        check((1..=1024).contains(&self.procs), "--procs must be 1..=1024")?;
        check(
            (1..=256).contains(&self.threads),
            "--threads must be 1..=256",
        )?;
        check(
            self.threads == 1 || self.kind != LockKind::Posix,
            "--threads > 1 needs --kind ofd or flock: threads of one process share their POSIX locks, so they would not exclude each other",
        )?;
        check(
            self.duration_ms <= 86_400_000,
            "--duration must be at most 24h",
        )?;
        check(
            (1..=1 << 20).contains(&self.records),
            "--records must be 1..=1048576",
        )?;
        check(
            (1..=self.records).contains(&self.max_records),
            "--max-records must be 1..=--records",
        )?;
        check(self.read_percent <= 100, "--read-percent must be 0..=100")?;
        check(
            self.hold_us <= 1_000_000,
            "--hold-us must be at most 1000000",
        )?;
        check(
            u64::from(self.id_base) + u64::from(self.procs) * u64::from(self.threads)
                < u64::from(u32::MAX),
            "writer ids overflow",
        )?;
        Ok(())
    }

    pub fn file_len(&self) -> u64 {
        u64::from(self.records) * RECORD_SIZE as u64
    }
}
