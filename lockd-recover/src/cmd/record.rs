//! `lockd-recover record`: keep the lock ledger current on the active server, and take the old
//! server's final record (`--final`).

use super::{ip_is_local, Ctx};
use crate::cli::RecordArgs;
use crate::error::{Error, Exit};
use lockd_recover::knobs::ProcRoot;
use lockd_recover::ledger::{self, KernelLocks, Ledger, LedgerLock};
use lockd_recover::mount_mark::MountMark;
use std::path::Path;

pub fn run(a: &RecordArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let targets = targets(a)?;
    if a.final_record {
        return run_final(a, &targets, ctx);
    }
    let mut n = 0u64;
    let mut last: Vec<Option<Vec<LedgerLock>>> = vec![None; targets.len()];
    loop {
        let kernel = KernelLocks::read(&ctx.proc)?;
        let mut ledgers = Vec::with_capacity(targets.len());
        for (t, last) in targets.iter().zip(&mut last) {
            ledgers.push(record_with(&kernel, t.fs, t.state_dir, last)?);
        }
        n += 1;
        if a.count.is_some_and(|c| n >= c) {
            report(ctx, &targets, &ledgers)?;
            return Ok(Exit::Ok);
        }
        std::thread::sleep(a.interval);
    }
}

/// One filesystem and the directory its ledger goes to (`--fs` and `--state-dir` of the same
/// position).
struct Target<'a> {
    fs: &'a Path,
    state_dir: &'a Path,
}

/// The pairs of `--fs` and `--state-dir`: as many of one as of the other, and no directory
/// twice (two ledgers in one directory would overwrite each other).
fn targets(a: &RecordArgs) -> Result<Vec<Target<'_>>, Error> {
    if a.fs.len() != a.state_dir.len() {
        return Err(Error::RecordPairs {
            fs: a.fs.len(),
            dirs: a.state_dir.len(),
        });
    }
    for (i, d) in a.state_dir.iter().enumerate() {
        if a.state_dir[..i].contains(d) {
            return Err(Error::RecordSharedDir(d.clone()));
        }
    }
    Ok(a.fs
        .iter()
        .zip(&a.state_dir)
        .map(|(fs, state_dir)| Target { fs, state_dir })
        .collect())
}

/// `--final`: refuses while the floating IP is still here, then one final record per
/// filesystem.
fn run_final(a: &RecordArgs, targets: &[Target], ctx: &Ctx) -> Result<Exit, Error> {
    if let Some(ip) = a.ip.filter(|&ip| ip_is_local(ip).is_ok()) {
        return Err(Error::IpUpAtFinalRecord(ip));
    }
    let mut ledgers = Vec::with_capacity(targets.len());
    for t in targets {
        ledgers.push(record_final(&ctx.proc, t.fs, t.state_dir)?);
    }
    report(ctx, targets, &ledgers)?;
    Ok(Exit::Ok)
}

/// One filesystem: its ledger (JSON) and a line; several: an array and a line each.
fn report(ctx: &Ctx, targets: &[Target], ledgers: &[Ledger]) -> Result<(), Error> {
    let human = |w: &mut dyn std::io::Write| {
        for (t, l) in targets.iter().zip(ledgers) {
            write!(
                w,
                "{} locks recorded in {}",
                l.locks.len(),
                ledger::ledger_path(t.state_dir).display()
            )?;
            match &l.final_mount {
                Some(m) => writeln!(
                    w,
                    " (final: filesystem {}, mount count {})",
                    m.uuid, m.mount_count
                )?,
                None => writeln!(w)?,
            }
        }
        Ok(())
    };
    match ledgers {
        [one] => ctx.out.emit(one, human),
        all => ctx.out.emit(&all, human),
    }
}

/// One snapshot of the locks on `fs` written to the ledger in `state_dir` (here and in the
/// `nfs-locks` agent's recorder); logs when the set of locks changed since `last`.
pub fn record_once(
    proc: &ProcRoot,
    fs: &Path,
    state_dir: &Path,
    last: &mut Option<Vec<LedgerLock>>,
) -> Result<Ledger, Error> {
    record_with(&KernelLocks::read(proc)?, fs, state_dir, last)
}

/// [`record_once`] from tables already read (one read for every filesystem of a recorder).
fn record_with(
    kernel: &KernelLocks,
    fs: &Path,
    state_dir: &Path,
    last: &mut Option<Vec<LedgerLock>>,
) -> Result<Ledger, Error> {
    let l = kernel.snapshot(fs)?;
    ledger::write(state_dir, &l)?;
    if last.as_ref() != Some(&l.locks) {
        tracing::info!(locks = l.locks.len(), fs = %fs.display(), "ledger updated");
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
