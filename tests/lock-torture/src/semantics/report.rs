//! The suite's report: one result per test, the counts and the verdict (`--json` prints it).

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub id: String,
    pub name: String,
    pub status: Status,
    /// Every errno a lock call returned during the test (including expected denials).
    pub errnos: Vec<String>,
    pub detail: String,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    pub mode: String,
    pub path: String,
    pub fs_type: String,
    pub peer: String,
    pub tests: Vec<TestResult>,
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
    pub verdict: String,
}

impl SuiteReport {
    pub fn new(path: &Path, fs_type: &str, peer: &str, tests: Vec<TestResult>) -> SuiteReport {
        let count = |s: Status| tests.iter().filter(|t| t.status == s).count() as u32;
        let (passed, failed, skipped) = (
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skip),
        );
        SuiteReport {
            mode: "semantics".into(),
            path: path.display().to_string(),
            fs_type: fs_type.into(),
            peer: peer.into(),
            passed,
            failed,
            skipped,
            verdict: if failed == 0 { "pass" } else { "fail" }.into(),
            tests,
        }
    }

    pub fn passed(&self) -> bool {
        self.failed == 0
    }

    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "lock-torture semantics on {} ({}), peer: {}",
            self.path, self.fs_type, self.peer
        );
        for t in &self.tests {
            let status = match t.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "SKIP",
            };
            let errnos = if t.errnos.is_empty() {
                String::new()
            } else {
                format!(" [errno seen: {}]", t.errnos.join(", "))
            };
            let _ = writeln!(s, "{status} {:<10} {}{errnos}", t.id, t.name);
            if !t.detail.is_empty() {
                let _ = writeln!(s, "     {}", t.detail);
            }
        }
        let _ = writeln!(
            s,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        );
        s
    }
}
