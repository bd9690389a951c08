//! `lockd-recover handoff`: the old server's side of a failover.

use super::{ip_is_local, Ctx};
use crate::cli::HandoffArgs;
use crate::error::{Error, Exit};
use lockd_recover::knobs::ProcRoot;
use lockd_recover::release::{self, ReleaseMethod, ReleaseReport};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

pub fn run(a: &HandoffArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let methods = [ReleaseMethod::UnlockIp, ReleaseMethod::UnlockFs];
    let r = release_after_ip_down(&ctx.proc, a.ip, &a.fs, &methods, a.settle)?;
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

/// The old server's release (here and in the `nfs-locks` agent's stop): refuses while `ip` is
/// still configured on this node (a lock granted after the release would be lost), then
/// releases with `methods` and verifies in /proc/locks that no lock remains on `fs`.
pub fn release_after_ip_down(
    proc: &ProcRoot,
    ip: IpAddr,
    fs: &Path,
    methods: &[ReleaseMethod],
    settle: Duration,
) -> Result<ReleaseReport, Error> {
    if ip_is_local(ip).is_ok() {
        return Err(Error::IpStillLocal(ip));
    }
    Ok(release::release(proc, Some(ip), Some(fs), methods, settle)?)
}
