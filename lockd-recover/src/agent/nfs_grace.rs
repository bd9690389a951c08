//! `nfs-grace`: the NLM and NFSv4 grace and lease times, set before nfsd starts (the kernel
//! takes them only while nfsd is stopped), and the statd directory on the shared filesystem.

use super::checks;
use super::records;
use super::Ctx;
use libmmp::ocf::metadata::{ActionSpec, Agent, Param};
use libmmp::ocf::{Action, Env, Outcome, Status};
use lockd_recover::grace::{self, GraceError, GraceSettings};
use lockd_recover::knobs::{ProcRoot, NLM_GRACE_PERIOD, V4_GRACE_TIME, V4_LEASE_TIME};
use lockd_recover::statd::{RecordDir, StatdDir};
use lockd_recover::tracker::{self, TrackerCheck, TrackerError};
use std::fs;
use std::path::{Path, PathBuf};

const NAME: &str = "nfs-grace";
const ORDER: &str = "fs (mmp-fs), nfs-grace, nfsserver, exportfs, nfs-locks, IPaddr2";

const PARAMS: &[Param] = &[
    Param::string(
        "grace_time",
        "Grace period (s)",
        "lockd's grace (nlm_grace_period, rounded up by the kernel to a multiple of nlm_timeout) and NFSv4's (nfsv4gracetime), 10 to 240 seconds. Clients reclaim their locks during it; nfs-locks ends it early once every lock in the ledger is held again.",
    )
    .integer()
    .default("90"),
    Param::string(
        "lease_time",
        "NFSv4 lease (s)",
        "NFSv4 lease time (nfsv4leasetime), 10 to 3600 seconds; keep it at most grace_time.",
    )
    .integer()
    .default("90"),
    Param::string(
        "statd_dir",
        "statd directory",
        "rpc.statd's state directory (rpc.statd -P, nfs.conf [statd] state-directory-path) on the shared filesystem, so the client records fail over with the service. Created with sm/ and sm.bak/ if missing; its parent must exist (the filesystem is mounted).",
    )
    .required()
    .unique(),
    Param::string(
        "nfsdcld_dir",
        "nfsdcld storage",
        "nfsdcld's storage directory (nfs.conf [nfsdcld] storagedir), which must be on the shared filesystem so the NFSv4 clients allowed to reclaim fail over with the export. When set, start refuses a tracker database on the root filesystem or off the shared one (the filesystem holding statd_dir), corrupt, of an unknown schema or with an insane grace row, and warns loudly when it lists no client (the kernel then skips NFSv4 grace and every v4 reclaim fails). Read only; nfsdcld creates it at its first start. Start nfsd with the same server scope on every node: lockd-recover start-nfsd --scope NAME, or nfsserver's nfs_server_scope.",
    )
    .unique(),
];

const ACTIONS: &[ActionSpec] = &[
    ActionSpec::new("start", 30),
    ActionSpec::new("stop", 20),
    ActionSpec::monitor(20, 30, 0),
    ActionSpec::new("validate-all", 20),
    ActionSpec::new("meta-data", 5),
];

pub const AGENT: Agent = Agent {
    name: NAME,
    shortdesc: "NFS grace and lease times, set before nfsd starts",
    longdesc: "Sets lockd's and NFSv4's grace period and the NFSv4 lease while nfsd is stopped (the kernel refuses them once it runs) and makes sure rpc.statd's directory exists on the shared filesystem, with a copy of its client records in sm.saved/ for nfs-locks (rpc.statd started without --no-notify, as nfsserver starts it, notifies under the node's own name and deletes them before the service IP is up). Put it in the NFS group after the filesystem and before nfsserver: fs (mmp-fs), nfs-grace, nfsserver, exportfs, nfs-locks, IPaddr2. Start fails (OCF_ERR_GENERIC) if nfsd already runs with other values. Stop only forgets that it ran: the values stay in the kernel.",
    params: PARAMS,
    actions: ACTIONS,
};

struct Params {
    grace: u64,
    lease: u64,
    statd_dir: PathBuf,
    nfsdcld_dir: Option<PathBuf>,
}

fn params(env: &Env) -> Result<Params, Outcome> {
    env.reject_unknown(PARAMS)?;
    Ok(Params {
        grace: env.integer("grace_time", 10..=240)?.unwrap_or(90),
        lease: env.integer("lease_time", 10..=3600)?.unwrap_or(90),
        statd_dir: checks::required_path(env, "statd_dir")?,
        nfsdcld_dir: checks::abs_path(env, "nfsdcld_dir")?,
    })
}

pub fn act(action: Action, ctx: &Ctx) -> Outcome {
    let marker = ctx.state_file(NAME, "started");
    let r = match action {
        Action::Start => start(ctx, &marker),
        Action::Stop => params(&ctx.env).and_then(|_| remove(&marker)),
        Action::Monitor => params(&ctx.env).map(|_| monitor(&marker)),
        _ => params(&ctx.env).and_then(|_| checks::installed(&ctx.proc).map(|()| Outcome::ok())),
    };
    r.unwrap_or_else(|o| o)
}

fn start(ctx: &Ctx, marker: &Path) -> Result<Outcome, Outcome> {
    let p = params(&ctx.env)?;
    checks::installed(&ctx.proc)?;
    check_statd_parent(&p.statd_dir)?;
    check_tracker(&ctx.proc, &p)?;
    checks::mount_nfsd_fs(&ctx.proc)?;
    set_times(&ctx.proc, &p)?;
    make_statd_dir(&p.statd_dir)?;
    write_marker(marker, &format!("grace {} lease {}\n", p.grace, p.lease))?;
    Ok(Outcome::ok())
}

fn monitor(marker: &Path) -> Outcome {
    if marker.exists() {
        Outcome::ok()
    } else {
        Outcome {
            status: Status::NotRunning,
            reason: None,
        }
    }
}

fn remove(marker: &Path) -> Result<Outcome, Outcome> {
    match fs::remove_file(marker) {
        Ok(()) => Ok(Outcome::ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Outcome::ok()),
        Err(e) => Err(generic(format!("cannot remove {}: {e}", marker.display()))),
    }
}

fn generic(reason: String) -> Outcome {
    Outcome::new(Status::ErrGeneric, reason)
}

/// Sets the times while nfsd is stopped; with nfsd running, succeeds only if the kernel
/// already has them (a restart of this resource under a running nfsserver).
fn set_times(proc: &ProcRoot, p: &Params) -> Result<(), Outcome> {
    if checks::nfsd_running(proc) {
        return check_current(proc, p);
    }
    let s = GraceSettings {
        nlm_grace_period: Some(p.grace),
        v4_grace: Some(p.grace),
        v4_lease: Some(p.lease),
    };
    match grace::set(proc, &s) {
        Ok(r) => {
            for w in &r.warnings {
                tracing::warn!("{w}");
            }
            Ok(())
        }
        Err(GraceError::NfsdRunning { .. }) => check_current(proc, p),
        Err(e) => Err(generic(format!("cannot set grace and lease: {e}"))),
    }
}

fn check_current(proc: &ProcRoot, p: &Params) -> Result<(), Outcome> {
    let read = |rel| proc.read_u64(rel).ok();
    let cur = (
        read(NLM_GRACE_PERIOD),
        read(V4_GRACE_TIME),
        read(V4_LEASE_TIME),
    );
    if cur == (Some(p.grace), Some(p.grace), Some(p.lease)) {
        return Ok(());
    }
    let show = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
    Err(generic(format!(
        "nfsd already runs with lockd grace {} s, NFSv4 grace {} s and lease {} s instead of grace_time={} lease_time={}; the kernel takes them only while nfsd is stopped: start nfs-grace before nfsserver (group order: {ORDER})",
        show(cur.0), show(cur.1), show(cur.2), p.grace, p.lease
    )))
}

/// nfsdcld's database, read only: on the shared filesystem (the one holding statd_dir), not
/// the root one, and readable as nfsdcld's. nfsdcld itself starts later (with nfsserver), so
/// it is not required to run, and a database it has not created yet is only warned about.
fn check_tracker(proc: &ProcRoot, p: &Params) -> Result<(), Outcome> {
    let Some(dir) = &p.nfsdcld_dir else {
        return Ok(());
    };
    let shared = p.statd_dir.parent().unwrap_or(Path::new("/")).to_path_buf();
    let c = TrackerCheck {
        storage_dir: dir.clone(),
        shared: Some(shared.clone()),
        root: "/".into(),
        require_nfsdcld: false,
    };
    match tracker::check(proc, &c) {
        Ok(r) => {
            for w in &r.warnings {
                tracing::warn!("{w}");
            }
            Ok(())
        }
        Err(TrackerError::Missing { path, .. }) => {
            // A first start: nfsdcld creates it. Its directory must still be on the shared disk.
            let probe = TrackerCheck {
                storage_dir: dir.parent().unwrap_or(Path::new("/")).to_path_buf(),
                ..c
            };
            tracker::check_placement(&probe).map_err(|e| generic(e.to_string()))?;
            tracing::warn!("{} does not exist yet: no NFSv4 client can reclaim after this start (fine for a first start; nfsdcld creates it)", path.display());
            Ok(())
        }
        Err(e) => Err(generic(e.to_string())),
    }
}

/// statd_dir's parent must exist, so that the directory is never created on the node's own
/// disk when the shared filesystem is not mounted.
fn check_statd_parent(dir: &Path) -> Result<(), Outcome> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    if parent.is_dir() {
        return Ok(());
    }
    Err(generic(format!(
        "{} does not exist: statd_dir belongs on the shared filesystem; start nfs-grace after the filesystem resource",
        parent.display()
    )))
}

/// statd's directory with sm/ and sm.bak/ (rpc.statd needs both), and the client records the
/// last planned stop saved ([`records`]).
fn make_statd_dir(dir: &Path) -> Result<(), Outcome> {
    let d = StatdDir::create(dir).map_err(|e| generic(format!("statd directory: {e}")))?;
    let (restored, kept) = records::keep(&d).map_err(|e| {
        generic(format!(
            "cannot restore or keep the client records in {}: {e}",
            dir.display()
        ))
    })?;
    if restored > 0 {
        tracing::warn!(
            "{restored} client records restored into {}",
            d.dir(RecordDir::Sm).display()
        );
    }
    tracing::info!(
        "{kept} client records kept in {}/{} until nfs-locks notifies",
        dir.display(),
        records::SAVED
    );
    Ok(())
}

fn write_marker(path: &Path, text: &str) -> Result<(), Outcome> {
    let tmp = path.with_extension("tmp");
    let r = path
        .parent()
        .map_or(Ok(()), fs::create_dir_all)
        .and_then(|()| fs::write(&tmp, text))
        .and_then(|()| fs::rename(&tmp, path));
    r.map_err(|e| generic(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::fake::{ctx, proc_tree, read};
    use std::fs;

    fn vars(statd: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("grace_time", "30".into()),
            ("lease_time", "20".into()),
            ("statd_dir", statd.display().to_string()),
        ]
    }

    fn run(action: Action, v: &[(&str, String)], proc: &Path, state: &Path) -> Outcome {
        let v: Vec<(&str, &str)> = v.iter().map(|(k, x)| (*k, x.as_str())).collect();
        act(action, &ctx(&v, proc, state))
    }

    #[test]
    fn start_sets_the_times_and_makes_the_statd_dir_then_stop_and_monitor() {
        let proc = proc_tree(true, Some(0));
        let shared = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let statd = shared.path().join("statd");
        let v = vars(&statd);
        let (p, s) = (proc.path(), state.path());
        assert_eq!(run(Action::Monitor, &v, p, s).status, Status::NotRunning);
        assert_eq!(run(Action::Start, &v, p, s), Outcome::ok());
        assert_eq!(read(p, NLM_GRACE_PERIOD), "30\n");
        assert_eq!(read(p, V4_GRACE_TIME), "30\n");
        assert_eq!(read(p, V4_LEASE_TIME), "20\n");
        assert!(statd.join("sm").is_dir() && statd.join("sm.bak").is_dir());
        assert_eq!(run(Action::Monitor, &v, p, s), Outcome::ok());
        assert_eq!(run(Action::Start, &v, p, s), Outcome::ok(), "idempotent");
        assert_eq!(run(Action::Stop, &v, p, s), Outcome::ok());
        assert_eq!(run(Action::Monitor, &v, p, s).status, Status::NotRunning);
        assert_eq!(run(Action::Stop, &v, p, s), Outcome::ok(), "idempotent");
    }

    #[test]
    fn start_under_a_running_nfsd_needs_the_same_values() {
        let proc = proc_tree(true, Some(8));
        let shared = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let v = vars(&shared.path().join("statd"));
        let (p, s) = (proc.path(), state.path());
        for (f, x) in [
            (NLM_GRACE_PERIOD, "0\n"),
            (V4_GRACE_TIME, "90\n"),
            (V4_LEASE_TIME, "90\n"),
        ] {
            fs::write(p.join(f), x).unwrap();
        }
        let o = run(Action::Start, &v, p, s);
        assert_eq!(o.status, Status::ErrGeneric);
        assert!(o
            .reason
            .unwrap()
            .contains("start nfs-grace before nfsserver"));
        assert_eq!(read(p, NLM_GRACE_PERIOD), "0\n", "nothing written");
        assert!(!shared.path().join("statd").exists());
        for (f, x) in [
            (NLM_GRACE_PERIOD, "30\n"),
            (V4_GRACE_TIME, "30\n"),
            (V4_LEASE_TIME, "20\n"),
        ] {
            fs::write(p.join(f), x).unwrap();
        }
        assert_eq!(run(Action::Start, &v, p, s), Outcome::ok());
    }

    #[test]
    fn the_nfsdcld_database_is_checked_on_the_shared_filesystem() {
        let proc = proc_tree(true, Some(0));
        let state = tempfile::tempdir().unwrap();
        let (p, s) = (proc.path(), state.path());
        let shared = tempfile::tempdir_in("/dev/shm").unwrap();
        let mut v = vars(&shared.path().join("statd"));
        let cld = shared.path().join("nfsdcld");
        v.push(("nfsdcld_dir", cld.display().to_string()));
        assert_eq!(
            run(Action::Start, &v, p, s),
            Outcome::ok(),
            "not created yet"
        );
        fs::create_dir(&cld).unwrap();
        fs::write(cld.join(tracker::DB_FILE), vec![0x5a; 4096]).unwrap();
        let o = run(Action::Start, &v, p, s);
        assert_eq!(o.status, Status::ErrGeneric);
        assert!(o.reason.unwrap().contains("not a readable sqlite database"));
        // On the root filesystem (statd on the shared one), where /var/tmp is on it.
        let local = tempfile::tempdir_in("/var/tmp").unwrap();
        let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&fs::metadata(p).unwrap());
        if dev(local.path()) != dev(Path::new("/")) {
            return;
        }
        let v2 = [
            vars(&shared.path().join("statd")),
            vec![(
                "nfsdcld_dir",
                local.path().join("nfsdcld").display().to_string(),
            )],
        ]
        .concat();
        let o = run(Action::Start, &v2, p, s);
        assert_eq!(o.status, Status::ErrGeneric);
        assert!(o.reason.unwrap().contains("root filesystem"), "{v2:?}");
    }

    #[test]
    fn bad_parameters_missing_nfsd_and_an_unmounted_filesystem() {
        let proc = proc_tree(true, Some(0));
        let state = tempfile::tempdir().unwrap();
        let (p, s) = (proc.path(), state.path());
        let bad: [&[(&str, String)]; 4] = [
            &[],
            &[("statd_dir", "relative".into())],
            &[("statd_dir", "/x".into()), ("grace_time", "5".into())],
            &[("statd_dir", "/x".into()), ("typo", "1".into())],
        ];
        for v in bad {
            for a in [Action::ValidateAll, Action::Start] {
                assert_eq!(run(a, v, p, s).status, Status::ErrConfigured, "{v:?}");
            }
        }
        assert_eq!(read(p, NLM_GRACE_PERIOD), "", "nothing written");
        let v = vars(Path::new("/nonexistent-mmp-ha/statd"));
        let o = run(Action::Start, &v, p, s);
        assert_eq!(o.status, Status::ErrGeneric);
        assert!(o.reason.unwrap().contains("shared filesystem"));
        assert_eq!(read(p, NLM_GRACE_PERIOD), "", "nothing written");
        let no_nfsd = proc_tree(false, None);
        let o = run(Action::ValidateAll, &v, no_nfsd.path(), s);
        assert_eq!(o.status, Status::ErrInstalled);
        assert!(o.reason.unwrap().contains("no nfsd"));
        assert_eq!(
            run(Action::Monitor, &v, no_nfsd.path(), s).status,
            Status::NotRunning,
            "a probe without nfsd is not an error"
        );
    }
}
