//! `lockd-recover handoff`: the old server's side of a failover.

use super::{ip_is_local, Ctx};
use crate::cli::HandoffArgs;
use crate::error::{Error, Exit};
use lockd_recover::release::{self, ReleaseMethod};

pub fn run(a: &HandoffArgs, ctx: &Ctx) -> Result<Exit, Error> {
    if ip_is_local(a.ip).is_ok() {
        return Err(Error::IpStillLocal(a.ip));
    }
    let r = release::release(
        &ctx.proc,
        Some(a.ip),
        Some(&a.fs),
        &[ReleaseMethod::UnlockIp, ReleaseMethod::UnlockFs],
        a.settle,
    )?;
    ctx.out.emit(&r, |w| {
        for (p, v) in &r.written {
            writeln!(w, "wrote {:?} to {}", v.trim_end(), p.display())?;
        }
        writeln!(
            w,
            "verified: no lock left on {}; safe to unmount and hand over",
            a.fs.display()
        )
    })?;
    Ok(Exit::Ok)
}
