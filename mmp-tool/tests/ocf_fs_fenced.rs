//! The mmp-fs agent's fence-confirmed takeover against a real Pacemaker: corosync and
//! Pacemaker run in their own namespaces (test_support::pacemaker) with node1 live and node2
//! configured but absent; the agent runs inside as node1, the MMP block names node2 as its
//! dead holder. What Pacemaker's fencing history says decides the path:
//!
//! - a manual `stonith_admin --confirm node2`: the full wait;
//! - a fence by a `fence_sbd` device: the full wait (its success is a wait, not a sight);
//! - a fence by a power device, after node2's last MMP write: the fast path, mounted;
//! - the same record when node2 wrote the block after it: the full wait.
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
