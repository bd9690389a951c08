//! `lockd-recover record`: keep the lock ledger current on the active server, and take the old
//! server's final record (`--final`).

use super::{ip_is_local, Ctx};
use crate::cli::RecordArgs;
use crate::error::{Error, Exit};
use lockd_recover::knobs::ProcRoot;
use lockd_recover::ledger::{self, Ledger, LedgerLock};
use lockd_recover::mount_mark::MountMark;
use std::path::Path;

pub fn run(a: &RecordArgs, ctx: &Ctx) -> Result<Exit, Error> {
    if a.final_record {
        return run_final(a, ctx);
    }
    let mut n = 0u64;
    let mut last: Option<Vec<LedgerLock>> = None;
    loop {
        let l = record_once(&ctx.proc, &a.fs, &a.state_dir, &mut last)?;
        n += 1;
        if a.count.is_some_and(|c| n >= c) {
            report(a, ctx, &l)?;
            return Ok(Exit::Ok);
        }
        std::thread::sleep(a.interval);
    }
}

/// `--final`: refuses while the floating IP is still here, then one final record.
fn run_final(a: &RecordArgs, ctx: &Ctx) -> Result<Exit, Error> {
    if let Some(ip) = a.ip.filter(|&ip| ip_is_local(ip).is_ok()) {
        return Err(Error::IpUpAtFinalRecord(ip));
    }
    let l = record_final(&ctx.proc, &a.fs, &a.state_dir)?;
    report(a, ctx, &l)?;
    Ok(Exit::Ok)
}

fn report(a: &RecordArgs, ctx: &Ctx, l: &Ledger) -> Result<(), Error> {
    ctx.out.emit(l, |w| {
        write!(
            w,
            "{} locks recorded in {}",
            l.locks.len(),
            ledger::ledger_path(&a.state_dir).display()
        )?;
        match &l.final_mount {
            Some(m) => writeln!(
                w,
                " (final: filesystem {}, mount count {})",
                m.uuid, m.mount_count
            ),
            None => writeln!(w),
        }
    })
}

/// One snapshot of the locks on `fs` written to the ledger in `state_dir` (here and in the
/// `nfs-locks` agent's recorder); logs when the set of locks changed since `last`.
pub fn record_once(
    proc: &ProcRoot,
    fs: &Path,
    state_dir: &Path,
    last: &mut Option<Vec<LedgerLock>>,
) -> Result<Ledger, Error> {
    let l = ledger::snapshot(proc, fs)?;
    ledger::write(state_dir, &l)?;
    if last.as_ref() != Some(&l.locks) {
        tracing::info!(locks = l.locks.len(), "ledger updated");
        *last = Some(l.locks.clone());
    }
    Ok(l)
}

/// The old server's last record, once its service IP is down (`record --final`, the
/// `nfs-locks` worker at its stop, the agent's stop for a dead worker): marked with the mount
/// of `fs` when its mark can be read, a normal record otherwise
/// ([`ledger::final_snapshot`]).
pub fn record_final(proc: &ProcRoot, fs: &Path, state_dir: &Path) -> Result<Ledger, Error> {
    let l = ledger::final_snapshot(proc, fs, MountMark::read)?;
    ledger::write(state_dir, &l)?;
    tracing::info!(
        locks = l.locks.len(),
        "final ledger record{}",
        if l.final_mount.is_some() {
            ""
        } else {
            " (unmarked: its age will count)"
        }
    );
    Ok(l)
}
