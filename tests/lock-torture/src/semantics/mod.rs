//! The semantics suite: Connectathon `tlock.c` tests 1-8 and 10-12, plus OFD locks, flock,
//! upgrade/downgrade and EDEADLK (reference §5.1, §5.3-§5.5).
//!
//! As in `tlock.c`, this process is the "parent" and a peer is the "child": a local peer process
//! on a pipe, or (multi-host mode, like Linux-HA `mlock`) a worker on another host that reaches
//! the same file through its own mount. The peer's view is what counts: a lock is only proven
//! exclusive when *another* lock owner is refused.
//!
//! [`cases`] lists the tests, [`cthon`] and [`linux`] write them in the steps of [`ctx`],
//! [`error`] says how a test fails and [`report`] sums up the results.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::peer::Channel;
use crate::protocol::Request;

mod cases;
mod cthon;
mod ctx;
mod error;
mod linux;
mod report;

pub use ctx::same_bytes;
pub use error::CaseError;
pub use report::{Status, SuiteReport, TestResult};

use cases::TESTS;
use ctx::Ctx;

/// The largest offset a lock can start at (OFFSET_MAX for 64-bit off_t): Connectathon's MAXEOF.
pub const MAXEOF: i64 = i64::MAX;
const PEER_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// Only run tests whose id is listed (all when empty).
    pub only: Vec<String>,
    /// Lock/unlock cycles for the rate test (Connectathon's default is 1000).
    pub rate_cycles: u32,
    /// The peer is on another host: skip pid checks and tests that need both owners here.
    pub remote: bool,
    /// How long a released lock may take to become free (Connectathon `wait_time`, 3 s).
    pub release_wait: Duration,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            only: Vec::new(),
            rate_cycles: 1000,
            remote: false,
            release_wait: Duration::from_secs(3),
        }
    }
}

/// Ids of every test, in order.
pub fn test_ids() -> Vec<&'static str> {
    TESTS.iter().map(|t| t.id).collect()
}

/// Run the suite in `dir` against `peer`.
pub fn run_suite(dir: &Path, peer: &mut Channel, opts: &SuiteOptions) -> Vec<TestResult> {
    let mut results = Vec::new();
    for def in TESTS {
        if !opts.only.is_empty() && !opts.only.iter().any(|o| o == def.id) {
            continue;
        }
        let started = Instant::now();
        if let (true, Some(why)) = (opts.remote, def.local_only) {
            results.push(TestResult {
                id: def.id.into(),
                name: def.name.into(),
                status: Status::Skip,
                errnos: Vec::new(),
                detail: why.into(),
                duration_ms: 0,
            });
            continue;
        }
        let name = format!("lock-torture-semantics.{}.{}", std::process::id(), def.id);
        let mut ctx = Ctx {
            dir,
            name: name.clone(),
            peer: &mut *peer,
            opts,
            my_pid: std::process::id() as i32,
            errnos: Vec::new(),
        };
        let outcome = match ctx.create() {
            Ok(()) => (def.run)(&mut ctx),
            Err(e) => Err(e),
        };
        let errnos = std::mem::take(&mut ctx.errnos);
        // Close everything the peer has open (releasing its locks) before the next test.
        let _ = peer.call(&Request::Reset, PEER_TIMEOUT);
        let _ = std::fs::remove_file(dir.join(&name));
        let (status, detail) = match outcome {
            Ok(d) => (Status::Pass, d),
            Err(e) => (Status::Fail, e.to_string()),
        };
        tracing::info!("{} {:?} {}", def.id, status, detail);
        results.push(TestResult {
            id: def.id.into(),
            name: def.name.into(),
            status,
            errnos,
            detail,
            duration_ms: started.elapsed().as_millis() as u64,
        });
    }
    results
}

#[cfg(test)]
mod tests;
