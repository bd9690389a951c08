//! The `mmp-fs` agent with holder=mmpd: an xfs filesystem protected by an MMP area (made by
//! `mmp-tool format-area`) that an mmpd started by the agent holds, with fence=exit. The
//! watchdog fence needs a watchdog device, which this host lacks: the lab tests it.

mod ocf_fs_support;

use libmmp::ondisk::mmp::SeqClass;
use ocf_fs_support::*;
use std::time::Duration;
use test_support::prelude::*;

#[test]
fn loop_holder_mmpd_start_monitor_stop_releases_the_area() {
    if !require_mmpd_test() {
        return;
    }
    let fx = MmpdFixture::new();
    let agent = Agent::new();
    let params = fx.a.params();
    let params = borrow(&params);
    let (code, out) = agent.run("validate-all", &params, &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = agent.run("start", &params, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(fx.a.mounted());
    for level in ["10", "20"] {
        let (code, out) = agent.run("monitor", &params, &[("OCF_CHECK_LEVEL", level)]);
        assert_eq!(code, 0, "level {level}: {out}");
    }
    let pid = agent.mmpd_pid();
    let blk = read_block(&fx.a.area.dev);
    assert!(matches!(blk.seq_class(), SeqClass::Live(_)), "{blk:?}");
    assert_eq!(blk.nodename(), libmmp::host::identity::nodename());
    let (code, out) = agent.run("start", &params, &[]);
    assert_eq!(code, 0, "a second start: {out}");
    assert_eq!(agent.mmpd_pid(), pid, "the same mmpd");
    let (code, out) = agent.run("stop", &params, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!fx.a.mounted());
    assert!(
        wait_for(Duration::from_secs(5), || !alive(pid)),
        "mmpd gone"
    );
    assert_eq!(read_block(&fx.a.area.dev).seq_class(), SeqClass::Clean);
    let (code, out) = agent.run("monitor", &params, &[]);
    assert_eq!(code, 7, "{out}");
    let (code, out) = agent.run("stop", &params, &[]);
    assert_eq!(code, 0, "a second stop: {out}");

    // mmpd dies under the mount: depth 10 says so, depth 0 still sees the mount.
    let (code, out) = agent.run("start", &params, &[]);
    assert_eq!(code, 0, "{out}");
    let pid = agent.mmpd_pid();
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
    assert!(!fx.a.mounted());
}

#[test]
fn loop_holder_mmpd_area_held_by_another_node_is_refused() {
    if !require_mmpd_test() {
        return;
    }
    let fx = MmpdFixture::new();
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
    let params = fx.a.params();
    let params = borrow(&params);
    let (code, out) = agent.run("start", &params, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("other-node"), "{out}");
    assert!(out.contains("in use on another node"), "{out}");
    assert!(!fx.a.mounted(), "nothing mounted");
    let (code, out) = agent.run("stop", &params, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(read_block(&fx.a.area.dev).nodename(), "other-node");
    holder.signal(nix::sys::signal::Signal::SIGTERM);
    holder.wait_code(Duration::from_secs(10));
}
