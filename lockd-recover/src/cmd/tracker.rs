//! `lockd-recover tracker`: nfsdcld's NFSv4 client database, checked read-only before nfsd
//! starts.

use super::Ctx;
use crate::cli::TrackerArgs;
use crate::error::{Error, Exit};
use lockd_recover::tracker::{self, TrackerCheck, TrackerReport};

/// The check the tracker subcommand and `start-nfsd` share.
pub fn check(a: &TrackerArgs, ctx: &Ctx) -> Result<TrackerReport, Error> {
    let r = tracker::check(
        &ctx.proc,
        &TrackerCheck {
            storage_dir: a.storage_dir.clone(),
            shared: a.shared.clone(),
            root: "/".into(),
            require_nfsdcld: !a.no_nfsdcld_check,
        },
    )?;
    for w in &r.warnings {
        tracing::warn!("{w}");
        // Loud even without -v: an empty tracker silently loses every v4 client's locks.
        if !ctx.out.json {
            eprintln!("lockd-recover: WARNING: {w}");
        }
    }
    Ok(r)
}

pub fn print(ctx: &Ctx, r: &TrackerReport) -> Result<(), Error> {
    ctx.out.emit(r, |w| {
        writeln!(
            w,
            "{}: schema {}, epochs current {} recovery {}{}",
            r.db.display(),
            r.schema_version,
            r.current_epoch,
            r.recovery_epoch,
            if r.restarted_in_grace {
                " (restarted in grace)"
            } else {
                ""
            }
        )?;
        if let Some(pid) = r.nfsdcld_pid {
            writeln!(w, "nfsdcld pid {pid} has it open")?;
        }
        writeln!(
            w,
            "{} NFSv4 clients may reclaim (table {}):",
            r.clients.len(),
            r.table
        )?;
        for c in &r.clients {
            writeln!(w, "  {c}")?;
        }
        Ok(())
    })
}

pub fn run(a: &TrackerArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let r = check(a, ctx)?;
    print(ctx, &r)?;
    Ok(Exit::Ok)
}
