//! Dispatch of the subcommands: everything `main` needs except the exit-code table.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;
use thiserror::Error;
use tracing::{info, warn};

use crate::cli::{Cli, Cmd, CoordinatorArgs, FailoverArgs, SemanticsArgs, TortureArgs};
use crate::failover::{self, FailoverError, FailoverOptions, HelperParams};
use crate::fsinfo::fs_type_name;
use crate::multihost::{self, CoordinatorOptions, MultiHostError};
use crate::peer::{self, Channel, PeerError};
use crate::semantics::{self, SuiteOptions, SuiteReport};
use crate::torture::{self, ParamsError, TortureError, TortureParams, TortureReport};

/// What a run found (errors are [`AppError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    Violation,
}

impl Outcome {
    fn from_pass(pass: bool) -> Outcome {
        if pass {
            Outcome::Clean
        } else {
            Outcome::Violation
        }
    }
}

/// Usage and setup errors: all exit with status 2.
#[derive(Debug, Error)]
pub enum AppError {
    #[error("--dir {path}: {problem}")]
    Dir { path: String, problem: String },
    #[error("invalid options: {0}")]
    Options(String),
    #[error("invalid options: {0}")]
    Params(#[from] ParamsError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    Torture(#[from] TortureError),
    #[error(transparent)]
    Failover(#[from] FailoverError),
    #[error(transparent)]
    MultiHost(#[from] MultiHostError),
    #[error("helper: bad parameters: {0}")]
    HelperParams(serde_json::Error),
    #[error("helper: {0}")]
    Helper(io::Error),
    #[error("cannot write the report to stdout: {0}")]
    Output(io::Error),
}

/// The one logging setup (libmmp::host::logging), with this tool's levels for -v counts.
pub fn init_logging(verbose: u8) {
    let defaults = libmmp::host::logging::LogDefaults {
        levels: &["warn", "info", "debug"],
        only_crate: None,
    };
    libmmp::host::logging::init(defaults, verbose);
}

pub fn run(cli: Cli) -> Result<Outcome, AppError> {
    match cli.cmd {
        Cmd::Semantics(a) => semantics_cmd(&a),
        Cmd::Torture(a) => torture_cmd(&a),
        Cmd::Failover(a) => failover_cmd(&a),
        Cmd::Coordinator(a) => coordinator_cmd(&a),
        Cmd::Worker(a) => {
            check_dir(&a.dir)?;
            multihost::run_worker(&a.connect, &a.dir, a.retry_for)?;
            Ok(Outcome::Clean)
        }
        Cmd::Peer { dir } => {
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            peer::serve(dir, io::stdin().lock(), io::stdout().lock()).map_err(AppError::Helper)?;
            Ok(Outcome::Clean)
        }
        Cmd::TortureWorker { dir, index, params } => {
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            let params: TortureParams =
                serde_json::from_str(&params).map_err(AppError::HelperParams)?;
            let stats = torture::worker_main(&dir, &params, index)?;
            let json = serde_json::to_string(&stats).map_err(AppError::HelperParams)?;
            println!("{json}");
            Ok(Outcome::Clean)
        }
        Cmd::Holder { params } => {
            let params: HelperParams =
                serde_json::from_str(&params).map_err(AppError::HelperParams)?;
            failover::holder_main(&params).map_err(AppError::Helper)?;
            Ok(Outcome::Clean)
        }
        Cmd::Probe { params } => {
            let params: HelperParams =
                serde_json::from_str(&params).map_err(AppError::HelperParams)?;
            failover::probe_main(&params).map_err(AppError::Helper)?;
            Ok(Outcome::Clean)
        }
    }
}

fn check_dir(dir: &Path) -> Result<(), AppError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(AppError::Dir {
            path: dir.display().to_string(),
            problem: "is not a directory: point --dir at a directory on the filesystem to test"
                .into(),
        }),
        Err(e) => Err(AppError::Dir {
            path: dir.display().to_string(),
            problem: format!(
                "{e}: create it, or point --dir at a directory on a mounted filesystem"
            ),
        }),
    }
}

/// Print the report; a closed stdout (EPIPE, e.g. `| head`) is not an error.
fn emit<T: Serialize>(json: bool, report: &T, text: &str) -> Result<(), AppError> {
    let mut out = io::stdout().lock();
    let r = if json {
        serde_json::to_writer_pretty(&mut out, report)
            .map_err(io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        out.write_all(text.as_bytes())
    }
    .and_then(|()| out.flush());
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(AppError::Output),
    }
}

fn semantics_cmd(a: &SemanticsArgs) -> Result<Outcome, AppError> {
    check_dir(&a.dir)?;
    let known = semantics::test_ids();
    if let Some(bad) = a.only.iter().find(|o| !known.contains(&o.as_str())) {
        return Err(AppError::Options(format!(
            "--only: unknown test {bad:?}; the tests are {}",
            known.join(", ")
        )));
    }
    let fs = fs_type_name(&a.dir);
    let mut peer = Channel::spawn_local(&a.dir)?;
    let opts = SuiteOptions {
        only: a.only.clone(),
        rate_cycles: a.rate_cycles,
        ..SuiteOptions::default()
    };
    let peer_name = peer.name().to_string();
    let results = semantics::run_suite(&a.dir, &mut peer, &opts);
    drop(peer);
    let report = SuiteReport::new(&a.dir, &fs, &peer_name, results);
    emit(a.json, &report, &report.render_text())?;
    Ok(Outcome::from_pass(report.passed()))
}

fn torture_cmd(a: &TortureArgs) -> Result<Outcome, AppError> {
    check_dir(&a.dir)?;
    let params = a.opts.params();
    params.validate()?;
    let fs = fs_type_name(&a.dir);
    let path = torture::prepare_file(&a.dir, &params)?;
    info!(
        "torture: {} {} processes on {} ({fs})",
        params.procs,
        params.kind,
        path.display()
    );
    let run = torture::run_local(&a.dir, &params)?;
    let check = torture::verify_file(&path, params.kind, run.stats.increments)?;
    let host = libmmp::host::identity::nodename();
    let report = TortureReport::build(&path, &fs, &params, vec![(host, run)], check);
    emit(a.json, &report, &report.render_text())?;
    if report.passed() {
        let _ = std::fs::remove_file(&path);
    } else {
        warn!("keeping {} for inspection", path.display());
    }
    Ok(Outcome::from_pass(report.passed()))
}

fn failover_cmd(a: &FailoverArgs) -> Result<Outcome, AppError> {
    check_dir(&a.dir)?;
    let opts = FailoverOptions {
        dir: a.dir.clone(),
        file: a.file.clone(),
        kind: a.kind,
        locks: a.locks,
        lock_len: a.lock_len,
        duration: a.duration,
        interval: a.interval,
        probe_interval: a.probe_interval,
        probe: a.probe,
        restart: !a.no_restart,
        status_file: a.status_file.clone(),
        probe_only: a.probe_only,
    };
    if a.duration.is_none() {
        let what = if a.probe_only { "probing" } else { "holding" };
        eprintln!(
            "lock-torture: {what} {} {} locks until SIGINT or SIGTERM",
            a.locks, a.kind
        );
    }
    let report = failover::run(&opts, &fs_type_name(&a.dir))?;
    emit(a.json, &report, &report.render_text())?;
    Ok(Outcome::from_pass(report.passed()))
}

fn coordinator_cmd(a: &CoordinatorArgs) -> Result<Outcome, AppError> {
    check_dir(&a.dir)?;
    let torture = if a.no_torture {
        None
    } else {
        let p = a.torture.params();
        p.validate()?;
        Some(p)
    };
    if a.workers == 0 {
        return Err(AppError::Options("--workers must be at least 1".into()));
    }
    let opts = CoordinatorOptions {
        dir: a.dir.clone(),
        listen: a.listen.clone(),
        workers: a.workers,
        accept_timeout: a.accept_timeout,
        addr_file: a.addr_file.clone(),
        semantics: !a.no_semantics,
        suite: SuiteOptions {
            rate_cycles: a.rate_cycles,
            ..SuiteOptions::default()
        },
        torture,
        local: !a.no_local,
        fs_type: fs_type_name(&a.dir),
    };
    let report = multihost::run_coordinator(&opts)?;
    emit(a.json, &report, &report.render_text())?;
    Ok(Outcome::from_pass(report.passed()))
}
