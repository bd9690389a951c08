//! The OCF agents `nfs-grace` and `nfs-locks` (lockd-recover called through symlinks of those
//! names), on this host: meta-data against the DTD, exit codes for bad parameters and a kernel
//! without nfsd, `crm_resource --validate` through a test-only provider directory, ocf-tester,
//! and the nfs-locks worker up to recording. A fake proc tree (LOCKD_RECOVER_PROC_ROOT, as
//! `--proc-root` for the subcommands) stands in for a kernel with nfsd; the real NFS run is the
//! lab's scenario 6.

use lockd_recover::fake_proc::FakeProc;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use test_support::ocf::OcfAgents;
use test_support::require::{is_root, require, require_tools};

const BIN: &str = env!("CARGO_BIN_EXE_lockd-recover");
const DTD: &str = "/usr/share/resource-agents/ra-api-1.dtd";

const AGENTS: &[&str] = &["nfs-grace", "nfs-locks"];

/// The two agents linked to the binary in a temporary directory.
fn temp_agents() -> OcfAgents {
    OcfAgents::temp(BIN, AGENTS)
}

/// A proc tree: with nfsd (its filesystem mounted, `threads` running) or without.
fn fake_proc(nfsd: bool, threads: u64) -> tempfile::TempDir {
    if nfsd {
        FakeProc::running(threads).build()
    } else {
        FakeProc::without_nfsd().build()
    }
}

/// The shared filesystem's stand-in (export/, statd/sm) and the agents' state directory.
struct Node {
    shared: tempfile::TempDir,
    state: tempfile::TempDir,
    proc: Option<tempfile::TempDir>,
}

impl Node {
    fn new(proc: Option<tempfile::TempDir>) -> Node {
        let shared = tempfile::tempdir().unwrap();
        fs::create_dir_all(shared.path().join("export")).unwrap();
        fs::create_dir_all(shared.path().join("statd/sm")).unwrap();
        fs::create_dir_all(shared.path().join("statd/sm.bak")).unwrap();
        Node {
            shared,
            state: tempfile::tempdir().unwrap(),
            proc,
        }
    }

    fn s(&self, rel: &str) -> String {
        self.shared.path().join(rel).display().to_string()
    }

    fn locks_params(&self, ip: &str) -> Vec<(String, String)> {
        vec![
            ("ip".into(), ip.into()),
            ("fs".into(), self.s("export")),
            ("statd_dir".into(), self.s("statd")),
            ("min_grace".into(), "0".into()),
            ("record_interval".into(), "1".into()),
        ]
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("MMP_HA_STATE_DIR", self.state.path())
            .env("OCF_RESOURCE_INSTANCE", "t1");
        if let Some(p) = &self.proc {
            cmd.env("LOCKD_RECOVER_PROC_ROOT", p.path());
        }
    }

    fn run(&self, agent: &Path, action: &str, params: &[(String, String)]) -> Output {
        let mut c = Command::new(agent);
        c.arg(action);
        self.env(&mut c);
        for (k, v) in params {
            c.env(format!("OCF_RESKEY_{k}"), v);
        }
        c.output().unwrap()
    }

    fn state_files(&self) -> Vec<String> {
        fs::read_dir(self.state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

/// Kills the worker a test left behind (by the pid in its pid file).
impl Drop for Node {
    fn drop(&mut self) {
        let pid = fs::read_to_string(self.state.path().join("nfs-locks-t1.pid"));
        if let Some(pid) = pid
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn reason(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("ocf-exit-reason:"))
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn meta_data_is_valid_against_ra_api_1_dtd() {
    if !require_tools(&["xmllint"]) || !require(Path::new(DTD).exists(), DTD) {
        return;
    }
    let a = temp_agents();
    let out = tempfile::tempdir().unwrap();
    for name in ["nfs-grace", "nfs-locks"] {
        let o = Command::new(a.path(name))
            .arg("meta-data")
            .output()
            .unwrap();
        assert_eq!(code(&o), 0);
        let xml = out.path().join(format!("{name}.xml"));
        fs::write(&xml, &o.stdout).unwrap();
        let v = Command::new("xmllint")
            .args(["--noout", "--dtdvalid", DTD])
            .arg(&xml)
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&v.stderr)
        );
    }
}

#[test]
fn bad_parameters_are_err_configured_and_write_nothing() {
    let n = Node::new(Some(fake_proc(true, 0)));
    let a = temp_agents();
    let locks = a.path("nfs-locks");
    let mut bad_ip = n.locks_params("10.1.2.x");
    let mut unknown = n.locks_params("10.1.2.3");
    unknown.push(("fstype".into(), "ext4".into()));
    let mut not_dir = n.locks_params("10.1.2.3");
    fs::write(n.shared.path().join("file"), "").unwrap();
    not_dir[1].1 = n.s("file");
    for params in [&mut bad_ip, &mut unknown, &mut not_dir] {
        for action in ["validate-all", "start"] {
            let o = n.run(&locks, action, params);
            assert_eq!(code(&o), 6, "{action} {params:?}: {}", reason(&o));
            assert!(!reason(&o).is_empty());
        }
    }
    let grace = a.path("nfs-grace");
    let o = n.run(&grace, "start", &[("statd_dir".into(), "statd".into())]);
    assert_eq!(code(&o), 6, "{}", reason(&o));
    assert!(n.state_files().is_empty(), "{:?}", n.state_files());
    let proc = n.proc.as_ref().unwrap().path();
    assert_eq!(
        fs::read_to_string(proc.join("sys/fs/nfs/nlm_grace_period")).unwrap(),
        ""
    );
}

#[test]
fn a_kernel_without_nfsd_is_err_installed() {
    let a = temp_agents();
    let n = Node::new(Some(fake_proc(false, 0)));
    let grace = [("statd_dir".to_string(), n.s("statd"))];
    for (agent, params) in [
        ("nfs-grace", grace.to_vec()),
        ("nfs-locks", n.locks_params("10.1.2.3")),
    ] {
        for action in ["validate-all", "start"] {
            let o = n.run(&a.path(agent), action, &params);
            assert_eq!(code(&o), 5, "{agent} {action}: {}", reason(&o));
            assert!(reason(&o).contains("no nfsd"), "{}", reason(&o));
        }
        let o = n.run(&a.path(agent), "monitor", &params);
        assert_eq!(code(&o), 7, "a probe without nfsd says stopped");
    }
    assert!(n.state_files().is_empty());
    // This host itself, when its kernel has no nfsd (the build host here).
    let host_nfsd = fs::read_to_string("/proc/filesystems").is_ok_and(|t| t.contains("\tnfsd"));
    if host_nfsd {
        eprintln!("this host's kernel has nfsd: the real-/proc check is not made");
        return;
    }
    let real = Node::new(None);
    let o = real.run(
        &a.path("nfs-locks"),
        "validate-all",
        &real.locks_params("10.1.2.3"),
    );
    assert_eq!(code(&o), 5, "{}", reason(&o));
}

#[test]
fn crm_resource_validate_gives_the_agents_codes() {
    if !require(
        is_root(),
        "needs root (a provider directory in /usr/lib/ocf)",
    ) || !require_tools(&["crm_resource"])
    {
        return;
    }
    let a = OcfAgents::provider("crm", BIN, AGENTS);
    let validate = |agent: &str, opts: &[(&str, &str)]| a.crm(agent, &["--validate"], opts, &[]);
    let (rc, out) = validate(
        "nfs-locks",
        &[("ip", "10.0.0.x"), ("fs", "/tmp"), ("statd_dir", "/tmp")],
    );
    assert_eq!(rc, 6, "{out}");
    assert!(out.contains("not an IP address"), "{out}");
    let (rc, out) = validate(
        "nfs-grace",
        &[("statd_dir", "/srv/statd"), ("grace_time", "1000")],
    );
    assert_eq!(rc, 6, "{out}");
    let host_nfsd = fs::read_to_string("/proc/filesystems").is_ok_and(|t| t.contains("\tnfsd"));
    if !host_nfsd {
        let (rc, out) = validate(
            "nfs-locks",
            &[("ip", "10.0.0.1"), ("fs", "/tmp"), ("statd_dir", "/tmp")],
        );
        assert_eq!(rc, 5, "{out}");
    }
    drop(a);
}

fn ocf_tester(n: &Node, agent: &Path, params: &[(String, String)]) -> Output {
    let mut c = Command::new("ocf-tester");
    n.env(&mut c);
    c.args(["-n", "t1"]);
    for (k, v) in params {
        c.arg("-o").arg(format!("{k}={v}"));
    }
    c.arg(agent).output().unwrap()
}

#[test]
fn ocf_tester_passes_on_a_fake_nfs_server() {
    if !require(
        is_root(),
        "needs root (ocf-tester's permission check, /usr/lib/ocf)",
    ) || !require_tools(&["ocf-tester", "xmllint"])
    {
        return;
    }
    let a = OcfAgents::provider("tester", BIN, AGENTS);
    let n = Node::new(Some(fake_proc(true, 0)));
    let o = ocf_tester(
        &n,
        &a.path("nfs-grace"),
        &[("statd_dir".into(), n.s("statd"))],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let n = Node::new(Some(fake_proc(true, 8)));
    // 192.0.2.1 (TEST-NET-1) is never up here: the worker waits for it until stopped.
    let o = ocf_tester(&n, &a.path("nfs-locks"), &n.locks_params("192.0.2.1"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let proc = n.proc.as_ref().unwrap().path();
    let unlock_ip = fs::read_to_string(proc.join("fs/nfsd/unlock_ip")).unwrap();
    assert_eq!(unlock_ip, "192.0.2.1\n", "stop released the IP's locks");
    // On this host without nfsd, ocf-tester stops at validate-all (rc 5) and fails.
    let real = Node::new(None);
    let o = ocf_tester(&real, &a.path("nfs-locks"), &real.locks_params("192.0.2.1"));
    if !fs::read_to_string("/proc/filesystems").is_ok_and(|t| t.contains("\tnfsd")) {
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stdout).contains("rc=5: Validation failed"));
    }
}

fn wait_for_phase(n: &Node, want: &str, limit: Duration) -> String {
    let f = n.state.path().join("nfs-locks-t1.status");
    let until = Instant::now() + limit;
    loop {
        let phase = fs::read_to_string(&f).unwrap_or_default();
        let done = phase.trim() == want || phase.starts_with("failed:");
        if done || Instant::now() > until {
            return phase.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_worker_notifies_ends_grace_and_records_then_stop_refuses_while_the_ip_is_up() {
    let a = temp_agents();
    let n = Node::new(Some(fake_proc(true, 8)));
    let params = n.locks_params("127.0.0.1");
    let locks = a.path("nfs-locks");
    assert_eq!(code(&n.run(&locks, "monitor", &params)), 7);
    assert_eq!(code(&n.run(&locks, "start", &params)), 0);
    assert_eq!(code(&n.run(&locks, "start", &params)), 0, "idempotent");
    let phase = wait_for_phase(&n, "recording", Duration::from_secs(30));
    let log = fs::read_to_string(n.state.path().join("nfs-locks-t1.log")).unwrap_or_default();
    assert_eq!(phase, "recording", "{log}");
    let proc = n.proc.as_ref().unwrap().path();
    let ended = fs::read_to_string(proc.join("fs/lockd/nlm_end_grace")).unwrap();
    assert_eq!(ended, "Y\n", "no client and no ledger: lockd grace ended");
    assert!(n
        .shared
        .path()
        .join("statd/lockd-recover-ledger.json")
        .exists());
    let o = n.run(&locks, "monitor", &params);
    assert_eq!(code(&o), 0, "{}", reason(&o));
    let o = n.run(&locks, "stop", &params);
    assert_eq!(code(&o), 1);
    assert!(reason(&o).contains("still up"), "{}", reason(&o));
    assert_eq!(
        fs::read_to_string(proc.join("fs/nfsd/unlock_ip")).unwrap(),
        ""
    );
    // SIGTERM (what stop sends once the IP is down): a final record, then "stopped".
    let ledger = n.shared.path().join("statd/lockd-recover-ledger.json");
    let before = fs::metadata(&ledger).unwrap().modified().unwrap();
    let pid = fs::read_to_string(n.state.path().join("nfs-locks-t1.pid")).unwrap();
    let pid: i32 = pid.split_whitespace().next().unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let term = nix::sys::signal::Signal::SIGTERM;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), term).unwrap();
    let phase = wait_for_phase(&n, "stopped", Duration::from_secs(10));
    assert_eq!(phase, "stopped");
    assert!(
        fs::metadata(&ledger).unwrap().modified().unwrap() > before,
        "final record"
    );
}
