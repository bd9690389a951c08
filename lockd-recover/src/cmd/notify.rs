//! `lockd-recover notify`: SM_NOTIFY to every recorded client.

use super::{notify_config, print_notify, Ctx};
use crate::cli::NotifyArgs;
use crate::error::{Error, Exit};
use lockd_recover::notify;

pub fn run(a: &NotifyArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let cfg = notify_config(&a.state_dir, a.source_addr, &a.opts, ctx.proc.root());
    let r = notify::run(&cfg)?;
    print_notify(&ctx.out, &r)
}
