//! `lockd-recover record`: keep the lock ledger current on the active server.

use super::Ctx;
use crate::cli::RecordArgs;
use crate::error::{Error, Exit};
use lockd_recover::knobs::ProcRoot;
use lockd_recover::ledger::{self, Ledger, LedgerLock};
use std::path::Path;

pub fn run(a: &RecordArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let mut n = 0u64;
    let mut last: Option<Vec<LedgerLock>> = None;
    loop {
        let l = record_once(&ctx.proc, &a.fs, &a.state_dir, &mut last)?;
        n += 1;
        if a.count.is_some_and(|c| n >= c) {
            ctx.out.emit(&l, |w| {
                writeln!(
                    w,
                    "{} locks recorded in {}",
                    l.locks.len(),
                    ledger::ledger_path(&a.state_dir).display()
                )
            })?;
            return Ok(Exit::Ok);
        }
        std::thread::sleep(a.interval);
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
    let l = ledger::snapshot(proc, fs)?;
    ledger::write(state_dir, &l)?;
    if last.as_ref() != Some(&l.locks) {
        tracing::info!(locks = l.locks.len(), "ledger updated");
        *last = Some(l.locks.clone());
    }
    Ok(l)
}
