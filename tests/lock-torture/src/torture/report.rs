//! The torture report: every host's counters merged, the file check, and the verdict.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{FileCheck, LocalRun, TortureParams, WorkerStats, MAX_SAMPLES};
use crate::stats::{ErrnoCounts, LatencySummary};

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
