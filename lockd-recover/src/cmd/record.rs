//! `lockd-recover record`: keep the lock ledger current on the active server.

use super::Ctx;
use crate::cli::RecordArgs;
use crate::error::{Error, Exit};
use lockd_recover::ledger::{self, LedgerLock};

pub fn run(a: &RecordArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let mut n = 0u64;
    let mut last: Option<Vec<LedgerLock>> = None;
    loop {
        let l = ledger::snapshot(&ctx.proc, &a.fs)?;
        ledger::write(&a.state_dir, &l)?;
        if last.as_ref() != Some(&l.locks) {
            tracing::info!(locks = l.locks.len(), "ledger updated");
            last = Some(l.locks.clone());
        }
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
