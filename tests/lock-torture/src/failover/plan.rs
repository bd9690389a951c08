//! Checking and preparing what the user asked for: the options, and the lock targets (files
//! created and long enough for every range).

use std::fs::OpenOptions;
use std::time::Duration;

use super::events::{ProbeMode, Target};
use super::{FailoverError, FailoverOptions};
use crate::lock::{LockKind, Range};

/// Build the lock targets: N ranges of one file (POSIX/OFD) or N files (flock), creating files.
pub fn prepare_targets(opts: &FailoverOptions) -> Result<Vec<Target>, FailoverError> {
    let mut targets = Vec::new();
    for i in 0..u64::from(opts.locks) {
        let (path, range) = if opts.kind == LockKind::Flock {
            (opts.dir.join(format!("{}.{i}", opts.file)), Range::WHOLE)
        } else {
            (
                opts.dir.join(&opts.file),
                Range::new((i * opts.lock_len) as i64, opts.lock_len as i64),
            )
        };
        targets.push(Target { path, range });
    }
    for t in &targets {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&t.path)
            .map_err(|source| FailoverError::Prepare {
                path: t.path.clone(),
                source,
            })?;
        let want = if t.range.len > 0 {
            (t.range.start + t.range.len) as u64
        } else {
            4096
        };
        let have = f.metadata().map(|m| m.len()).unwrap_or(0);
        if have < want {
            f.set_len(want).map_err(|source| FailoverError::Prepare {
                path: t.path.clone(),
                source,
            })?;
        }
    }
    Ok(targets)
}

pub(super) fn validate(opts: &FailoverOptions) -> Result<(), FailoverError> {
    crate::protocol::check_name(&opts.file)
        .map_err(|e| FailoverError::Options(format!("--file: {e}")))?;
    if !(1..=4096).contains(&opts.locks) {
        return Err(FailoverError::Options("--locks must be 1..=4096".into()));
    }
    if !(1..=1 << 30).contains(&opts.lock_len) {
        return Err(FailoverError::Options(
            "--lock-len must be 1..=1073741824".into(),
        ));
    }
    if opts.probe_only && opts.probe == ProbeMode::None {
        return Err(FailoverError::Options(
            "--probe-only needs --probe getlk or setlk".into(),
        ));
    }
    if opts.interval < Duration::from_millis(10) || opts.probe_interval < Duration::from_millis(10)
    {
        return Err(FailoverError::Options(
            "--interval and --probe-interval must be at least 10ms".into(),
        ));
    }
    Ok(())
}
