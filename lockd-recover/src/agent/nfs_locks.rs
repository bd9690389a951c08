//! `nfs-locks`: NFSv3 lock recovery of one service IP and exported filesystem. Start spawns
//! the worker ([`super::worker`]); stop (after IPaddr2 stopped, while nfsd still runs) stops
//! it, takes the final ledger record if it could not, and releases this node's NLM locks on the
//! filesystem, verified gone in /proc/locks.

use super::checks;
use super::worker::{self, Phase};
use super::Ctx;
use crate::cmd::{self, handoff, record};
use libmmp::ocf::metadata::{ActionSpec, Agent, Param};
use libmmp::ocf::worker::PidFile;
use libmmp::ocf::{Action, Env, Outcome, Status};
use lockd_recover::ledger;
use lockd_recover::release::ReleaseMethod;
use nix::sys::signal::Signal;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NAME: &str = "nfs-locks";
const ORDER: &str = "fs (mmp-fs), nfs-grace, nfsserver, exportfs, nfs-locks, IPaddr2";
/// How long lockd may take to drop the released locks before stop fails.
const RELEASE_SETTLE: Duration = Duration::from_secs(5);

const PARAMS: &[Param] = &[
    Param::string("ip", "Service IP", "The floating IP clients mount from (the IPaddr2 resource right after this one): notifies are sent from it, and its NLM locks released on stop.").required().unique(),
    Param::string("fs", "Exported filesystem", "The exported directory (on the shared filesystem): its locks are recorded in the ledger and released on stop.").required(),
    Param::string("statd_dir", "statd directory", "rpc.statd's directory on the shared filesystem (as given to nfs-grace): the clients to notify.").required(),
    Param::string("ledger_dir", "Ledger directory", "Where the lock ledger is kept, on the shared filesystem. Default: statd_dir."),
    Param::string("mon_name", "Name sent to clients", "The name sent in SM_NOTIFY: the name clients mounted the service by (DNS name of the IP). Default: each client record's my_name."),
    Param::string("min_grace", "Minimum grace (s)", "Grace never ends sooner than this after the notify, so clients with no recorded lock can still reclaim.").integer().default("10"),
    Param::string("reclaim_timeout", "Reclaim wait (s)", "How long to wait for the ledger's locks; then grace runs out by itself.").integer().default("90"),
    Param::string("record_interval", "Ledger interval (s)", "How often the ledger is recorded while the service runs (1 to 60 s); monitor fails when it is older than 3 intervals.").integer().default("2"),
    Param::string("notify_deadline", "Notify deadline (s)", "Give up notifying unreachable clients after this (they stay in sm.bak/ for the next notify).").integer().default("60"),
];

const ACTIONS: &[ActionSpec] = &[
    ActionSpec::new("start", 30),
    ActionSpec::new("stop", 60),
    ActionSpec::monitor(20, 10, 0),
    ActionSpec::new("validate-all", 20),
    ActionSpec::new("meta-data", 5),
];

pub const AGENT: Agent = Agent {
    name: NAME,
    shortdesc: "NFSv3 lock recovery: notify, early end of grace, lock ledger, verified release",
    longdesc: "Recovers the NFSv3 (NLM) locks of one service IP and exported filesystem across a failover. Start spawns a worker that waits for the service IP (up to 120 s), notifies every client recorded in statd_dir from it, waits until every lock of the ledger is held again and ends grace early, then records the ledger every record_interval. Stop (run after the IP is down, while nfsd still runs) stops the worker, which records the ledger a last time, and releases this node's NLM locks on the filesystem (unlock_ip, unlock_filesystem), verified in /proc/locks; it refuses while the IP is still up. Group order: fs (mmp-fs), nfs-grace, nfsserver, exportfs, nfs-locks, IPaddr2.",
    params: PARAMS,
    actions: ACTIONS,
};

/// The parameters, checked for form only (nothing on this node is looked at).
pub struct Params {
    pub ip: IpAddr,
    pub fs: PathBuf,
    pub statd_dir: PathBuf,
    pub ledger_dir: PathBuf,
    pub mon_name: Option<String>,
    pub min_grace: Duration,
    pub reclaim_timeout: Duration,
    pub record_interval: Duration,
    pub notify_deadline: Duration,
}

pub fn params(env: &Env) -> Result<Params, Outcome> {
    env.reject_unknown(PARAMS)?;
    let ip_text = env.required("ip")?;
    let ip = ip_text
        .parse()
        .map_err(|_| configured(format!("parameter ip={ip_text:?} is not an IP address")))?;
    let statd_dir = checks::required_path(env, "statd_dir")?;
    let mon_name = env.param("mon_name").map(str::to_string);
    if mon_name
        .as_deref()
        .is_some_and(|m| m.len() > 1024 || m.contains(char::is_whitespace))
    {
        return Err(configured(
            "parameter mon_name must be a host name (no spaces, at most 1024 bytes)".into(),
        ));
    }
    Ok(Params {
        ip,
        fs: checks::required_path(env, "fs")?,
        ledger_dir: checks::abs_path(env, "ledger_dir")?.unwrap_or_else(|| statd_dir.clone()),
        statd_dir,
        mon_name,
        min_grace: checks::seconds(env, "min_grace", 0..=3600, 10)?,
        reclaim_timeout: checks::seconds(env, "reclaim_timeout", 1..=3600, 90)?,
        record_interval: checks::seconds(env, "record_interval", 1..=60, 2)?,
        notify_deadline: checks::seconds(env, "notify_deadline", 1..=3600, 60)?,
    })
}

fn configured(reason: String) -> Outcome {
    Outcome::new(Status::ErrConfigured, reason)
}

fn generic(reason: String) -> Outcome {
    Outcome::new(Status::ErrGeneric, reason)
}

/// The exported directory on this node: not a directory is a wrong configuration; missing
/// means the filesystem is not mounted here.
fn check_fs(fs: &Path) -> Result<(), Outcome> {
    if fs.is_dir() {
        Ok(())
    } else if fs.exists() {
        Err(configured(format!(
            "parameter fs={} is not a directory",
            fs.display()
        )))
    } else {
        Err(Outcome::new(
            Status::ErrInstalled,
            format!("{} does not exist on this node: is the shared filesystem mounted? (group order: {ORDER})", fs.display()),
        ))
    }
}

/// The worker's files: pid, status (also the marker that a start happened), log.
struct Files {
    pid: PidFile,
    status: PathBuf,
    log: PathBuf,
}

fn files(ctx: &Ctx) -> Files {
    Files {
        pid: PidFile {
            path: ctx.state_file(NAME, "pid"),
        },
        status: ctx.state_file(NAME, "status"),
        log: ctx.state_file(NAME, "log"),
    }
}

pub fn act(action: Action, ctx: &Ctx) -> Outcome {
    let r = match action {
        Action::Start => start(ctx),
        Action::Stop => stop(ctx),
        Action::Monitor => params(&ctx.env).map(|p| monitor(ctx, &p)),
        _ => validate(ctx).map(|_| Outcome::ok()),
    };
    r.unwrap_or_else(|o| o)
}

fn validate(ctx: &Ctx) -> Result<Params, Outcome> {
    let p = params(&ctx.env)?;
    check_fs(&p.fs)?;
    checks::installed(&ctx.proc)?;
    Ok(p)
}

fn start(ctx: &Ctx) -> Result<Outcome, Outcome> {
    let p = validate(ctx)?;
    let f = files(ctx);
    if f.pid.running().is_some() {
        return Ok(Outcome::ok());
    }
    if !checks::nfsd_running(&ctx.proc) {
        return Err(generic(format!("nfsd is not running: start nfs-locks after nfsserver and exportfs (group order: {ORDER})")));
    }
    if !p.statd_dir.join("sm").is_dir() {
        return Err(generic(format!(
            "{}/sm does not exist: start nfs-grace with statd_dir={} first (group order: {ORDER})",
            p.statd_dir.display(),
            p.statd_dir.display()
        )));
    }
    let io = |what: &str, e: std::io::Error| generic(format!("cannot {what}: {e}"));
    std::fs::create_dir_all(&ctx.state_dir).map_err(|e| io("create the state directory", e))?;
    worker::write_phase(&f.status, &Phase::WaitingIp)
        .map_err(|e| io("write the status file", e))?;
    let exe = std::env::current_exe().map_err(|e| io("find this binary", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg0(NAME).arg(worker::ACTION);
    f.pid
        .spawn(&mut cmd, &f.log)
        .map_err(|e| io("start the worker", e))?;
    Ok(Outcome::ok())
}

fn monitor(ctx: &Ctx, p: &Params) -> Outcome {
    let f = files(ctx);
    match (f.pid.running(), worker::read_phase(&f.status)) {
        (_, Some(Phase::Failed(r))) => generic(r),
        (None, None) => Outcome {
            status: Status::NotRunning,
            reason: None,
        },
        (None, Some(ph)) => generic(format!(
            "the nfs-locks worker is gone (last phase {}); see {}",
            ph.text(),
            f.log.display()
        )),
        (Some(_), Some(Phase::Recording)) => ledger_fresh(p, &f.log),
        (Some(_), _) => Outcome::ok(),
    }
}

fn ledger_fresh(p: &Params, log: &Path) -> Outcome {
    let l = match ledger::read(&p.ledger_dir) {
        Ok(l) => l,
        Err(e) => return generic(format!("cannot read the ledger: {e}")),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let age = Duration::from_millis(now.saturating_sub(l.taken_at_unix_ms));
    if age < 3 * p.record_interval {
        return Outcome::ok();
    }
    generic(format!(
        "the lock ledger in {} was last written {} s ago (record_interval {} s): the recorder is stuck; see {}",
        p.ledger_dir.display(),
        age.as_secs(),
        p.record_interval.as_secs(),
        log.display()
    ))
}

fn stop(ctx: &Ctx) -> Result<Outcome, Outcome> {
    let p = params(&ctx.env)?;
    let f = files(ctx);
    if f.pid.running().is_none() && worker::read_phase(&f.status).is_none() {
        return Ok(Outcome::ok());
    }
    if cmd::ip_is_local(p.ip).is_ok() {
        return Err(generic(format!("the service IP {} is still up on this node: refusing to release the locks (new ones could be granted after the release); nfs-locks must come before IPaddr2 in the group (order: {ORDER})", p.ip)));
    }
    stop_worker(&f.pid)?;
    if worker::read_phase(&f.status) == Some(Phase::Recording) {
        // The worker died or was killed while recording: the final record is ours to take.
        record::record_once(&ctx.proc, &p.fs, &p.ledger_dir, &mut None)
            .map_err(|e| generic(format!("final ledger record failed: {e}")))?;
    }
    release(ctx, &p)?;
    match std::fs::remove_file(&f.status) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(generic(format!(
            "cannot remove {}: {e}",
            f.status.display()
        ))),
        _ => Ok(Outcome::ok()),
    }
}

fn stop_worker(pid: &PidFile) -> Result<(), Outcome> {
    let gone = pid
        .stop(Signal::SIGTERM, Duration::from_secs(10))
        .and_then(|gone| {
            if gone {
                Ok(true)
            } else {
                pid.stop(Signal::SIGKILL, Duration::from_secs(5))
            }
        })
        .map_err(|e| generic(format!("cannot stop the nfs-locks worker: {e}")))?;
    if gone {
        Ok(())
    } else {
        Err(generic(
            "the nfs-locks worker did not exit after SIGKILL".into(),
        ))
    }
}

/// Releases this node's NLM locks on the filesystem and checks /proc/locks. Without nfsd
/// (nfsserver already stopped: lockd dropped its locks) only the check is made; without the
/// filesystem (not mounted) there is nothing to release.
fn release(ctx: &Ctx, p: &Params) -> Result<(), Outcome> {
    if !p.fs.exists() {
        tracing::warn!("{} does not exist: nothing to release", p.fs.display());
        return Ok(());
    }
    let methods: &[ReleaseMethod] = if checks::nfsd_running(&ctx.proc) {
        &[ReleaseMethod::UnlockIp, ReleaseMethod::UnlockFs]
    } else {
        &[]
    };
    handoff::release_after_ip_down(&ctx.proc, p.ip, &p.fs, methods, RELEASE_SETTLE)
        .map(|_| ())
        .map_err(|e| {
            generic(format!(
                "releasing the locks on {} failed: {e}",
                p.fs.display()
            ))
        })
}
