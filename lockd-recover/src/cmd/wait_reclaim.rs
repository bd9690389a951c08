//! `lockd-recover wait-reclaim`: wait for the ledger's locks, then end grace early.

use super::{print_wait, wait_opts, Ctx};
use crate::cli::WaitReclaimArgs;
use crate::error::{Error, Exit};
use lockd_recover::ledger;

pub fn run(a: &WaitReclaimArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let fs = match &a.fs {
        Some(f) => f.clone(),
        None => ledger::read(&a.state_dir)?.fs,
    };
    let r = ledger::wait_reclaim(&ctx.proc, &a.state_dir, &fs, &wait_opts(&a.wait))?;
    print_wait(&ctx.out, &r)
}
