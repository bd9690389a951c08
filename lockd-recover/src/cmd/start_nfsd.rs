//! `lockd-recover start-nfsd`: start nfsd as the service's NFSv4 server scope, with grace and
//! lease set first and nfsdcld's tracker checked before and confirmed after.

use super::Ctx;
use crate::cli::{StartNfsdArgs, TrackerArgs};
use crate::error::{Error, Exit};
use lockd_recover::grace::{self, GraceSetReport, GraceSettings};
use lockd_recover::kmsg::{KmsgReader, NfsdStartLog, Tracking};
use lockd_recover::knobs::NFSD_THREADS;
use lockd_recover::scope;
use lockd_recover::tracker::TrackerReport;
use serde::Serialize;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct StartReport {
    scope: String,
    threads: u64,
    grace: Option<GraceSetReport>,
    tracker: Option<TrackerReport>,
    nfsd_log: NfsdStartLog,
    /// Why the tracker nfsd chose could not be read from the kernel log.
    unconfirmed: Option<String>,
}

pub fn run(a: &StartNfsdArgs, ctx: &Ctx) -> Result<Exit, Error> {
    scope::validate(&a.scope)?;
    refuse_if_running(ctx)?;
    let grace = set_grace(a, ctx)?;
    let tracker = match &a.tracker_dir {
        Some(dir) => Some(super::tracker::check(
            &TrackerArgs {
                storage_dir: dir.clone(),
                shared: a.shared.clone(),
                no_nfsdcld_check: false,
            },
            ctx,
        )?),
        None => None,
    };
    let mut kmsg = KmsgReader::at_end(&a.kmsg);
    start_in_scope(a)?;
    let threads = ctx.proc.nfsd_threads()?;
    if threads == 0 {
        return Err(Error::NfsdDidNotStart {
            threads: ctx.proc.path(NFSD_THREADS),
        });
    }
    let mut nfsd_log = NfsdStartLog::default();
    let unconfirmed = match &mut kmsg {
        Ok(k) => confirm(k, &mut nfsd_log, a.confirm_timeout),
        Err(e) => Some(format!("cannot read {}: {e}", a.kmsg.display())),
    };
    if tracker.is_some() {
        if let Some(found) = nfsd_log.tracking.filter(|t| *t != Tracking::Nfsdcld) {
            // Serving with another tracker lets none of nfsdcld's clients reclaim: stop again
            // so the cluster sees the failure instead of clients losing their locks.
            ctx.proc.write(NFSD_THREADS, "0\n")?;
            return Err(Error::WrongTracker {
                found,
                lines: nfsd_log.lines,
            });
        }
    }
    let rep = StartReport {
        scope: a.scope.clone(),
        threads,
        grace,
        tracker,
        nfsd_log,
        unconfirmed,
    };
    print(ctx, &rep)?;
    Ok(match (&rep.tracker, &rep.unconfirmed) {
        (Some(_), Some(_)) => Exit::Incomplete,
        _ => Exit::Ok,
    })
}

/// The scope is copied at every thread start, and grace and lease are only taken while nfsd
/// is stopped: a running nfsd is left alone.
fn refuse_if_running(ctx: &Ctx) -> Result<(), Error> {
    match ctx.proc.nfsd_threads() {
        Ok(0) => Ok(()),
        Ok(threads) => Err(Error::NfsdAlreadyRunning {
            threads,
            path: ctx.proc.path(NFSD_THREADS),
        }),
        // No threads file: the nfsd filesystem is not mounted (the error says how to).
        Err(e) => Err(e.into()),
    }
}

fn set_grace(a: &StartNfsdArgs, ctx: &Ctx) -> Result<Option<GraceSetReport>, Error> {
    if a.nlm_grace.is_none() && a.v4_grace.is_none() && a.lease.is_none() {
        return Ok(None);
    }
    let r = grace::set(
        &ctx.proc,
        &GraceSettings {
            nlm_grace_period: a.nlm_grace,
            v4_grace: a.v4_grace,
            v4_lease: a.lease,
        },
    )?;
    for w in &r.warnings {
        tracing::warn!("{w}");
    }
    Ok(Some(r))
}

/// Runs `rpc.nfsd [ARGS] THREADS` in a UTS namespace whose host name is the scope. This
/// process enters the namespace itself (it is single-threaded here and exits right after), so
/// no code runs between fork and exec.
fn start_in_scope(a: &StartNfsdArgs) -> Result<(), Error> {
    let program = match &a.rpc_nfsd {
        Some(p) => p.clone(),
        None => libmmp::ocf::find_program("rpc.nfsd").unwrap_or_else(|| PathBuf::from("rpc.nfsd")),
    };
    scope::enter(&a.scope)?;
    let status = Command::new(&program)
        .args(&a.rpc_nfsd_args)
        .arg(a.threads.to_string())
        .status()
        .map_err(|source| Error::RpcNfsd {
            program: program.clone(),
            source,
        })?;
    if !status.success() {
        return Err(Error::RpcNfsdFailed { program, status });
    }
    Ok(())
}

/// Reads the kernel log until nfsd's tracker line shows up; nfsd logs it while starting, before
/// rpc.nfsd returns, so the wait is only for a slow log.
fn confirm(k: &mut KmsgReader, log: &mut NfsdStartLog, timeout: Duration) -> Option<String> {
    let until = Instant::now() + timeout;
    loop {
        if let Err(e) = k.read_new(log) {
            return Some(format!("cannot read {}: {e}", k.path().display()));
        }
        if log.tracking.is_some() {
            return None;
        }
        if Instant::now() >= until {
            return Some(format!(
                "no \"NFSD: Using ... client tracking\" line in {} within {} s",
                k.path().display(),
                timeout.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn print(ctx: &Ctx, r: &StartReport) -> Result<(), Error> {
    if let Some(why) = &r.unconfirmed {
        tracing::warn!("cannot confirm the NFSv4 client tracker nfsd uses: {why}");
    }
    ctx.out.emit(r, |w| {
        writeln!(w, "nfsd started: {} threads, scope {}", r.threads, r.scope)?;
        if let Some(g) = &r.grace {
            for (p, v) in &g.written {
                writeln!(w, "wrote {} to {}", v.trim_end(), p.display())?;
            }
        }
        if let Some(t) = &r.tracker {
            writeln!(
                w,
                "tracker {}: {} NFSv4 clients may reclaim",
                t.db.display(),
                t.clients.len()
            )?;
        }
        match r.nfsd_log.tracking {
            Some(t) => writeln!(w, "nfsd client tracking: {t:?}")?,
            None => writeln!(
                w,
                "nfsd client tracking: unconfirmed ({})",
                r.unconfirmed.as_deref().unwrap_or("")
            )?,
        }
        for l in &r.nfsd_log.lines {
            writeln!(w, "  kernel: {l}")?;
        }
        Ok(())
    })
}
