//! Multi-host mode: one coordinator, workers on other hosts (TCP), as Linux-HA `mlock` did with
//! two clients of one NFS export (reference §5.2).
//!
//! Workers connect *to* the coordinator (so only the coordinator listens), announce themselves,
//! and then carry out peer-protocol requests against their own mount of the shared directory.
//! The coordinator runs the semantics suite with the first worker as the peer, then a torture
//! run in which every host's processes contend for the same file at once.

use std::io::{self, BufReader};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{info, warn};

use crate::peer::{self, Channel, PeerError};
use crate::protocol::{Request, Response};
use crate::semantics::{self, SuiteOptions, SuiteReport};
use crate::torture::{self, LocalRun, TortureError, TortureParams, TortureReport};

#[derive(Debug, Error)]
pub enum MultiHostError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
    #[error("only {got} of {want} workers connected within {timeout:?}: start `lock-torture worker --connect ADDR --dir DIR` on each client")]
    NotEnoughWorkers {
        got: usize,
        want: usize,
        timeout: Duration,
    },
    #[error("cannot write the address file {path}: {source}")]
    AddrFile { path: PathBuf, source: io::Error },
    #[error("worker handshake failed: {0}")]
    Handshake(PeerError),
    #[error("cannot connect to the coordinator at {addr} within {timeout:?}: {source}")]
    Connect {
        addr: String,
        timeout: Duration,
        source: io::Error,
    },
    #[error("worker {worker}: unexpected hello reply {reply:?}")]
    HelloReply {
        worker: String,
        reply: Box<Response>,
    },
    #[error("worker {worker}: torture failed: {reply:?}")]
    TortureReply {
        worker: String,
        reply: Box<Response>,
    },
    #[error("worker {worker}: {source}")]
    Call { worker: String, source: PeerError },
    #[error("worker ?: coordinator thread panicked")]
    ThreadPanicked,
    #[error(transparent)]
    Torture(#[from] TortureError),
    #[error("serving the coordinator: {0}")]
    Serve(io::Error),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub addr: String,
    pub host: String,
    pub pid: i32,
    pub dir: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiHostReport {
    pub mode: String,
    pub coordinator_dir: String,
    pub workers: Vec<WorkerInfo>,
    pub semantics: Option<SuiteReport>,
    pub torture: Option<TortureReport>,
    pub verdict: String,
}

impl MultiHostReport {
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    pub fn render_text(&self) -> String {
        let mut s = format!(
            "lock-torture multi-host: coordinator on {}\n",
            self.coordinator_dir
        );
        for w in &self.workers {
            s.push_str(&format!(
                "  worker {} (host {}, pid {}) on {}\n",
                w.addr, w.host, w.pid, w.dir
            ));
        }
        if let Some(sem) = &self.semantics {
            s.push('\n');
            s.push_str(&sem.render_text());
        }
        if let Some(t) = &self.torture {
            s.push('\n');
            s.push_str(&t.render_text());
        }
        s.push_str(&format!(
            "\nmulti-host verdict: {}\n",
            self.verdict.to_uppercase()
        ));
        s
    }
}

pub struct CoordinatorOptions {
    pub dir: PathBuf,
    pub listen: String,
    pub workers: u32,
    pub accept_timeout: Duration,
    pub addr_file: Option<PathBuf>,
    pub semantics: bool,
    pub suite: SuiteOptions,
    pub torture: Option<TortureParams>,
    /// Also run the torture processes on the coordinator's own mount.
    pub local: bool,
    pub fs_type: String,
}

/// Writer ids per host: procs × threads is at most 1024 × 256, well under the stride.
const ID_STRIDE: u32 = 1_000_000;

pub fn run_coordinator(opts: &CoordinatorOptions) -> Result<MultiHostReport, MultiHostError> {
    let listener = listen(opts)?;
    let mut chans = accept_workers(&listener, opts.workers as usize, opts.accept_timeout)?;
    drop(listener);
    let infos = handshake(&mut chans)?;

    let semantics_report = if opts.semantics {
        let mut suite = opts.suite.clone();
        suite.remote = true;
        let peer_name = format!("{} ({})", chans[0].name(), infos[0].host);
        let results = semantics::run_suite(&opts.dir, &mut chans[0], &suite);
        Some(SuiteReport::new(
            &opts.dir,
            &opts.fs_type,
            &peer_name,
            results,
        ))
    } else {
        None
    };

    let torture_report = match &opts.torture {
        Some(params) => Some(run_multi_torture(opts, params, &mut chans, &infos)?),
        None => None,
    };

    for ch in &mut chans {
        let _ = ch.call(&Request::Exit, Duration::from_secs(5));
    }
    let pass = !matches!(&semantics_report, Some(r) if !r.passed())
        && !matches!(&torture_report, Some(r) if !r.passed());
    Ok(MultiHostReport {
        mode: "multi-host".into(),
        coordinator_dir: opts.dir.display().to_string(),
        workers: infos,
        semantics: semantics_report,
        torture: torture_report,
        verdict: if pass { "pass" } else { "fail" }.into(),
    })
}

/// Listen on `--listen` and publish the bound address in `--addr-file` (written whole, then
/// renamed, so a script never reads half an address).
fn listen(opts: &CoordinatorOptions) -> Result<TcpListener, MultiHostError> {
    let listener = TcpListener::bind(&opts.listen).map_err(|source| MultiHostError::Listen {
        addr: opts.listen.clone(),
        source,
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| MultiHostError::Listen {
            addr: opts.listen.clone(),
            source,
        })?;
    info!("listening on {local_addr} for {} worker(s)", opts.workers);
    if let Some(path) = &opts.addr_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{local_addr}\n"))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| MultiHostError::AddrFile {
                path: path.clone(),
                source,
            })?;
    }
    Ok(listener)
}

/// Ask every worker who it is.
fn handshake(chans: &mut [Channel]) -> Result<Vec<WorkerInfo>, MultiHostError> {
    let mut infos = Vec::new();
    for ch in chans.iter_mut() {
        match ch
            .call(&Request::Hello, Duration::from_secs(10))
            .map_err(MultiHostError::Handshake)?
        {
            Response::Hello {
                pid,
                host,
                dir,
                version,
            } => {
                info!("{} is host {host}, pid {pid}, dir {dir}", ch.name());
                infos.push(WorkerInfo {
                    addr: ch.name().trim_start_matches("worker ").to_string(),
                    host,
                    pid,
                    dir,
                    version,
                });
            }
            other => {
                return Err(MultiHostError::HelloReply {
                    worker: ch.name().into(),
                    reply: Box::new(other),
                })
            }
        }
    }
    Ok(infos)
}

fn accept_workers(
    listener: &TcpListener,
    want: usize,
    timeout: Duration,
) -> Result<Vec<Channel>, MultiHostError> {
    listener
        .set_nonblocking(true)
        .map_err(|source| MultiHostError::Listen {
            addr: "listener".into(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    let mut chans = Vec::new();
    while chans.len() < want {
        match listener.accept() {
            Ok((stream, addr)) => {
                info!("worker connected from {addr}");
                let ch = stream
                    .set_nonblocking(false)
                    .and_then(|()| Channel::from_tcp(stream))
                    .map_err(|source| MultiHostError::Listen {
                        addr: addr.to_string(),
                        source,
                    })?;
                chans.push(ch);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(MultiHostError::NotEnoughWorkers {
                        got: chans.len(),
                        want,
                        timeout,
                    });
                }
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => warn!("accept failed: {e}"),
        }
    }
    Ok(chans)
}

fn run_multi_torture(
    opts: &CoordinatorOptions,
    params: &TortureParams,
    chans: &mut Vec<Channel>,
    infos: &[WorkerInfo],
) -> Result<TortureReport, MultiHostError> {
    let path = torture::prepare_file(&opts.dir, params)?;
    let timeout = Duration::from_millis(params.duration_ms) + Duration::from_secs(60);
    // Each remote call runs in its own thread so every host starts at (nearly) the same time.
    let mut handles: Vec<RemoteCall> = Vec::new();
    for (k, mut ch) in chans.drain(..).enumerate() {
        let mut p = params.clone();
        p.id_base = (k as u32 + 1) * ID_STRIDE;
        let host = infos[k].host.clone();
        handles.push(thread::spawn(move || {
            let r = ch.call(&Request::Torture { params: p }, timeout);
            (ch, host, r)
        }));
    }
    let local = if opts.local {
        let mut p = params.clone();
        p.id_base = 0;
        Some(torture::run_local(&opts.dir, &p))
    } else {
        None
    };
    let mut runs: Vec<(String, LocalRun)> = Vec::new();
    let mut first_err = None;
    if let Some(r) = local {
        match r {
            Ok(run) => runs.push(("coordinator".into(), run)),
            Err(e) => first_err = Some(MultiHostError::Torture(e)),
        }
    }
    collect_remote(handles, chans, &mut runs, &mut first_err);
    if let Some(e) = first_err {
        return Err(e);
    }
    let expected: u64 = runs.iter().map(|(_, r)| r.stats.increments).sum();
    let check = torture::verify_file(&path, params.kind, expected)?;
    let report = TortureReport::build(&path, &opts.fs_type, params, runs, check);
    if report.passed() {
        let _ = std::fs::remove_file(&path);
    }
    Ok(report)
}

/// A worker's torture call, run in its own thread: the channel, the worker's host name and
/// the answer.
type RemoteCall = JoinHandle<(Channel, String, Result<Response, PeerError>)>;

/// Wait for every worker's torture answer: its run goes into `runs`, the first failure into
/// `first_err`, and its channel back into `chans`.
fn collect_remote(
    handles: Vec<RemoteCall>,
    chans: &mut Vec<Channel>,
    runs: &mut Vec<(String, LocalRun)>,
    first_err: &mut Option<MultiHostError>,
) {
    for h in handles {
        let Ok((ch, host, r)) = h.join() else {
            first_err.get_or_insert(MultiHostError::ThreadPanicked);
            continue;
        };
        match r {
            Ok(Response::Torture {
                stats,
                procs,
                elapsed_ms,
            }) => runs.push((
                host,
                LocalRun {
                    stats: *stats,
                    procs,
                    elapsed: Duration::from_millis(elapsed_ms),
                },
            )),
            Ok(other) => {
                first_err.get_or_insert(MultiHostError::TortureReply {
                    worker: ch.name().into(),
                    reply: Box::new(other),
                });
            }
            Err(e) => {
                first_err.get_or_insert(MultiHostError::Call {
                    worker: ch.name().into(),
                    source: e,
                });
            }
        }
        chans.push(ch);
    }
}

/// Connect to the coordinator (retrying until `retry_for` has passed) and serve it.
pub fn run_worker(connect: &str, dir: &Path, retry_for: Duration) -> Result<(), MultiHostError> {
    let deadline = Instant::now() + retry_for;
    let stream = loop {
        let attempt = connect
            .to_socket_addrs()
            .and_then(|mut addrs| {
                addrs
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
            })
            .and_then(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(5)));
        match attempt {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("connect to {connect}: {e}; retrying");
                thread::sleep(Duration::from_millis(200));
            }
            Err(source) => {
                return Err(MultiHostError::Connect {
                    addr: connect.into(),
                    timeout: retry_for,
                    source,
                })
            }
        }
    };
    let _ = stream.set_nodelay(true);
    info!(
        "connected to coordinator {connect}, serving {}",
        dir.display()
    );
    let reader = stream.try_clone().map_err(MultiHostError::Serve)?;
    peer::serve(dir.to_path_buf(), BufReader::new(reader), stream).map_err(MultiHostError::Serve)
}
