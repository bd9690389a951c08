//! The `mmp-fs` agent with holder=mmpd: an xfs filesystem protected by an MMP area (made by
//! `mmp-tool format-area`) that an mmpd started by the agent holds, with fence=exit. The
//! watchdog fence needs a watchdog device, which this host lacks: the lab tests it.

mod ocf_fs_support;

use libmmp::ondisk::mmp::SeqClass;
use ocf_fs_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use test_support::prelude::*;

/// mmpd as cargo builds it, beside mmp-tool (`cargo test --workspace` builds both).
fn mmpd() -> Option<PathBuf> {
    let p = Path::new(TOOL).parent()?.join("mmpd");
    p.is_file().then_some(p)
}

/// An xfs filesystem and an MMP area, each on a loop device, and the agent's parameters.
struct Fixture {
    _guard: Mount,
    xfs: Loop,
    area: Loop,
    dir: tempfile::TempDir,
    mnt: PathBuf,
    run_dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let xfs_img = dir.path().join("xfs.img");
        test_support::image::sparse_file(&xfs_img, 320 << 20);
        run_ok(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&xfs_img));
        let area_img = dir.path().join("area.img");
        test_support::image::sparse_file(&area_img, 1 << 20);
        let run_dir = dir.path().join("run");
        let area = Loop::attach(&area_img);
        run_ok(
            Command::new(TOOL)
                .args(["format-area", "--run-dir"])
                .arg(&run_dir)
                .arg(&area.dev),
        );
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        Fixture {
            _guard: Mount::guard(&mnt),
            xfs: Loop::attach(&xfs_img),
            area,
            mnt,
            run_dir,
            dir,
        }
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        let s = |p: &Path| p.to_str().unwrap().to_string();
        vec![
            ("device", s(&self.xfs.dev)),
            ("directory", s(&self.mnt)),
            ("fstype", "xfs".into()),
            ("holder", "mmpd".into()),
            ("area_device", s(&self.area.dev)),
            ("fence", "exit".into()),
            ("run_dir", s(&self.run_dir)),
        ]
    }

    fn mounted(&self) -> bool {
        test_support::mount::is_mountpoint(&self.mnt)
    }
}

fn require_mmpd_test() -> bool {
    require_agent_tools()
        && require_tools(&["mkfs.xfs"])
        && require(mmpd().is_some(), "mmpd is not built (cargo build -p mmpd)")
}

/// The pid of the mmpd the agent started, from its pid file.
fn mmpd_pid(agent: &Agent) -> u32 {
    let entry = std::fs::read_dir(&agent.state)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".pid"))
        .expect("mmpd's pid file");
    let text = std::fs::read_to_string(entry.path()).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

fn alive(pid: u32) -> bool {
    libmmp::ocf::worker::start_time(pid).is_some()
}

#[test]
fn loop_holder_mmpd_start_monitor_stop_releases_the_area() {
    if !require_mmpd_test() {
        return;
    }
    let fx = Fixture::new();
    let agent = Agent::new();
    let params = fx.params();
    let params = borrow(&params);
    let (code, out) = agent.run("validate-all", &params, &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = agent.run("start", &params, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(fx.mounted());
    for level in ["10", "20"] {
        let (code, out) = agent.run("monitor", &params, &[("OCF_CHECK_LEVEL", level)]);
        assert_eq!(code, 0, "level {level}: {out}");
    }
    let pid = mmpd_pid(&agent);
    let blk = read_block(&fx.area.dev);
    assert!(matches!(blk.seq_class(), SeqClass::Live(_)), "{blk:?}");
    assert_eq!(blk.nodename(), libmmp::host::identity::nodename());
    let (code, out) = agent.run("start", &params, &[]);
    assert_eq!(code, 0, "a second start: {out}");
    assert_eq!(mmpd_pid(&agent), pid, "the same mmpd");
    let (code, out) = agent.run("stop", &params, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!fx.mounted());
    assert!(
        wait_for(Duration::from_secs(5), || !alive(pid)),
        "mmpd gone"
    );
    assert_eq!(read_block(&fx.area.dev).seq_class(), SeqClass::Clean);
    let (code, out) = agent.run("monitor", &params, &[]);
    assert_eq!(code, 7, "{out}");
    let (code, out) = agent.run("stop", &params, &[]);
    assert_eq!(code, 0, "a second stop: {out}");

    // mmpd dies under the mount: depth 10 says so, depth 0 still sees the mount.
    let (code, out) = agent.run("start", &params, &[]);
    assert_eq!(code, 0, "{out}");
    let pid = mmpd_pid(&agent);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(wait_for(Duration::from_secs(5), || !alive(pid)));
    let (code, out) = agent.run("monitor", &params, &[("OCF_CHECK_LEVEL", "10")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("mmpd is not running"), "{out}");
    let (code, out) = agent.run("monitor", &params, &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = agent.run("stop", &params, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!fx.mounted());
}

#[test]
fn loop_holder_mmpd_area_held_by_another_node_is_refused() {
    if !require_mmpd_test() {
        return;
    }
    let fx = Fixture::new();
    // Another node's mmpd holds the area through a second loop device over its image.
    let other = Loop::attach(&fx.dir.path().join("area.img"));
    let other_run = fx.dir.path().join("other-run");
    let other_run_s = other_run.to_str().unwrap();
    let mut holder = Proc::spawn(
        &mmpd().unwrap(),
        &[
            "--run-dir",
            other_run_s,
            "--node-name",
            "other-node",
            other.dev.to_str().unwrap(),
        ],
        fx.dir.path().join("other-mmpd.log"),
        &[],
    );
    assert!(
        holder.wait_log("ready", Duration::from_secs(30)),
        "{}",
        holder.log()
    );
    let agent = Agent::new();
    let params = fx.params();
    let params = borrow(&params);
    let (code, out) = agent.run("start", &params, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("other-node"), "{out}");
    assert!(out.contains("in use on another node"), "{out}");
    assert!(!fx.mounted(), "nothing mounted");
    let (code, out) = agent.run("stop", &params, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(read_block(&fx.area.dev).nodename(), "other-node");
    holder.signal(nix::sys::signal::Signal::SIGTERM);
    holder.wait_code(Duration::from_secs(10));
}
