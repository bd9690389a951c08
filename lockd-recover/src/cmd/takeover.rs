//! `lockd-recover takeover`: the new server's side of a failover: check the IP and nfsd are
//! up, notify, then wait for the ledger's locks (or end lockd's grace when nobody can reclaim).

use super::{ip_is_local, notify_config, print_notify, print_wait, wait_opts, Ctx};
use crate::cli::TakeoverArgs;
use crate::error::{Error, Exit};
use lockd_recover::grace::{self, GraceEndReport, GraceWhich};
use lockd_recover::knobs::NFSD_THREADS;
use lockd_recover::ledger::{self, WaitReport};
use lockd_recover::notify::{self, NotifyReport};
use serde::Serialize;

#[derive(Serialize)]
struct TakeoverReport<'a> {
    notify: &'a NotifyReport,
    reclaim: Option<&'a WaitReport>,
    reclaim_skipped: Option<String>,
    /// No ledger to wait for and no NSM client recorded: nobody can reclaim an NLM lock, so
    /// lockd's grace was ended after --min-grace (NFSv4 grace is left alone: v4 clients are not
    /// recorded by statd).
    nlm_grace_ended_without_clients: Option<GraceEndReport>,
}

pub fn run(a: &TakeoverArgs, ctx: &Ctx) -> Result<Exit, Error> {
    check_ready(a, ctx)?;
    let nr = notify_clients(a, ctx)?;
    let rc = reclaim(a, ctx, &nr)?;
    finish(a, ctx, &nr, &rc)
}

/// What happened after the notify: the ledger wait, or why there was none.
pub struct Reclaim {
    pub wait: Option<WaitReport>,
    pub skipped: Option<String>,
    pub nlm_ended: Option<GraceEndReport>,
}

/// The notify step: every recorded client, from the floating IP.
pub fn notify_clients(a: &TakeoverArgs, ctx: &Ctx) -> Result<NotifyReport, Error> {
    let cfg = notify_config(&a.state_dir, Some(a.ip), &a.opts, ctx.proc.root());
    Ok(notify::run(&cfg)?)
}

/// The reclaim step: wait for the ledger's locks (ending grace once all are back), or end
/// lockd's grace after --min-grace when nobody can reclaim.
pub fn reclaim(a: &TakeoverArgs, ctx: &Ctx, nr: &NotifyReport) -> Result<Reclaim, Error> {
    let (wait, skipped) = wait_for_ledger(a, ctx)?;
    // Nobody recorded and nothing to wait for: no NLM lock can be reclaimed, so keeping
    // new NLM lock requests out for the whole grace period only delays clients.
    let no_clients = nr.clients.is_empty() && nr.malformed.is_empty();
    let nlm_ended = if wait.is_none() && no_clients && !a.wait.no_end_grace {
        std::thread::sleep(a.wait.min_grace);
        Some(grace::end(&ctx.proc, GraceWhich::Nlm)?)
    } else {
        None
    };
    Ok(Reclaim {
        wait,
        skipped,
        nlm_ended,
    })
}

/// Prints the report; the exit code says whether every client and every lock came back.
pub fn finish(a: &TakeoverArgs, ctx: &Ctx, nr: &NotifyReport, rc: &Reclaim) -> Result<Exit, Error> {
    let rep = TakeoverReport {
        notify: nr,
        reclaim: rc.wait.as_ref(),
        reclaim_skipped: rc.skipped.clone(),
        nlm_grace_ended_without_clients: rc.nlm_ended.clone(),
    };
    print(a, ctx, &rep)?;
    let notify_exit = if nr.all_reached() {
        Exit::Ok
    } else {
        Exit::Incomplete
    };
    let wait_exit = match &rc.wait {
        Some(r) if !r.all_reclaimed || super::v4_incomplete(r) => Exit::Incomplete,
        _ => Exit::Ok,
    };
    Ok(notify_exit.and(wait_exit))
}

/// Refuses to notify before the floating IP and nfsd are up: clients told too early fail to
/// reclaim.
pub fn check_ready(a: &TakeoverArgs, ctx: &Ctx) -> Result<(), Error> {
    ip_is_local(a.ip).map_err(|source| Error::IpNotLocal { ip: a.ip, source })?;
    match ctx.proc.nfsd_threads() {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err(Error::NfsdStopped {
            threads: ctx.proc.path(NFSD_THREADS),
        }),
        Err(e) => Err(Error::NfsdUnknown(e)),
    }
}

/// Waits for the ledger's locks when there is a ledger to wait for; otherwise says why not.
fn wait_for_ledger(
    a: &TakeoverArgs,
    ctx: &Ctx,
) -> Result<(Option<WaitReport>, Option<String>), Error> {
    let ledger_dir = a.ledger_dir.clone().unwrap_or_else(|| a.state_dir.clone());
    let path = ledger::ledger_path(&ledger_dir);
    Ok(match &a.fs {
        None => (None, Some("no --fs given".to_string())),
        Some(_) if !path.exists() => (None, Some(format!("no ledger at {}", path.display()))),
        Some(fs) => (
            Some(ledger::wait_reclaim(
                &ctx.proc,
                &ledger_dir,
                fs,
                &wait_opts(&a.wait),
            )?),
            None,
        ),
    })
}

fn print(a: &TakeoverArgs, ctx: &Ctx, rep: &TakeoverReport<'_>) -> Result<(), Error> {
    let out = &ctx.out;
    if out.json {
        return out.emit(rep, |_| Ok(()));
    }
    print_notify(out, rep.notify)?;
    if let Some(r) = rep.reclaim {
        print_wait(out, r)?;
        return Ok(());
    }
    out.emit(rep, |w| {
        writeln!(
            w,
            "reclaim wait skipped: {}",
            rep.reclaim_skipped.as_deref().unwrap_or("")
        )?;
        if let Some(g) = &rep.nlm_grace_ended_without_clients {
            writeln!(
                w,
                "no client recorded: lockd grace ended after {} s ({:?})",
                a.wait.min_grace.as_secs(),
                g.ended
            )?;
        }
        Ok(())
    })
}
