//! Multi-host mode: a coordinator and a worker on loopback, and on two network namespaces this
//! test makes (a real TCP path between two "hosts" that see one filesystem).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{cmd, json};
use test_support::cmd::describe;
use test_support::netns::{veth_pair, Netns};
use test_support::require::{cannot_run, require_root, require_tools};
use test_support::spawn::{run_with_timeout, wait_output};

fn wait_addr(file: &Path) -> String {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::fs::read_to_string(file) {
            if s.ends_with('\n') {
                return s.trim().to_string();
            }
        }
        assert!(
            Instant::now() < end,
            "coordinator never wrote {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_report(rep: &serde_json::Value) {
    assert_eq!(rep["verdict"], "pass", "{rep:#}");
    let sem = &rep["semantics"];
    assert_eq!(sem["failed"], 0, "{sem:#}");
    assert_eq!(sem["skipped"], 1, "only edeadlk is skipped across hosts");
    assert!(sem["peer"].as_str().unwrap().starts_with("worker "));
    let t = &rep["torture"];
    assert_eq!(t["hosts"].as_array().unwrap().len(), 2, "{t:#}");
    assert!(
        t["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["ops"].as_u64().unwrap() > 0),
        "{t:#}"
    );
    assert_eq!(t["violations"], 0);
    assert_eq!(t["file_check"]["sum_counts"], t["file_check"]["expected"]);
}

#[test]
fn multihost_coordinator_and_worker_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("export");
    std::fs::create_dir(&shared).unwrap();
    // The worker reaches the same directory by another path, as a second mount would.
    let other = dir.path().join("client-b");
    std::os::unix::fs::symlink(&shared, &other).unwrap();
    let addr_file = dir.path().join("addr");
    let mut c = cmd();
    c.args([
        "coordinator",
        "--json",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--procs",
        "2",
        "--duration",
        "1s",
        "--accept-timeout",
        "20s",
        "--dir",
    ])
    .arg(&shared)
    .arg("--addr-file")
    .arg(&addr_file)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let coord = c.spawn().unwrap();
    let addr = wait_addr(&addr_file);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let mut w = cmd();
    w.args(["worker", "--connect", &addr, "--dir"])
        .arg(&other)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let worker = w.spawn().unwrap();
    let out = wait_output(coord, Duration::from_secs(60));
    let wout = wait_output(worker, Duration::from_secs(20));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nworker: {}",
        describe(&out),
        describe(&wout)
    );
    assert_eq!(wout.status.code(), Some(0), "{}", describe(&wout));
    check_report(&json(&out));
}

#[test]
fn multihost_coordinator_times_out_without_workers() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd();
    c.args([
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--accept-timeout",
        "300ms",
        "--dir",
    ])
    .arg(dir.path());
    let out = run_with_timeout(c, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only 0 of 1 workers connected"));
}

/// A coordinator's and a worker's network namespace joined by a veth pair; deleted (with the
/// pair) on drop.
fn two_hosts() -> Result<(Netns, Netns), test_support::Error> {
    let coord = Netns::new("lt-coord")?;
    let work = Netns::new("lt-work")?;
    // 198.18.0.0/15 is reserved for network test labs (RFC 2544); the pair lives only inside
    // the two namespaces made here.
    veth_pair(&coord, "198.18.77.1/24", &work, "198.18.77.2/24")?;
    Ok((coord, work))
}

#[test]
fn multihost_across_two_network_namespaces() {
    if !(require_root("network namespaces") && require_tools(&["ip"])) {
        return;
    }
    let (coord_ns, work_ns) = match two_hosts() {
        Ok(n) => n,
        Err(e) => return cannot_run(&format!("cannot create network namespaces: {e}")),
    };
    let dir = tempfile::tempdir().unwrap();
    let addr_file = dir.path().join("addr");
    let bin = common::bin();
    let mut c = coord_ns.exec(bin);
    c.args([
        "coordinator",
        "--json",
        "--listen",
        "198.18.77.1:0",
        "--procs",
        "2",
        "--duration",
        "1s",
        "--accept-timeout",
        "20s",
        "--dir",
    ])
    .arg(dir.path())
    .arg("--addr-file")
    .arg(&addr_file)
    .env_remove("LD_PRELOAD")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let coord = c.spawn().unwrap();
    let addr = wait_addr(&addr_file);
    assert!(addr.starts_with("198.18.77.1:"), "{addr}");
    let mut w = work_ns.exec(bin);
    w.args(["worker", "--connect", &addr, "--dir"])
        .arg(dir.path())
        .env_remove("LD_PRELOAD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let worker = w.spawn().unwrap();
    let out = wait_output(coord, Duration::from_secs(60));
    let wout = wait_output(worker, Duration::from_secs(20));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nworker: {}",
        describe(&out),
        describe(&wout)
    );
    let rep = json(&out);
    check_report(&rep);
    assert!(
        rep["workers"][0]["addr"]
            .as_str()
            .unwrap()
            .starts_with("198.18.77.2:"),
        "{rep:#}"
    );
    drop((coord_ns, work_ns));
}
