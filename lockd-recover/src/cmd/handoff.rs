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
    if ip_is_local(a.ip).is_ok() {
        return Err(Error::IpStillLocal(a.ip));
    }
    stop_nfsd_for_v4(&ctx.proc, &a.fs, a.stop_nfsd)?;
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

/// Stops nfsd (0 threads) when `force` or when an NFSv4 client holds a lock stateid on the
/// filesystem of `fs`: NFSv4 state is dropped only by stopping nfsd on kernels without the
/// admin-revoke series (unlock_filesystem releases NLM locks only there). With the IP down and
/// the export gone this is a clean server shutdown; the clients reclaim on the next server.
/// The release after it checks /proc/locks as always. Returns the thread count it stopped, if
/// it stopped nfsd.
pub fn stop_nfsd_for_v4(proc: &ProcRoot, fs: &Path, force: bool) -> Result<Option<u64>, Error> {
    let dev = lockd_recover::knobs::fs_dev(fs).ok();
    let v4_locks = lockd_recover::v4state::read_clients(proc)
        .map_err(lockd_recover::ledger::LedgerError::from)?
        .iter()
        .any(|c| c.locks.iter().any(|l| Some(l.dev) == dev));
    let threads = proc.nfsd_threads().unwrap_or(0);
    if !(force || v4_locks) || threads == 0 {
        return Ok(None);
    }
    proc.write(NFSD_THREADS, "0\n")?;
    tracing::info!(
        "nfsd stopped (0 threads) before the release: NFSv4 locks on {}",
        fs.display()
    );
    Ok(Some(threads))
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
