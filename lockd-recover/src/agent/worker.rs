//! The `nfs-locks` worker: one detached process (this binary, called as `nfs-locks worker`)
//! that waits for the service IP, runs the takeover (`cmd::takeover`'s steps: notify from the
//! IP, wait for the ledger's locks, end grace), then records the ledger every record_interval
//! (`cmd::record::record_once`) until SIGTERM, and takes the final record before it exits
//! (`cmd::record::record_final`: the agent's stop sends SIGTERM once the IP is down).
//!
//! Its phase is in the status file (one line, replaced through a rename): waiting-ip,
//! notifying, reclaiming, recording, stopped (after the final record) or failed:REASON. The
//! agent's monitor reads it; its stop reads it to know whether the final record was taken.

use super::nfs_locks::{self, Params};
use super::records;
use super::Ctx;
use crate::cli::{Cli, Command, TakeoverArgs};
use crate::cmd::{self, record, takeover};
use clap::Parser;
use lockd_recover::statd::{RecordDir, StatdDir};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::ffi::OsString;
use std::fs;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// The hidden action that runs the worker (never called by Pacemaker).
pub const ACTION: &str = "worker";
/// How long the worker waits for the service IP (IPaddr2 starts right after nfs-locks).
pub const IP_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    WaitingIp,
    Notifying,
    Reclaiming,
    Recording,
    Stopped,
    Failed(String),
}

impl Phase {
    pub fn text(&self) -> String {
        match self {
            Phase::WaitingIp => "waiting-ip".into(),
            Phase::Notifying => "notifying".into(),
            Phase::Reclaiming => "reclaiming".into(),
            Phase::Recording => "recording".into(),
            Phase::Stopped => "stopped".into(),
            Phase::Failed(r) => format!("failed:{}", r.replace('\n', " ")),
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        let s = s.trim_end_matches('\n');
        if let Some(r) = s.strip_prefix("failed:") {
            return Some(Phase::Failed(r.to_string()));
        }
        Some(match s {
            "waiting-ip" => Phase::WaitingIp,
            "notifying" => Phase::Notifying,
            "reclaiming" => Phase::Reclaiming,
            "recording" => Phase::Recording,
            "stopped" => Phase::Stopped,
            _ => return None,
        })
    }
}

/// The phase in a status file; None when there is none (never started, or stopped).
pub fn read_phase(path: &Path) -> Option<Phase> {
    Phase::parse(&fs::read_to_string(path).ok()?)
}

pub fn write_phase(path: &Path, phase: &Phase) -> std::io::Result<()> {
    let tmp = path.with_extension("status.tmp");
    fs::write(&tmp, format!("{}\n", phase.text()))?;
    fs::rename(&tmp, path)
}

fn set(path: &Path, phase: &Phase) {
    tracing::info!(phase = %phase.text(), "nfs-locks worker");
    if let Err(e) = write_phase(path, phase) {
        tracing::error!("cannot write {}: {e}", path.display());
    }
}

/// The worker's main: 0 after a final record on SIGTERM, 1 when it failed (the phase says why).
pub fn run(ctx: &Ctx) -> u8 {
    let status = ctx.state_file("nfs-locks", "status");
    let p = match nfs_locks::params(&ctx.env) {
        Ok(p) => p,
        Err(o) => {
            set(&status, &Phase::Failed(o.reason.unwrap_or_default()));
            return 1;
        }
    };
    if let Err(reason) = takeover_steps(ctx, &p, &status) {
        tracing::error!("{reason}");
        set(&status, &Phase::Failed(reason));
        return 1;
    }
    record_loop(ctx, &p, &status)
}

/// Waits for the IP, notifies and waits for the reclaims. Only a missing IP, nfsd not running
/// or an unusable statd directory fail; a reclaim wait that cannot be done (no, stale or
/// corrupt ledger) leaves grace to run out by itself.
fn takeover_steps(ctx: &Ctx, p: &Params, status: &Path) -> Result<(), String> {
    set(status, &Phase::WaitingIp);
    wait_for_ip(p, IP_WAIT)?;
    let a = takeover_args(p)?;
    let cctx = cmd::Ctx {
        out: cmd::Out { json: false },
        proc: ctx.proc.clone(),
    };
    takeover::check_ready(&a, &cctx).map_err(|e| e.to_string())?;
    set(status, &Phase::Notifying);
    restore_kept(&p.statd_dir)?;
    let nr = takeover::notify_clients(&a, &cctx).map_err(|e| e.to_string())?;
    set(status, &Phase::Reclaiming);
    match takeover::reclaim(&a, &cctx, &nr) {
        Ok(rc) => match takeover::finish(&a, &cctx, &nr, &rc) {
            Ok(exit) => tracing::info!("takeover done: {exit:?}"),
            Err(e) => tracing::warn!("takeover report: {e}"),
        },
        Err(e) => tracing::warn!("no early end of grace (it runs out by itself): {e}"),
    }
    Ok(())
}

/// Puts back the client records nfs-grace kept that `sm/` lacks: rpc.statd's own notify at its
/// start may have deleted them (see [`records`]).
fn restore_kept(statd_dir: &Path) -> Result<(), String> {
    let d = StatdDir::open(statd_dir).map_err(|e| e.to_string())?;
    let n = records::restore(&d).map_err(|e| {
        format!(
            "cannot restore the kept client records into {}: {e}",
            d.dir(RecordDir::Sm).display()
        )
    })?;
    if n > 0 {
        tracing::warn!("{n} client records restored from {}: rpc.statd notified and deleted them at its start (run it with --no-notify: nfs.conf [statd] no-notify=1)", records::SAVED);
    }
    Ok(())
}

fn wait_for_ip(p: &Params, limit: Duration) -> Result<(), String> {
    let until = Instant::now() + limit;
    while cmd::ip_is_local(p.ip).is_err() {
        if Instant::now() >= until {
            return Err(format!(
                "the service IP {} did not come up on this node within {} s after nfs-locks started: IPaddr2 must follow nfs-locks in the group",
                p.ip,
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The takeover's options, parsed by the CLI's own definitions (one place for the defaults).
fn takeover_args(p: &Params) -> Result<TakeoverArgs, String> {
    let secs = |d: Duration| OsString::from(d.as_secs().to_string());
    let mut v: Vec<OsString> = vec!["lockd-recover".into(), "takeover".into()];
    v.extend([
        "--state-dir".into(),
        p.statd_dir.clone().into(),
        "--ip".into(),
        p.ip.to_string().into(),
        "--fs".into(),
        p.fs.clone().into(),
        "--ledger-dir".into(),
        p.ledger_dir.clone().into(),
        "--deadline".into(),
        secs(p.notify_deadline),
        "--timeout".into(),
        secs(p.reclaim_timeout),
        "--min-grace".into(),
        secs(p.min_grace),
    ]);
    if let Some(m) = &p.mon_name {
        v.extend(["--mon-name".into(), m.into()]);
    }
    let cli = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
    match cli.command {
        Command::Takeover(a) => Ok(a),
        _ => Err("internal: not a takeover command line".into()),
    }
}

/// Records every record_interval until SIGTERM/SIGINT, then once more. The signals are blocked
/// only from here on: before, SIGTERM ends the worker at once, with nothing recorded (a ledger
/// taken before the reclaims are done would miss locks).
fn record_loop(ctx: &Ctx, p: &Params, status: &Path) -> u8 {
    let sfd = match block_signals() {
        Ok(s) => s,
        Err(e) => {
            set(status, &Phase::Failed(format!("cannot block signals: {e}")));
            return 1;
        }
    };
    let mut last = None;
    let mut first = true;
    loop {
        match record::record_once(&ctx.proc, &p.fs, &p.ledger_dir, &mut last) {
            Ok(_) if first => {
                set(status, &Phase::Recording);
                first = false;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("ledger record failed: {e}"),
        }
        if signalled(&sfd, p.record_interval) {
            break;
        }
    }
    match last_record(ctx, p, &mut last) {
        Ok(_) => {
            set(status, &Phase::Stopped);
            0
        }
        Err(e) => {
            tracing::error!("final ledger record failed: {e}");
            1
        }
    }
}

/// The record at a stop signal: final once the service IP is down (the agent's stop signals
/// only then); a signal from anyone else while the IP is up gets a normal record, since locks
/// may still be granted after it.
fn last_record(
    ctx: &Ctx,
    p: &Params,
    last: &mut Option<Vec<lockd_recover::ledger::LedgerLock>>,
) -> Result<lockd_recover::ledger::Ledger, crate::error::Error> {
    if cmd::ip_is_local(p.ip).is_ok() {
        tracing::warn!(
            "stopped while the service IP {} is still up: the last ledger record is a normal one, not final",
            p.ip
        );
        return record::record_once(&ctx.proc, &p.fs, &p.ledger_dir, last);
    }
    record::record_final(&ctx.proc, &p.fs, &p.ledger_dir)
}

fn block_signals() -> nix::Result<SignalFd> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// Sleeps up to `wait`; true when a stop signal arrived.
fn signalled(sfd: &SignalFd, wait: Duration) -> bool {
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
    let _ = nix::poll::poll(&mut fds, PollTimeout::from(ms));
    matches!(sfd.read_signal(), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip_through_the_status_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.status");
        assert_eq!(read_phase(&f), None);
        for ph in [
            Phase::WaitingIp,
            Phase::Notifying,
            Phase::Reclaiming,
            Phase::Recording,
            Phase::Stopped,
            Phase::Failed("no IP: a\nb".into()),
        ] {
            write_phase(&f, &ph).unwrap();
            let back = read_phase(&f).unwrap();
            assert_eq!(back.text(), ph.text());
        }
        assert_eq!(Phase::parse("bogus"), None);
    }
}
