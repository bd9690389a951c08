//! The mmp-fs agent's fence-confirmed takeover against a real Pacemaker: corosync and
//! Pacemaker run in their own namespaces (test_support::pacemaker) with node1 live and node2
//! configured but absent; the agent runs inside as node1, the MMP block names node2 as its
//! dead holder. What Pacemaker's fencing history says decides the path:
//!
//! - a manual `stonith_admin --confirm node2`: the full wait;
//! - a fence by a `fence_sbd` device: the full wait (its success is a wait, not a sight);
//! - a fence by a power device, after node2's last MMP write: the fast path, mounted;
//! - the same record when node2 wrote the block after it: the full wait;
//! - holder=mmpd with a `node_map` (node2 writes `mmp-node2`): the agent's mmpd takes the
//!   killed mmpd's area on the fenced path.
//!
//! The start timeout is 12 s: the fast path (a 2 s watch, 2 s of verification, the mount)
//! fits, the full wait (20 s) does not, so a start that chose the full wait fails at once with
//! OCF_ERR_CONFIGURED naming the timeout to set, nothing mounted. Needs root, loop devices and
//! corosync + pacemaker; fails instead of skipping when CI=true.

mod ocf_fs_support;

use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::mmp::MmpBlock;
use ocf_fs_support::*;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use test_support::ocf::code_and_text;
use test_support::pacemaker::Cluster;
use test_support::prelude::*;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// node2's last write, as a crashed kmmpd leaves it: a live sequence, its name, `time`.
fn dead_holder_block(dev: &Path, time: u64) {
    let fs = MmpFs::open(Device::open(dev, Access::ReadWrite).unwrap()).unwrap();
    let sb_interval = fs.superblock().s_mmp_update_interval;
    let blk = MmpBlock::new(0x4d4d_5032, time, "node2", "sdb", sb_interval.max(5));
    fs.write_mmp_synced(&blk).unwrap();
}

/// `mmp-fs ACTION` run inside the cluster's namespaces (as node1), start timeout 12 s.
fn agent_in(cl: &Cluster, agent: &Agent, fx: &Ext4Fixture, action: &str) -> (i32, String) {
    let params = fx.params();
    let mut c = agent.command_via(cl.cmd(&agent.path), action, &borrow(&params));
    c.env("OCF_RESKEY_CRM_meta_timeout", "12000");
    code_and_text(&run(&mut c))
}

fn is_mounted_in(cl: &Cluster, dir: &Path) -> bool {
    cl.sh(&format!(
        "mountpoint -q {} && echo yes || true",
        dir.display()
    ))
    .unwrap()
    .contains("yes")
}

/// A start that chose the full wait: refused for the timeout, the reason in the log.
fn full_wait(cl: &Cluster, agent: &Agent, fx: &Ext4Fixture, why: &str) {
    let (code, text) = agent_in(cl, agent, fx, "start");
    assert_eq!(
        code, 6,
        "expected the full wait (refused for the 12 s timeout): {text}"
    );
    assert!(text.contains("no fence-confirmed takeover"), "{text}");
    assert!(text.contains(why), "expected '{why}' in: {text}");
    assert!(text.contains("timeout"), "{text}");
    assert!(!is_mounted_in(cl, &fx.mnt), "mounted after a refusal");
}

#[test]
fn fencing_history_decides_the_takeover_path() {
    if !(require_agent_tools() && require_tools(&["corosync", "pacemakerd", "stonith_admin"])) {
        return;
    }
    let fx = Ext4Fixture::new();
    let agent = Agent::new();
    // Declared after the fixture: dropped first, so its mounts go before the loop device.
    let cl = Cluster::start().expect("a one-node Pacemaker cluster");
    let last_write = now() - 2;
    dead_holder_block(&fx.lp.dev, last_write);

    cl.confirm_by_hand().unwrap();
    full_wait(&cl, &agent, &fx, "by hand");

    cl.add_fence_device("sbd", "fence_sbd").unwrap();
    cl.reboot_node2().unwrap();
    assert!(cl.fence_requests().contains("action=reboot"));
    full_wait(&cl, &agent, &fx, "fence_sbd");

    cl.remove_fence_device("sbd").unwrap();
    cl.add_fence_device("power", "fence_mmptest").unwrap();
    cl.reboot_node2().unwrap();
    let t = std::time::Instant::now();
    let (code, text) = agent_in(&cl, &agent, &fx, "start");
    // Reported, not asserted: the figures are in BENCHMARKS.md.
    eprintln!("fence-confirmed start: {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(code, 0, "fence-confirmed start failed: {text}");
    assert!(text.contains("fence-confirmed takeover"), "{text}");
    assert!(is_mounted_in(&cl, &fx.mnt));
    let (code, text) = agent_in(&cl, &agent, &fx, "stop");
    assert_eq!(code, 0, "{text}");
    assert!(!is_mounted_in(&cl, &fx.mnt));

    // node2 came back and wrote after that fence (and then died unfenced).
    dead_holder_block(&fx.lp.dev, now() + 2);
    full_wait(&cl, &agent, &fx, "came back since");
}

/// mmpd as cargo builds it, beside mmp-tool (`cargo test --workspace` builds both).
fn mmpd() -> Option<std::path::PathBuf> {
    let p = Path::new(TOOL).parent()?.join("mmpd");
    p.is_file().then_some(p)
}

/// holder=mmpd: node2's mmpd (writing the MMP name `mmp-node2`, mapped by `node_map`) is
/// killed on an xfs filesystem's MMP area; after a power fence of node2 the agent's mmpd takes
/// the area on the fenced path and the agent mounts.
#[test]
fn fenced_takeover_with_the_mmpd_holder_and_a_node_map() {
    if !(require_agent_tools()
        && require_tools(&["corosync", "pacemakerd", "stonith_admin", "mkfs.xfs"])
        && require(mmpd().is_some(), "mmpd is not built (cargo build -p mmpd)"))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let xfs_img = dir.path().join("xfs.img");
    test_support::image::sparse_file(&xfs_img, 320 << 20);
    run_ok(
        std::process::Command::new("mkfs.xfs")
            .args(["-q", "-f"])
            .arg(&xfs_img),
    );
    let area_img = dir.path().join("area.img");
    test_support::image::sparse_file(&area_img, 1 << 20);
    let (xfs, area) = (Loop::attach(&xfs_img), Loop::attach(&area_img));
    let run_dir = dir.path().join("run");
    run_ok(
        std::process::Command::new(TOOL)
            .args(["format-area", "--run-dir"])
            .arg(&run_dir)
            .arg(&area.dev),
    );
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let params = vec![
        ("device", s(&xfs.dev)),
        ("directory", s(&mnt)),
        ("fstype", "xfs".to_string()),
        ("holder", "mmpd".to_string()),
        ("area_device", s(&area.dev)),
        ("run_dir", s(&run_dir)),
        ("node_map", "node2=mmp-node2".to_string()),
    ];
    // node2's mmpd, then its crash.
    let node2_run = s(&dir.path().join("run-node2"));
    let mut old = Proc::spawn(
        &mmpd().unwrap(),
        &[
            "--run-dir",
            &node2_run,
            "--node-name",
            "mmp-node2",
            "--fence",
            "exit",
            &s(&area.dev),
        ],
        dir.path().join("node2.log"),
        &[],
    );
    assert!(
        old.wait_log("ready:", std::time::Duration::from_secs(60)),
        "{}",
        old.log()
    );
    old.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(old.wait_code(std::time::Duration::from_secs(10)).is_some());
    assert_eq!(read_block(&area.dev).nodename(), "mmp-node2");

    let agent = Agent::new();
    let cl = Cluster::start().expect("a one-node Pacemaker cluster");
    cl.add_fence_device("power", "fence_mmptest").unwrap();
    cl.wait_fenced_by_device(std::time::Duration::from_secs(60))
        .unwrap();
    let in_cluster = |action: &str| {
        let mut c = agent.command_via(cl.cmd(&agent.path), action, &borrow(&params));
        c.env("OCF_RESKEY_CRM_meta_timeout", "12000");
        code_and_text(&run(&mut c))
    };
    let t = std::time::Instant::now();
    let (code, text) = in_cluster("start");
    eprintln!(
        "fence-confirmed start (holder=mmpd): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let logs: String = std::fs::read_dir(&agent.state)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert_eq!(
        code, 0,
        "fence-confirmed start failed: {text}\nmmpd: {logs}"
    );
    assert!(text.contains("fence-confirmed takeover"), "{text}");
    assert!(is_mounted_in(&cl, &mnt));
    assert_eq!(read_block(&area.dev).nodename(), "node1");
    let (code, text) = in_cluster("stop");
    assert_eq!(code, 0, "{text}");
    assert!(!is_mounted_in(&cl, &mnt));
}
