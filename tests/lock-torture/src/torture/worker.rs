//! The worker side of a torture run: the hidden `__torture-worker` process, its threads, and
//! the loop in which each thread locks, checks and writes records.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::{TortureError, TortureParams, MAX_SAMPLES};
use crate::lock::{self, errno_name, LockType, Range};
use crate::record::{self, Record, RECORD_SIZE};
use crate::stats::{ErrnoCounts, Histogram};

/// Counters of one or more workers, mergeable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Completed lock → check → unlock cycles.
    pub ops: u64,
    pub write_ops: u64,
    pub read_ops: u64,
    /// Non-blocking attempts that found the range taken (EAGAIN/EACCES).
    pub conflicts: u64,
    /// Record increments performed under write locks.
    pub increments: u64,
    pub lock_latency: Histogram,
    pub unlock_latency: Histogram,
    /// Failed lock, unlock or I/O calls by errno (conflicts excluded).
    pub errors: ErrnoCounts,
    /// Times a holder saw evidence that it was not alone.
    pub violations: u64,
    pub violation_samples: Vec<String>,
}

impl WorkerStats {
    pub fn merge(&mut self, o: &WorkerStats) {
        self.ops += o.ops;
        self.write_ops += o.write_ops;
        self.read_ops += o.read_ops;
        self.conflicts += o.conflicts;
        self.increments += o.increments;
        self.lock_latency.merge(&o.lock_latency);
        self.unlock_latency.merge(&o.unlock_latency);
        self.errors.merge(&o.errors);
        self.violations += o.violations;
        for s in &o.violation_samples {
            if self.violation_samples.len() < MAX_SAMPLES {
                self.violation_samples.push(s.clone());
            }
        }
    }

    pub(super) fn violation(&mut self, msg: String) {
        self.violations += 1;
        if self.violation_samples.len() < MAX_SAMPLES {
            self.violation_samples.push(msg);
        }
    }

    fn error(&mut self, op: &str, e: &io::Error) {
        let name = e.raw_os_error().map_or_else(
            || format!("{:?}", e.kind()),
            |n| errno_name(Errno::from_raw(n)),
        );
        debug!("{op} failed: {e}");
        self.errors.add(&name, 1);
    }
}

/// splitmix64: small, fast, good enough to pick ranges.
pub(super) struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n.max(1))) as u32
    }
}

/// Body of the hidden `__torture-worker` subcommand: run the threads, return merged stats.
pub fn worker_main(
    dir: &Path,
    params: &TortureParams,
    index: u32,
) -> Result<WorkerStats, TortureError> {
    params.validate()?;
    let path = dir.join(&params.file);
    let deadline = Instant::now() + Duration::from_millis(params.duration_ms);
    let seed = if params.seed == 0 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    } else {
        params.seed
    };
    let mut handles = Vec::new();
    for t in 0..params.threads {
        // Each thread opens the file itself: its own open file description (OFD, flock owner).
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| TortureError::Open {
                path: path.clone(),
                source,
            })?;
        let writer = params.id_base + index * params.threads + t + 1;
        let p = params.clone();
        let rng = Rng(seed ^ (u64::from(writer) << 32) ^ u64::from(std::process::id()));
        handles.push(thread::spawn(move || {
            contend(&file, &p, writer, rng, deadline)
        }));
    }
    let mut stats = WorkerStats::default();
    for h in handles {
        match h.join() {
            Ok(s) => stats.merge(&s),
            Err(_) => return Err(TortureError::ThreadPanicked { index }),
        }
    }
    Ok(stats)
}

fn describe(buf: &[u8], idx: usize) -> String {
    match Record::decode(&buf[idx * RECORD_SIZE..(idx + 1) * RECORD_SIZE]) {
        Ok(r) => format!("writer {} op {} count {}", r.writer, r.seq, r.count),
        Err(e) => e.to_string(),
    }
}

/// One operation of a thread's loop: a run of records under one lock.
struct Op {
    writer: u32,
    /// The first record and how many.
    first: u32,
    n: u32,
    offset: u64,
    /// How long to hold the lock before the re-read, in microseconds.
    hold_us: u64,
}

/// One thread's loop.
pub(super) fn contend(
    file: &File,
    p: &TortureParams,
    writer: u32,
    mut rng: Rng,
    deadline: Instant,
) -> WorkerStats {
    let mut st = WorkerStats::default();
    let mut seq: u64 = 0;
    let mut buf = vec![0u8; p.max_records as usize * RECORD_SIZE];
    let mut again = vec![0u8; buf.len()];
    while Instant::now() < deadline {
        let first = rng.below(p.records);
        let n = (1 + rng.below(p.max_records)).min(p.records - first);
        let write = rng.below(100) >= p.read_percent;
        let ty = if write {
            LockType::Write
        } else {
            LockType::Read
        };
        let offset = u64::from(first) * RECORD_SIZE as u64;
        let bytes = n as usize * RECORD_SIZE;
        let range = Range::new(offset as i64, bytes as i64);

        let t0 = Instant::now();
        if !take_lock(file, p, ty, range, &mut st) {
            // ENOLCK and friends: do not spin on a server that refuses every lock.
            thread::sleep(Duration::from_millis(1));
            continue;
        }
        st.lock_latency.record(t0.elapsed());

        let op = Op {
            writer,
            first,
            n,
            offset,
            hold_us: p.hold_us,
        };
        let cur = &mut buf[..bytes];
        let chk = &mut again[..bytes];
        match file.read_exact_at(cur, op.offset) {
            Err(e) => st.error("read", &e),
            Ok(()) => {
                let decoded = record::decode_all(cur);
                if let Err((i, e)) = &decoded {
                    st.violation(format!(
                        "record {} was corrupt when read under a {} lock by writer {writer}: {e}",
                        first as usize + i,
                        if write { "write" } else { "read" }
                    ));
                }
                if write {
                    seq += 1;
                    write_records(
                        file,
                        &op,
                        seq,
                        decoded.unwrap_or_default(),
                        cur,
                        chk,
                        &mut st,
                    );
                } else {
                    recheck_read(file, &op, cur, chk, &mut st);
                }
            }
        }

        let t1 = Instant::now();
        if let Err(e) = lock::unlock(file, p.kind, range) {
            st.errors.add(&errno_name(e), 1);
        }
        st.unlock_latency.record(t1.elapsed());
        st.ops += 1;
    }
    st
}

/// Lock `range` without waiting (counting a conflict), then waiting. False when the lock was
/// refused for another reason than a conflict (the errno is counted).
fn take_lock(
    file: &File,
    p: &TortureParams,
    ty: LockType,
    range: Range,
    st: &mut WorkerStats,
) -> bool {
    match lock::lock(file, p.kind, ty, range, false) {
        Ok(()) => true,
        Err(e) if lock::is_conflict(e) => {
            st.conflicts += 1;
            match lock::lock(file, p.kind, ty, range, true) {
                Ok(()) => true,
                Err(e) => {
                    st.errors.add(&errno_name(e), 1);
                    false
                }
            }
        }
        Err(e) => {
            st.errors.add(&errno_name(e), 1);
            false
        }
    }
}

/// Under a write lock: increment every record's count, stamp it with this writer and `seq`,
/// write the records, hold, re-read them and check nothing changed.
fn write_records(
    file: &File,
    op: &Op,
    seq: u64,
    old: Vec<Record>,
    cur: &mut [u8],
    chk: &mut [u8],
    st: &mut WorkerStats,
) {
    let (writer, first, n) = (op.writer, op.first, op.n);
    for i in 0..n as usize {
        let count = old.get(i).map_or(0, |r| r.count) + 1;
        let rec = Record { writer, seq, count };
        cur[i * RECORD_SIZE..(i + 1) * RECORD_SIZE].copy_from_slice(&rec.encode());
    }
    match file.write_all_at(cur, op.offset) {
        Err(e) => st.error("write", &e),
        Ok(()) => {
            st.increments += u64::from(n);
            hold(op.hold_us);
            match file.read_exact_at(chk, op.offset) {
                Err(e) => st.error("re-read", &e),
                Ok(()) => {
                    if let Some(i) = first_difference(cur, chk, n) {
                        st.violation(format!(
                            "record {} changed while writer {writer} held a write lock on records {}..{}: wrote op {seq}, read back {}",
                            first as usize + i,
                            first,
                            first + n,
                            describe(chk, i)
                        ));
                    }
                }
            }
        }
    }
    st.write_ops += 1;
}

/// Under a read lock: hold, re-read the records and check they are byte-for-byte the same.
fn recheck_read(file: &File, op: &Op, cur: &[u8], chk: &mut [u8], st: &mut WorkerStats) {
    let (writer, first, n) = (op.writer, op.first, op.n);
    hold(op.hold_us);
    match file.read_exact_at(chk, op.offset) {
        Err(e) => st.error("re-read", &e),
        Ok(()) => {
            if let Some(i) = first_difference(cur, chk, n) {
                st.violation(format!(
                    "record {} changed while writer {writer} held a read lock on records {}..{}: was {}, became {}",
                    first as usize + i,
                    first,
                    first + n,
                    describe(cur, i),
                    describe(chk, i)
                ));
            }
        }
    }
    st.read_ops += 1;
}

/// The first of `n` records that differs between two buffers.
fn first_difference(a: &[u8], b: &[u8], n: u32) -> Option<usize> {
    (0..n as usize).find(|&i| {
        a[i * RECORD_SIZE..(i + 1) * RECORD_SIZE] != b[i * RECORD_SIZE..(i + 1) * RECORD_SIZE]
    })
}

fn hold(us: u64) {
    if us > 0 {
        thread::sleep(Duration::from_micros(us));
    }
}
