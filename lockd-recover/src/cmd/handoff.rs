//! `lockd-recover handoff`: the old server's side of a failover.

use super::{ip_is_local, Ctx};
use crate::cli::HandoffArgs;
use crate::error::{Error, Exit};
use lockd_recover::knobs::{ProcRoot, NFSD_THREADS};
use lockd_recover::release::{self, ReleaseMethod, ReleaseReport};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

pub fn run(a: &HandoffArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let methods = [ReleaseMethod::UnlockIp, ReleaseMethod::UnlockFs];
    if a.stop_nfsd {
        // NFSv4 state (opens, locks, delegations) is dropped only by stopping nfsd on kernels
        // without the admin-revoke series: unlock_filesystem releases NLM locks only there.
        // Stopping nfsd with the IP down and the export gone is a clean server shutdown; the
        // clients reclaim on the next server. Checked below like any release.
        if ip_is_local(a.ip).is_ok() {
            return Err(Error::IpStillLocal(a.ip));
        }
        ctx.proc.write(NFSD_THREADS, "0\n")?;
        tracing::info!("nfsd stopped (0 threads) before the release");
    }
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
