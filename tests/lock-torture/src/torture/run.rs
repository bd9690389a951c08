//! One host's share of a torture run: start the worker processes of this binary, wait for
//! them (killing any that outlive the run by [`WORKER_GRACE`]) and merge their statistics.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracing::warn;

use super::{TortureError, TortureParams, WorkerStats, WORKER_GRACE};

/// One host's share of a torture run.
pub struct LocalRun {
    pub stats: WorkerStats,
    pub procs: u32,
    pub elapsed: Duration,
}

/// A started worker process and the threads draining its output.
struct Worker {
    index: u32,
    child: Child,
    out: JoinHandle<String>,
    err: JoinHandle<String>,
}

/// Run `params.procs` worker processes of this binary against `dir/params.file` (which must
/// already be prepared) and merge their statistics.
pub fn run_local(dir: &Path, params: &TortureParams) -> Result<LocalRun, TortureError> {
    params.validate()?;
    let exe = std::env::current_exe().map_err(|source| TortureError::Spawn { index: 0, source })?;
    let json = serde_json::to_string(params).map_err(TortureError::Encode)?;
    let start = Instant::now();
    let mut workers = Vec::new();
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
        match spawned {
            Ok(child) => workers.push(Worker::drain(index, child)),
            Err(source) => {
                for mut w in workers {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                }
                return Err(TortureError::Spawn { index, source });
            }
        }
    }
    let deadline = start + Duration::from_millis(params.duration_ms) + WORKER_GRACE;
    let mut merged = WorkerStats::default();
    let mut first_error = None;
    for w in workers {
        match w.finish(deadline) {
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

impl Worker {
    /// Drain both pipes in threads so a chatty worker never blocks on a full pipe.
    fn drain(index: u32, mut child: Child) -> Worker {
        let out = child.stdout.take();
        let err = child.stderr.take();
        Worker {
            index,
            child,
            out: thread::spawn(move || read_all(out)),
            err: thread::spawn(move || read_all(err)),
        }
    }

    /// Wait for the worker until `deadline` (then kill it) and read its statistics.
    fn finish(mut self, deadline: Instant) -> Result<WorkerStats, TortureError> {
        let index = self.index;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => {
                    warn!(
                        "worker {index} still running {WORKER_GRACE:?} after the end: killing it"
                    );
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let out = self.out.join().unwrap_or_default();
        let err = self.err.join().unwrap_or_default();
        let stderr = err.trim().to_string();
        match status {
            Some(st) if st.success() => {
                serde_json::from_str::<WorkerStats>(out.trim()).map_err(|source| {
                    TortureError::WorkerResult {
                        index,
                        source,
                        stderr,
                    }
                })
            }
            Some(status) => Err(TortureError::WorkerExited {
                index,
                status,
                stderr,
            }),
            None => Err(TortureError::WorkerKilled { index }),
        }
    }
}

/// Read a worker's stdout or stderr to the end.
fn read_all<R: Read>(pipe: Option<R>) -> String {
    let mut s = String::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_string(&mut s);
    }
    s
}
