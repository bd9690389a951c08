//! holder=mmpd: the mmpd this agent starts on the MMP area, detached in its own process group
//! and tracked by a pid file in the agent state directory (libmmp::ocf::worker), so Pacemaker
//! killing a timed-out agent leaves it running for the next start or stop to find. Whether it
//! holds the area comes from its own state file in its run directory.

use super::params::{Config, MmpdParams};
use super::{generic, start, Budget, Res};
use crate::cli::FenceFlags;
use libmmp::host::run_dir::{self, HolderPhase};
use libmmp::ocf::find_program;
use libmmp::ocf::worker::PidFile;
use libmmp::ondisk::handoff::format_nonce;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What mmpd's start may take after its claim (exec, lock, first state file).
const SPAWN_MARGIN: Duration = Duration::from_secs(3);
/// The longest a stop waits for mmpd to release the area after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// mmpd beside this binary (both are in /usr/sbin, or in cargo's target directory), else on
/// PATH.
pub fn program() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("mmpd")))
        .filter(|p| p.is_file())
        .or_else(|| find_program("mmpd"))
}

/// Named after the area's path, so a stop finds it even when the area has vanished.
fn worker_name(area: &Path) -> String {
    format!(
        "mmp-fs-mmpd{}",
        area.display().to_string().replace('/', "_")
    )
}

fn pid_file(m: &MmpdParams) -> PidFile {
    PidFile::new(&libmmp::ocf::state_dir(), &worker_name(&m.area))
}

fn log_path(m: &MmpdParams) -> PathBuf {
    libmmp::ocf::state_dir().join(format!("{}.log", worker_name(&m.area)))
}

/// Make sure our mmpd holds the area: start it unless it runs (a start killed at its timeout
/// leaves it running), then wait until its state file says `holding`. One we start claims the
/// area the normal way, or with `handoff`'s nonce as the target of a planned handoff.
pub fn ensure_holding(cfg: &Config, m: &MmpdParams, handoff: Option<u64>, budget: &Budget) -> Res {
    let pf = pid_file(m);
    let log = log_path(m);
    let log_from = std::fs::metadata(&log).map_or(0, |md| md.len());
    let pid = match pf.running() {
        Some(r) => r.pid,
        None => spawn(cfg, m, &pf, handoff, budget)?,
    };
    wait_holding(cfg, m, &pf, pid, log_from, budget)
}

fn spawn(
    cfg: &Config,
    m: &MmpdParams,
    pf: &PidFile,
    handoff: Option<u64>,
    budget: &Budget,
) -> Res<u32> {
    let area = m.area.display();
    if let Ok(Some(pid)) = run_dir::lock_holder(&cfg.run_dir, &m.area) {
        return Err(generic(format!(
            "{area}: held by an mmpd on this node that this resource did not start{}: stop it (systemctl stop mmpd@NAME) and let the resource hold the area",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        )));
    }
    let fence = match handoff {
        // The handoff's claim has no watch to fit, and excludes the fence-confirmed one.
        Some(_) => FenceFlags::default(),
        None => start::fits_or_refuse(&m.area, SPAWN_MARGIN, budget, &cfg.takeover)?,
    };
    let prog = program().ok_or_else(|| generic("mmpd is not installed on this node"))?;
    let mut cmd = command(&prog, cfg, m, &fence, handoff);
    let log = log_path(m);
    let r = pf
        .spawn(&mut cmd, &log)
        .map_err(|e| generic(format!("cannot start {}: {e}", prog.display())))?;
    tracing::info!(
        "started mmpd (pid {}) on {area}, fence {}{}; its log: {}",
        r.pid,
        m.fence,
        handoff.map_or(String::new(), |n| format!(
            ", handoff nonce {}",
            format_nonce(n)
        )),
        log.display()
    );
    Ok(r.pid)
}

/// mmpd's command line: the fence, the fence-confirmed claim (`fence`) or the handoff's.
fn command(
    prog: &Path,
    cfg: &Config,
    m: &MmpdParams,
    fence: &FenceFlags,
    handoff: Option<u64>,
) -> Command {
    let mut cmd = Command::new(prog);
    cmd.arg("--run-dir")
        .arg(&cfg.run_dir)
        .args(["--fence", m.fence]);
    if let Some(c) = &m.fence_command {
        cmd.arg("--fence-command").arg(c);
    }
    if let Some(d) = &m.watchdog_device {
        cmd.arg("--watchdog-device").arg(d);
    }
    if let Some(t) = m.watchdog_timeout {
        cmd.arg("--watchdog-timeout").arg(t.to_string());
    }
    if let Some(node) = &fence.fenced {
        cmd.arg("--fenced").arg(node);
        for (c, n) in &fence.node_map {
            cmd.arg("--node-map").arg(format!("{c}={n}"));
        }
    }
    if let Some(n) = handoff {
        cmd.args(["--handoff", &format_nonce(n)]);
    }
    // Not under systemd's notify protocol, and not keeping any mount point busy.
    cmd.arg(&m.area)
        .current_dir("/")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    cmd
}

fn wait_holding(
    cfg: &Config,
    m: &MmpdParams,
    pf: &PidFile,
    pid: u32,
    log_from: u64,
    budget: &Budget,
) -> Res {
    let area = m.area.display();
    let mut noted = Instant::now();
    loop {
        let st = run_dir::local_holder(&cfg.run_dir, &m.area).ok().flatten();
        let phase = st.as_ref().filter(|s| s.pid == pid).and_then(|s| s.state);
        if phase == Some(HolderPhase::Holding) {
            tracing::info!("mmpd (pid {pid}) holds {area}");
            return Ok(());
        }
        if pf.running().is_none() {
            return Err(generic(format!(
                "mmpd exited before it held {area}: {}",
                last_error(&log_path(m), log_from)
            )));
        }
        if budget.expired() {
            let _ = pf.stop(Signal::SIGTERM, Duration::from_secs(5));
            return Err(generic(format!(
                "mmpd did not hold {area} within the start timeout (stopped it)"
            )));
        }
        if noted.elapsed() >= PROGRESS_EVERY {
            noted = Instant::now();
            let what = phase.map_or("starting".to_string(), |p| p.to_string());
            tracing::info!("waiting for mmpd (pid {pid}) to hold {area}: {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// The last error line mmpd logged since `from` (its refusal names the other node).
fn last_error(log: &Path, from: u64) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains("ERROR"))
        .or(lines.last())
        .map_or("no message (see its log)", |l| l.trim());
    // Drop tracing's "TIMESTAMP  LEVEL " prefix.
    line.split_once("ERROR ")
        .map_or(line, |(_, rest)| rest.trim())
        .to_string()
}

/// Stop our mmpd: SIGTERM, which releases the area (CLEAN) and exits. One that does not exit
/// in time is killed: the area then stays live and goes stale, which keeps other nodes waiting
/// their full wait, never unsafe (the filesystem is already unmounted).
pub fn stop(m: &MmpdParams, budget: &Budget) -> Res {
    let pf = pid_file(m);
    let Some(r) = pf.running() else {
        return Ok(());
    };
    let area = m.area.display();
    tracing::info!("stopping mmpd (pid {}) on {area}: it writes CLEAN", r.pid);
    let wait = budget
        .remaining()
        .map_or(STOP_WAIT, |left| {
            left.saturating_sub(Duration::from_secs(2))
        })
        .min(STOP_WAIT);
    match pf.stop(Signal::SIGTERM, wait) {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!("mmpd (pid {}) did not exit after SIGTERM; killing it: {area} stays live until it goes stale", r.pid);
            let _ = pf.stop(Signal::SIGKILL, Duration::from_secs(2));
            Ok(())
        }
        Err(e) => Err(generic(format!("cannot signal mmpd (pid {}): {e}", r.pid))),
    }
}

/// Whether our mmpd runs (whatever it is doing).
pub fn running(m: &MmpdParams) -> bool {
    pid_file(m).running().is_some()
}

/// Monitor depth 10: our mmpd is alive and its state file says it holds the area.
pub fn check_holding(cfg: &Config, m: &MmpdParams) -> Result<(), String> {
    let area = m.area.display();
    let Some(r) = pid_file(m).running() else {
        return Err(format!(
            "mmpd is not running on {area}: the area is not held (its log: {})",
            log_path(m).display()
        ));
    };
    match run_dir::local_holder(&cfg.run_dir, &m.area) {
        Ok(Some(st)) if st.pid == r.pid && st.state == Some(HolderPhase::Holding) => Ok(()),
        Ok(Some(st)) => Err(format!(
            "mmpd (pid {}) on {area} is {}{}",
            r.pid,
            st.state
                .map_or("in an unknown state".to_string(), |p| p.to_string()),
            if st.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", st.reason)
            }
        )),
        Ok(None) => Err(format!(
            "mmpd (pid {}) holds no lock on {area} in {}",
            r.pid,
            cfg.run_dir.display()
        )),
        Err(e) => Err(format!("cannot read mmpd's state for {area}: {e}")),
    }
}
