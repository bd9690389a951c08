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

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, warn};

use crate::lock::{self, errno_name, LockKind, LockType, Range};
use crate::record::{self, Record, RECORD_SIZE};
use crate::stats::{ErrnoCounts, Histogram, LatencySummary};

/// Violation descriptions kept per worker (the count is always exact).
const MAX_SAMPLES: usize = 8;
/// How long after the planned end a worker may take before it is killed (a hung NFS server).
const WORKER_GRACE: Duration = Duration::from_secs(30);

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
    pub fn validate(&self) -> Result<(), String> {
        crate::protocol::check_name(&self.file).map_err(|e| e.to_string())?;
        let check = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(msg.to_string()) };
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

    fn violation(&mut self, msg: String) {
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

#[derive(Debug, Error)]
pub enum TortureError {
    #[error("invalid parameters: {0}")]
    Params(String),
    #[error("cannot prepare {path}: {source} (is the directory writable?)")]
    Prepare { path: PathBuf, source: io::Error },
    #[error("cannot start worker process {index}: {source}")]
    Spawn { index: u32, source: io::Error },
    #[error("worker process {index} failed: {detail}")]
    Worker { index: u32, detail: String },
    #[error("cannot open {path} in a worker: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read {path} for the final check: {source}")]
    Verify { path: PathBuf, source: io::Error },
}

/// splitmix64: small, fast, good enough to pick ranges.
struct Rng(u64);

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

/// One host's share of a torture run.
pub struct LocalRun {
    pub stats: WorkerStats,
    pub procs: u32,
    pub elapsed: Duration,
}

/// Run `params.procs` worker processes of this binary against `dir/params.file` (which must
/// already be prepared) and merge their statistics.
pub fn run_local(dir: &Path, params: &TortureParams) -> Result<LocalRun, TortureError> {
    params.validate().map_err(TortureError::Params)?;
    let exe = std::env::current_exe().map_err(|source| TortureError::Spawn { index: 0, source })?;
    let json = serde_json::to_string(params).map_err(|e| TortureError::Params(e.to_string()))?;
    let start = Instant::now();
    let mut children = Vec::new();
    for index in 0..params.procs {
        let spawned = Command::new(&exe)
            .arg("__torture-worker")
            .arg("--dir")
            .arg(dir)
            .arg("--index")
            .arg(index.to_string())
            .arg("--params")
            .arg(&json)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(source) => {
                for (_, mut c, _, _) in children {
                    let _ = std::process::Child::kill(&mut c);
                    let _ = c.wait();
                }
                return Err(TortureError::Spawn { index, source });
            }
        };
        // Drain both pipes in threads so a chatty worker never blocks on a full pipe.
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let out_reader = thread::spawn(move || {
            let mut s = String::new();
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_string(&mut s);
            }
            s
        });
        let err_reader = thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        children.push((index, child, out_reader, err_reader));
    }
    let deadline = start + Duration::from_millis(params.duration_ms) + WORKER_GRACE;
    let mut merged = WorkerStats::default();
    let mut first_error = None;
    for (index, mut child, out_reader, err_reader) in children {
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => {
                    warn!(
                        "worker {index} still running {WORKER_GRACE:?} after the end: killing it"
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let out = out_reader.join().unwrap_or_default();
        let err = err_reader.join().unwrap_or_default();
        let result = match status {
            Some(st) if st.success() => {
                serde_json::from_str::<WorkerStats>(out.trim()).map_err(|e| TortureError::Worker {
                    index,
                    detail: format!("unreadable result ({e}); stderr: {}", err.trim()),
                })
            }
            Some(st) => Err(TortureError::Worker {
                index,
                detail: format!("{st}; stderr: {}", err.trim()),
            }),
            None => Err(TortureError::Worker {
                index,
                detail: "did not finish (blocked in a lock or I/O call?) and was killed".into(),
            }),
        };
        match result {
            Ok(stats) => merged.merge(&stats),
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(LocalRun {
        stats: merged,
        procs: params.procs,
        elapsed: start.elapsed(),
    })
}

/// Body of the hidden `__torture-worker` subcommand: run the threads, return merged stats.
pub fn worker_main(
    dir: &Path,
    params: &TortureParams,
    index: u32,
) -> Result<WorkerStats, TortureError> {
    params.validate().map_err(TortureError::Params)?;
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
            Err(_) => {
                return Err(TortureError::Worker {
                    index,
                    detail: "a thread panicked".into(),
                })
            }
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

/// One thread's loop.
fn contend(
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
        match lock::lock(file, p.kind, ty, range, false) {
            Ok(()) => {}
            Err(e) if lock::is_conflict(e) => {
                st.conflicts += 1;
                if let Err(e) = lock::lock(file, p.kind, ty, range, true) {
                    st.errors.add(&errno_name(e), 1);
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
            }
            Err(e) => {
                st.errors.add(&errno_name(e), 1);
                // ENOLCK and friends: do not spin on a server that refuses every lock.
                thread::sleep(Duration::from_millis(1));
                continue;
            }
        }
        st.lock_latency.record(t0.elapsed());

        let cur = &mut buf[..bytes];
        let chk = &mut again[..bytes];
        match file.read_exact_at(cur, offset) {
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
                    let old = decoded.unwrap_or_default();
                    for i in 0..n as usize {
                        let count = old.get(i).map_or(0, |r| r.count) + 1;
                        let rec = Record { writer, seq, count };
                        cur[i * RECORD_SIZE..(i + 1) * RECORD_SIZE].copy_from_slice(&rec.encode());
                    }
                    match file.write_all_at(cur, offset) {
                        Err(e) => st.error("write", &e),
                        Ok(()) => {
                            st.increments += u64::from(n);
                            hold(p.hold_us);
                            match file.read_exact_at(chk, offset) {
                                Err(e) => st.error("re-read", &e),
                                Ok(()) => {
                                    if let Some(i) = (0..n as usize).find(|&i| {
                                        cur[i * RECORD_SIZE..(i + 1) * RECORD_SIZE]
                                            != chk[i * RECORD_SIZE..(i + 1) * RECORD_SIZE]
                                    }) {
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
                } else {
                    hold(p.hold_us);
                    match file.read_exact_at(chk, offset) {
                        Err(e) => st.error("re-read", &e),
                        Ok(()) => {
                            if let Some(i) = (0..n as usize).find(|&i| {
                                cur[i * RECORD_SIZE..(i + 1) * RECORD_SIZE]
                                    != chk[i * RECORD_SIZE..(i + 1) * RECORD_SIZE]
                            }) {
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

fn hold(us: u64) {
    if us > 0 {
        thread::sleep(Duration::from_micros(us));
    }
}

/// One host's line in a multi-host report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRun {
    pub host: String,
    pub procs: u32,
    pub ops: u64,
    pub violations: u64,
    pub errors: ErrnoCounts,
    pub elapsed_ms: u64,
}

/// The torture report (`--json` prints exactly this).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TortureReport {
    pub mode: String,
    pub path: String,
    pub fs_type: String,
    pub params: TortureParams,
    pub hosts: Vec<HostRun>,
    pub elapsed_s: f64,
    pub ops: u64,
    pub write_ops: u64,
    pub read_ops: u64,
    pub ops_per_sec: f64,
    pub conflicts: u64,
    pub lock_latency: LatencySummary,
    pub unlock_latency: LatencySummary,
    pub errors: ErrnoCounts,
    pub violations: u64,
    pub violation_samples: Vec<String>,
    pub file_check: FileCheck,
    /// "pass": every holder was alone, the file adds up and no call failed; "fail" otherwise.
    pub verdict: String,
}

impl TortureReport {
    pub fn build(
        path: &Path,
        fs_type: &str,
        params: &TortureParams,
        hosts: Vec<(String, LocalRun)>,
        file_check: FileCheck,
    ) -> TortureReport {
        let mut total = WorkerStats::default();
        let mut host_runs = Vec::new();
        let mut elapsed = Duration::ZERO;
        for (host, run) in &hosts {
            total.merge(&run.stats);
            elapsed = elapsed.max(run.elapsed);
            host_runs.push(HostRun {
                host: host.clone(),
                procs: run.procs,
                ops: run.stats.ops,
                violations: run.stats.violations,
                errors: run.stats.errors.clone(),
                elapsed_ms: run.elapsed.as_millis() as u64,
            });
        }
        let elapsed_s = elapsed.as_secs_f64();
        let mut samples = total.violation_samples.clone();
        if !file_check.ok() && samples.len() < MAX_SAMPLES {
            samples.push(format!(
                "lost updates: record counts add up to {} but writers performed {} increments",
                file_check.sum_counts, file_check.expected
            ));
        }
        let violations = total.violations
            + u64::from(file_check.sum_counts != file_check.expected)
            + file_check.corrupt_count;
        let pass = violations == 0 && total.errors.is_empty();
        TortureReport {
            mode: "torture".into(),
            path: path.display().to_string(),
            fs_type: fs_type.to_string(),
            params: params.clone(),
            hosts: host_runs,
            elapsed_s,
            ops: total.ops,
            write_ops: total.write_ops,
            read_ops: total.read_ops,
            ops_per_sec: if elapsed_s > 0.0 {
                total.ops as f64 / elapsed_s
            } else {
                0.0
            },
            conflicts: total.conflicts,
            lock_latency: total.lock_latency.summary(),
            unlock_latency: total.unlock_latency.summary(),
            errors: total.errors,
            violations,
            violation_samples: samples,
            file_check,
            verdict: if pass { "pass" } else { "fail" }.into(),
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let p = &self.params;
        let mut s = String::new();
        let lat = |l: &LatencySummary| {
            format!(
                "p50 {:.1} µs  p90 {:.1} µs  p99 {:.1} µs  max {:.1} µs",
                l.p50_us, l.p90_us, l.p99_us, l.max_us
            )
        };
        let _ = writeln!(
            s,
            "lock-torture torture: {} locks, {} host(s), {} process(es) x {} thread(s) each, {:.1} s on {} ({})",
            p.kind,
            self.hosts.len(),
            p.procs,
            p.threads,
            self.elapsed_s,
            self.path,
            self.fs_type
        );
        for h in &self.hosts {
            if self.hosts.len() > 1 {
                let _ = writeln!(
                    s,
                    "  host {:<22} {} procs, {} ops, {} violations, errors {}",
                    h.host, h.procs, h.ops, h.violations, h.errors
                );
            }
        }
        let _ = writeln!(
            s,
            "  operations      {} ({} write, {} read), {:.0} per second",
            self.ops, self.write_ops, self.read_ops, self.ops_per_sec
        );
        let _ = writeln!(
            s,
            "  conflicts       {} (non-blocking attempts that found the range taken)",
            self.conflicts
        );
        let _ = writeln!(s, "  lock latency    {}", lat(&self.lock_latency));
        let _ = writeln!(s, "  unlock latency  {}", lat(&self.unlock_latency));
        let _ = writeln!(s, "  errors          {}", self.errors);
        let _ = writeln!(
            s,
            "  data check      record counts sum to {}, writers performed {} increments{}",
            self.file_check.sum_counts,
            self.file_check.expected,
            if self.file_check.corrupt_count > 0 {
                format!(", {} corrupt records", self.file_check.corrupt_count)
            } else {
                String::new()
            }
        );
        let _ = writeln!(s, "  violations      {}", self.violations);
        for v in &self.violation_samples {
            let _ = writeln!(s, "    - {v}");
        }
        let _ = writeln!(
            s,
            "verdict: {}",
            if self.passed() {
                "PASS (every lock holder was alone, the data adds up, no call failed)"
            } else if self.violations > 0 {
                "FAIL (exclusivity violated: see above)"
            } else {
                "FAIL (lock or I/O calls failed: see errors)"
            }
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn params() -> TortureParams {
        TortureParams {
            kind: LockKind::Posix,
            procs: 2,
            threads: 1,
            duration_ms: 100,
            file: "t.dat".into(),
            records: 16,
            max_records: 4,
            read_percent: 20,
            hold_us: 0,
            id_base: 0,
            seed: 1,
        }
    }

    #[test]
    fn validation() {
        assert_eq!(params().validate(), Ok(()));
        let mut p = params();
        p.threads = 2;
        assert!(p.validate().unwrap_err().contains("POSIX"));
        p.kind = LockKind::Ofd;
        assert_eq!(p.validate(), Ok(()));
        let mut p = params();
        p.max_records = 17;
        assert!(p.validate().is_err());
        let mut p = params();
        p.file = "../x".into();
        assert!(p.validate().is_err());
        let mut p = params();
        p.procs = 0;
        assert!(p.validate().is_err());
    }

    #[test]
    fn single_thread_contention_in_process_is_consistent() {
        // One thread, real locks, real file: the bookkeeping must add up exactly.
        let dir = tempfile::tempdir().unwrap();
        let mut p = params();
        p.kind = LockKind::Ofd;
        let path = prepare_file(dir.path(), &p).unwrap();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let st = contend(
            &f,
            &p,
            7,
            Rng(42),
            Instant::now() + Duration::from_millis(50),
        );
        assert!(st.ops > 0);
        assert_eq!(st.ops, st.write_ops + st.read_ops);
        assert_eq!(st.violations, 0, "{:?}", st.violation_samples);
        assert_eq!(st.lock_latency.count(), st.ops);
        let check = verify_file(&path, p.kind, st.increments).unwrap();
        assert!(check.ok(), "{check:?}");
        assert_eq!(check.records, 16);
    }

    #[test]
    fn verify_detects_lost_updates_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = params();
        let path = prepare_file(dir.path(), &p).unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(
            &Record {
                writer: 1,
                seq: 1,
                count: 5,
            }
            .encode(),
            0,
        )
        .unwrap();
        let check = verify_file(&path, p.kind, 6).unwrap();
        assert_eq!((check.sum_counts, check.ok()), (5, false));
        f.write_all_at(b"garbage!", 64).unwrap();
        let check = verify_file(&path, p.kind, 5).unwrap();
        assert_eq!(check.corrupt_count, 1);
        assert!(!check.ok());
        assert!(
            check.corrupt[0].starts_with("record 2:"),
            "{:?}",
            check.corrupt
        );
    }

    fn run(stats: WorkerStats) -> LocalRun {
        LocalRun {
            stats,
            procs: 1,
            elapsed: Duration::from_secs(2),
        }
    }

    #[test]
    fn report_verdicts() {
        let p = params();
        let good = FileCheck {
            records: 16,
            sum_counts: 10,
            expected: 10,
            corrupt: vec![],
            corrupt_count: 0,
        };
        let mut st = WorkerStats {
            ops: 100,
            increments: 10,
            ..Default::default()
        };
        st.lock_latency.record_ns(1_000);
        let r = TortureReport::build(
            Path::new("/x"),
            "tmpfs",
            &p,
            vec![("a".into(), run(st.clone()))],
            good.clone(),
        );
        assert!(r.passed());
        assert_eq!(r.ops_per_sec, 50.0);
        assert!(r.render_text().contains("verdict: PASS"));

        let lost = FileCheck {
            sum_counts: 9,
            ..good.clone()
        };
        let r = TortureReport::build(
            Path::new("/x"),
            "tmpfs",
            &p,
            vec![("a".into(), run(st.clone()))],
            lost,
        );
        assert!(!r.passed());
        assert_eq!(r.violations, 1);
        assert!(r.violation_samples[0].contains("lost updates"));

        let mut failing = st.clone();
        failing.errors.add("ENOLCK", 3);
        let r = TortureReport::build(
            Path::new("/x"),
            "nfs",
            &p,
            vec![("a".into(), run(failing))],
            good.clone(),
        );
        assert!(!r.passed());
        assert_eq!(r.violations, 0);
        assert!(r.render_text().contains("ENOLCK=3"));

        // Two hosts: counts add, elapsed is the longest.
        let r = TortureReport::build(
            Path::new("/x"),
            "nfs",
            &p,
            vec![("a".into(), run(st.clone())), ("b".into(), run(st))],
            FileCheck {
                expected: 20,
                sum_counts: 20,
                ..good
            },
        );
        assert_eq!((r.ops, r.hosts.len()), (200, 2));
        let json = serde_json::to_string(&r).unwrap();
        let back: TortureReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn merge_caps_samples() {
        let mut a = WorkerStats::default();
        for i in 0..20 {
            a.violation(format!("v{i}"));
        }
        let mut b = WorkerStats::default();
        b.merge(&a);
        b.merge(&a);
        assert_eq!(b.violations, 40);
        assert_eq!(b.violation_samples.len(), MAX_SAMPLES);
    }
}
