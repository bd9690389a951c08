//! The shared file: created zeroed before a run, read back whole after it to check that the
//! record counts add up to the increments the writers performed.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{TortureError, TortureParams, MAX_SAMPLES};
use crate::lock::{self, LockKind, LockType, Range};
use crate::record::{Record, RECORD_SIZE};

/// Create (or reset) the shared file: `records` zero records, synced.
pub fn prepare_file(dir: &Path, params: &TortureParams) -> Result<PathBuf, TortureError> {
    let path = dir.join(&params.file);
    let err = |source| TortureError::Prepare {
        path: path.clone(),
        source,
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(err)?;
    f.write_all_at(&vec![0u8; params.file_len() as usize], 0)
        .map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(path)
}

/// Result of the final whole-file check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheck {
    pub records: u64,
    /// Sum of every record's count.
    pub sum_counts: u64,
    /// Increments the writers reported.
    pub expected: u64,
    /// Records that failed to decode (index and reason), at most a few.
    pub corrupt: Vec<String>,
    pub corrupt_count: u64,
}

impl FileCheck {
    pub fn ok(&self) -> bool {
        self.sum_counts == self.expected && self.corrupt_count == 0
    }
}

/// Read the whole file (under a read lock of `kind`, so an NFS client revalidates its cache) and
/// compare the record counts with the increments performed.
pub fn verify_file(path: &Path, kind: LockKind, expected: u64) -> Result<FileCheck, TortureError> {
    let err = |source| TortureError::Verify {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(err)?;
    // Best effort: the workers are gone, the lock only serves cache coherence on NFS.
    let locked = lock::lock(&f, kind, LockType::Read, Range::WHOLE, true).is_ok();
    let mut buf = Vec::new();
    (&f).read_to_end(&mut buf).map_err(err)?;
    if locked {
        let _ = lock::unlock(&f, kind, Range::WHOLE);
    }
    let mut check = FileCheck {
        records: (buf.len() / RECORD_SIZE) as u64,
        sum_counts: 0,
        expected,
        corrupt: Vec::new(),
        corrupt_count: 0,
    };
    for (i, chunk) in buf.chunks(RECORD_SIZE).enumerate() {
        match Record::decode(chunk) {
            Ok(r) => check.sum_counts = check.sum_counts.saturating_add(r.count),
            Err(e) => {
                check.corrupt_count += 1;
                if check.corrupt.len() < MAX_SAMPLES {
                    check.corrupt.push(format!("record {i}: {e}"));
                }
            }
        }
    }
    Ok(check)
}
