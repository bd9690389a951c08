//! `nfs-locks`: NFSv3 lock recovery of one service IP and exported filesystem. Start spawns
//! the worker ([`super::worker`]); stop (after IPaddr2 stopped, while nfsd still runs) stops
//! it, takes the final ledger record if it could not, and releases this node's NLM locks on the
//! filesystem, verified gone in /proc/locks.

use super::checks;
use super::records;
use super::worker::{self, Phase};
use super::Ctx;
use crate::cmd::{self, handoff, record};
use libmmp::ocf::metadata::{ActionSpec, Agent, Param};
use libmmp::ocf::worker::PidFile;
use libmmp::ocf::{Action, Env, Outcome, Status};
use lockd_recover::knobs::NFSD_THREADS;
use lockd_recover::ledger;
use lockd_recover::release::ReleaseMethod;
use lockd_recover::statd::StatdDir;
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
    Param::string("record_interval", "Ledger interval (s)", "How often the ledger is recorded while the service runs (1 to 60 s); monitor fails when it is older than 3 intervals and at least 20 s.").integer().default("2"),
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
    longdesc: "Recovers the NFSv3 (NLM) locks of one service IP and exported filesystem across a failover. Start spawns a worker that waits for the service IP (up to 120 s), notifies every client recorded in statd_dir from it, waits until every lock of the ledger is held again and ends grace early, then records the ledger every record_interval. Stop (run after the IP is down, while nfsd still runs) stops the worker, which takes the final ledger record (marked with the filesystem's mount, so the next server trusts it whatever its age on its first mount), and releases this node's NLM locks on the filesystem (unlock_ip, unlock_filesystem), verified in /proc/locks; it refuses while the IP is still up. When NFSv4 clients hold locks on the filesystem, stop first stops nfsd (0 threads: a kernel without admin-revoke releases v4 locks only so), and a later start of nfs-locks on this node with nfsd still stopped starts it again with the same thread count. Group order: fs (mmp-fs), nfs-grace, nfsserver, exportfs, nfs-locks, IPaddr2.",
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
    /// nfsd's thread count, written when stop stopped nfsd for its NFSv4 locks (see [`start`]).
    stopped_nfsd: PathBuf,
}

fn files(ctx: &Ctx) -> Files {
    Files {
        pid: PidFile {
            path: ctx.state_file(NAME, "pid"),
        },
        status: ctx.state_file(NAME, "status"),
        log: ctx.state_file(NAME, "log"),
        stopped_nfsd: ctx.state_file(NAME, "nfsd-threads"),
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
        restart_stopped_nfsd(ctx, &f)?;
    }
    let _ = std::fs::remove_file(&f.stopped_nfsd);
    if let Some(d) = ["sm", "sm.bak"]
        .iter()
        .map(|d| p.statd_dir.join(d))
        .find(|d| !d.is_dir())
    {
        return Err(generic(format!(
            "{} does not exist: start nfs-grace with statd_dir={} first (group order: {ORDER})",
            d.display(),
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

/// nfs-locks' stop stops nfsd when it serves NFSv4 locks on the filesystem ([`release`]): a
/// restart of nfs-locks alone (Pacemaker recovering it, or `crm resource restart`), with
/// nfsserver left running, would find no nfsd. The thread count the stop recorded puts it back,
/// as nfsserver's own restart would (nfsd starts a new grace period; nfs-grace's settings stay).
/// Without that record nfsd was stopped by someone else: start refuses.
fn restart_stopped_nfsd(ctx: &Ctx, f: &Files) -> Result<(), Outcome> {
    let threads = std::fs::read_to_string(&f.stopped_nfsd)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| generic(format!("nfsd is not running: start nfs-locks after nfsserver and exportfs (group order: {ORDER})")))?;
    ctx.proc
        .write(NFSD_THREADS, &format!("{threads}\n"))
        .map_err(|e| {
            generic(format!(
                "cannot start nfsd again (its NFSv4 locks had stopped it): {e}"
            ))
        })?;
    tracing::info!("nfsd started again with {threads} threads: nfs-locks' stop had stopped it for its NFSv4 locks");
    Ok(())
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
    if age < stuck_after(p.record_interval) {
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

/// A recorder is stuck only when the ledger is older than this floor. A busy server misses a
/// few beats of a 1 s recorder (the Pacemaker lab saw a 4 s gap during a move, on a 1-vCPU TCG
/// guest): failing the monitor for that made Pacemaker restart nfs-locks in the middle of the
/// move. The monitor only detects: the ledger's freshness at a crash is whatever the recorder
/// managed, whether the monitor fails or not.
const STUCK_FLOOR: Duration = Duration::from_secs(20);

/// How old the ledger may get before monitor fails: 3 intervals, at least [`STUCK_FLOOR`].
fn stuck_after(interval: Duration) -> Duration {
    (3 * interval).max(STUCK_FLOOR)
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
        // The worker died or was killed while recording: the final record is ours to take
        // (the IP is down, checked above).
        record::record_final(&ctx.proc, &p.fs, &p.ledger_dir)
            .map_err(|e| generic(format!("final ledger record failed: {e}")))?;
    }
    save_records(&p.statd_dir)?;
    release(ctx, &p, &f)?;
    match std::fs::remove_file(&f.status) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(generic(format!(
            "cannot remove {}: {e}",
            f.status.display()
        ))),
        _ => Ok(Outcome::ok()),
    }
}

/// Keeps the client records the release is about to make statd delete ([`records`]).
fn save_records(statd_dir: &Path) -> Result<(), Outcome> {
    let saved = StatdDir::open(statd_dir)
        .map_err(|e| e.to_string())
        .and_then(|d| records::save(&d).map_err(|e| e.to_string()))
        .map_err(|e| {
            generic(format!(
                "cannot save the client records of {}: {e}",
                statd_dir.display()
            ))
        })?;
    tracing::info!("{saved} client records saved");
    Ok(())
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
fn release(ctx: &Ctx, p: &Params, f: &Files) -> Result<(), Outcome> {
    if !p.fs.exists() {
        tracing::warn!("{} does not exist: nothing to release", p.fs.display());
        return Ok(());
    }
    // NFSv4 locks go only with a clean nfsd stop on kernels without admin-revoke. The thread
    // count is kept for a restart of nfs-locks alone ([`restart_stopped_nfsd`]).
    if let Some(threads) = handoff::stop_nfsd_for_v4(&ctx.proc, &p.fs, false)
        .map_err(|e| generic(format!("cannot stop nfsd for its NFSv4 locks: {e}")))?
    {
        std::fs::write(&f.stopped_nfsd, format!("{threads}\n"))
            .map_err(|e| generic(format!("cannot write {}: {e}", f.stopped_nfsd.display())))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::fake::{ctx, proc_tree, read};
    use lockd_recover::knobs::{UNLOCK_FS, UNLOCK_IP};
    use std::fs;

    /// A node with nfsd serving, an exported directory and a statd directory.
    struct Node {
        proc: tempfile::TempDir,
        shared: tempfile::TempDir,
        state: tempfile::TempDir,
    }

    impl Node {
        fn new(threads: u64) -> Node {
            let n = Node {
                proc: proc_tree(true, Some(threads)),
                shared: tempfile::tempdir().unwrap(),
                state: tempfile::tempdir().unwrap(),
            };
            fs::create_dir_all(n.shared.path().join("export")).unwrap();
            fs::create_dir_all(n.shared.path().join("statd/sm")).unwrap();
            fs::create_dir_all(n.shared.path().join("statd/sm.bak")).unwrap();
            n
        }

        fn ctx(&self, ip: &str, extra: &[(&str, &str)]) -> Ctx {
            let fs = self.shared.path().join("export").display().to_string();
            let statd = self.shared.path().join("statd").display().to_string();
            let mut v = vec![
                ("ip", ip),
                ("fs", fs.as_str()),
                ("statd_dir", statd.as_str()),
            ];
            v.extend_from_slice(extra);
            ctx(&v, self.proc.path(), self.state.path())
        }
    }

    #[test]
    fn bad_parameters_are_err_configured_and_a_missing_fs_not_installed() {
        let n = Node::new(8);
        let file = n.shared.path().join("file");
        fs::write(&file, "").unwrap();
        let file = file.display().to_string();
        for (ip, extra) in [
            ("10.0.0.300", vec![]),
            ("10.0.0.1", vec![("typo", "1")]),
            ("10.0.0.1", vec![("record_interval", "0")]),
            ("10.0.0.1", vec![("ledger_dir", "relative")]),
            ("10.0.0.1", vec![("fs", file.as_str())]),
        ] {
            let c = n.ctx(ip, &extra);
            assert_eq!(
                act(Action::ValidateAll, &c).status,
                Status::ErrConfigured,
                "{ip} {extra:?}"
            );
            assert_eq!(act(Action::Start, &c).status, Status::ErrConfigured);
        }
        let c = n.ctx("10.0.0.1", &[("fs", "/nonexistent-mmp-ha/export")]);
        assert_eq!(act(Action::ValidateAll, &c).status, Status::ErrInstalled);
        assert_eq!(
            fs::read_dir(n.state.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }

    #[test]
    fn start_refuses_before_nfsd_and_before_nfs_grace() {
        let n = Node::new(0);
        let o = act(Action::Start, &n.ctx("10.0.0.1", &[]));
        assert_eq!(o.status, Status::ErrGeneric);
        assert!(o.reason.unwrap().contains("after nfsserver"));
        let n = Node::new(8);
        fs::remove_dir(n.shared.path().join("statd/sm")).unwrap();
        let o = act(Action::Start, &n.ctx("10.0.0.1", &[]));
        assert!(o.reason.unwrap().contains("nfs-grace"));
        assert_eq!(
            fs::read_dir(n.state.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }

    /// Our own process stands in for a live worker (its pid and start time).
    fn fake_worker(c: &Ctx) {
        let me = std::process::id();
        let t = libmmp::ocf::worker::start_time(me).unwrap();
        fs::write(files(c).pid.path, format!("{me} {t}\n")).unwrap();
    }

    #[test]
    fn monitor_follows_the_worker_and_its_phase() {
        let n = Node::new(8);
        let c = n.ctx("10.0.0.1", &[("record_interval", "1")]);
        let f = files(&c);
        assert_eq!(act(Action::Monitor, &c).status, Status::NotRunning);
        worker::write_phase(&f.status, &Phase::Reclaiming).unwrap();
        let o = act(Action::Monitor, &c);
        assert!(o.reason.unwrap().contains("worker is gone"));
        fake_worker(&c);
        assert_eq!(act(Action::Monitor, &c), Outcome::ok());
        worker::write_phase(&f.status, &Phase::Failed("no IP".into())).unwrap();
        assert_eq!(
            act(Action::Monitor, &c),
            Outcome::new(Status::ErrGeneric, "no IP")
        );
        worker::write_phase(&f.status, &Phase::Recording).unwrap();
        let o = act(Action::Monitor, &c);
        assert!(o.reason.unwrap().contains("cannot read the ledger"));
        let export = n.shared.path().join("export");
        record::record_once(&c.proc, &export, &n.shared.path().join("statd"), &mut None).unwrap();
        assert_eq!(act(Action::Monitor, &c), Outcome::ok());
        let ledger_dir = n.shared.path().join("statd");
        let mut l = ledger::read(&ledger_dir).unwrap();
        l.taken_at_unix_ms -= 4_000;
        ledger::write(&ledger_dir, &l).unwrap();
        assert_eq!(
            act(Action::Monitor, &c),
            Outcome::ok(),
            "4 s late: busy, not stuck"
        );
        l.taken_at_unix_ms -= STUCK_FLOOR.as_millis() as u64;
        ledger::write(&ledger_dir, &l).unwrap();
        let o = act(Action::Monitor, &c);
        assert!(o.reason.unwrap().contains("recorder is stuck"));
    }

    #[test]
    fn stop_stops_the_worker_and_releases_once_the_ip_is_down() {
        let n = Node::new(8);
        // 192.0.2.1 (TEST-NET-1) is on no interface here: the IP is down.
        let c = n.ctx("192.0.2.1", &[]);
        let f = files(&c);
        worker::write_phase(&f.status, &Phase::WaitingIp).unwrap();
        let statd = n.shared.path().join("statd");
        fs::write(statd.join("sm/client1"), "rec\n").unwrap();
        let w = f
            .pid
            .spawn(std::process::Command::new("sleep").arg("30"), &f.log)
            .unwrap();
        assert_eq!(act(Action::Stop, &c), Outcome::ok());
        assert_eq!(
            libmmp::ocf::worker::start_time(w.pid),
            None,
            "worker stopped"
        );
        assert_eq!(read(n.proc.path(), UNLOCK_IP), "192.0.2.1\n");
        let export = fs::canonicalize(n.shared.path().join("export")).unwrap();
        assert_eq!(
            read(n.proc.path(), UNLOCK_FS),
            format!("{}\n", export.display())
        );
        assert!(!f.status.exists());
        assert!(statd.join("sm.saved/client1").exists(), "records saved");
        let ledger = ledger::ledger_path(&n.shared.path().join("statd"));
        assert!(!ledger.exists(), "no record before the reclaims were done");
        assert_eq!(act(Action::Stop, &c), Outcome::ok(), "idempotent");
        assert_eq!(act(Action::Monitor, &c).status, Status::NotRunning);
    }

    #[test]
    fn stop_takes_the_final_record_of_a_dead_recorder() {
        let n = Node::new(8);
        let c = n.ctx("192.0.2.1", &[]);
        worker::write_phase(&files(&c).status, &Phase::Recording).unwrap();
        assert_eq!(act(Action::Stop, &c), Outcome::ok());
        let l = ledger::read(&n.shared.path().join("statd")).unwrap();
        assert!(l.locks.is_empty());
        // Final, marked with the mount of the export where its superblock can be read here
        // (root, ext4 on a block device); a normal ledger otherwise.
        let export = n.shared.path().join("export");
        let mark = lockd_recover::mount_mark::MountMark::read(&export).ok();
        assert_eq!(l.final_mount, mark);
        assert_eq!(l.format, ledger::format_for(mark.as_ref()));
    }

    #[test]
    fn stop_refuses_while_the_ip_is_up() {
        let n = Node::new(8);
        let c = n.ctx("127.0.0.1", &[]);
        let f = files(&c);
        worker::write_phase(&f.status, &Phase::Recording).unwrap();
        let o = act(Action::Stop, &c);
        assert_eq!(o.status, Status::ErrGeneric);
        assert!(o.reason.unwrap().contains("before IPaddr2"));
        assert_eq!(read(n.proc.path(), UNLOCK_IP), "", "nothing released");
        assert!(f.status.exists());
    }

    /// An NFSv4 client holding a lock on `fs`, as /proc/fs/nfsd/clients/1/ shows it.
    fn v4_lock_on(proc: &Path, fs: &Path) {
        let (major, minor) = lockd_recover::knobs::fs_dev(fs).unwrap();
        let d = proc.join(lockd_recover::v4state::CLIENTS_DIR).join("1");
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("info"),
            "clientid: 0x1\naddress: \"198.18.0.3:724\"\nname: \"c\"\nminor version: 2\n",
        )
        .unwrap();
        fs::write(d.join("states"), format!("- 0x2: {{ type: lock, superblock: \"{major:02x}:{minor:02x}:13\", filename: \"f\", owner: \"o\" }}\n")).unwrap();
    }

    /// Stop stops nfsd for its NFSv4 locks; a restart of nfs-locks alone starts it again with
    /// the same threads. Without the stop's record, a stopped nfsd is refused.
    #[test]
    fn a_restart_after_a_v4_stop_starts_nfsd_again() {
        let n = Node::new(8);
        let c = n.ctx("192.0.2.1", &[]);
        let f = files(&c);
        worker::write_phase(&f.status, &Phase::WaitingIp).unwrap();
        v4_lock_on(n.proc.path(), &n.shared.path().join("export"));
        assert_eq!(act(Action::Stop, &c), Outcome::ok());
        assert_eq!(read(n.proc.path(), NFSD_THREADS), "0\n", "nfsd stopped");
        assert_eq!(fs::read_to_string(&f.stopped_nfsd).unwrap(), "8\n");
        // statd_dir lacks sm/ now: start gets past nfsd and stops there, nothing spawned.
        fs::remove_dir_all(n.shared.path().join("statd/sm")).unwrap();
        let o = act(Action::Start, &c);
        assert!(o.reason.unwrap().contains("sm does not exist"));
        assert_eq!(
            read(n.proc.path(), NFSD_THREADS),
            "8\n",
            "nfsd started again"
        );
        assert!(!f.stopped_nfsd.exists(), "the record is used once");
        fs::write(n.proc.path().join(NFSD_THREADS), "0\n").unwrap();
        let o = act(Action::Start, &c);
        assert!(o.reason.unwrap().contains("nfsd is not running"));
        assert_eq!(read(n.proc.path(), NFSD_THREADS), "0\n", "nothing written");
    }
}
