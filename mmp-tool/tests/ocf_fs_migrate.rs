//! The `mmp-fs` agent's migrate_to / migrate_from (allow-migrate=true): a planned move as a
//! handoff (HANDOFF.md) on real devices, for holder=ext4 and holder=mmpd. Two loop devices over
//! one image are the two nodes; the target's actions run in a UTS namespace whose host name is
//! `host-b`, so the two nodes have different MMP names (the kernel's kmmpd still writes the real
//! host name; the target's mmpd, started in that namespace, writes host-b). Needs root; fails
//! instead of skipping when CI=true.

mod handoff_support;
mod ocf_fs_support;

use handoff_support::{hostname, write_offer};
use libmmp::ondisk::handoff::{format_nonce, HandoffRead, HandoffRecord};
use libmmp::ondisk::mmp::SeqClass;
use ocf_fs_support::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use test_support::mmp::read_block;
use test_support::mount::is_mountpoint;
use test_support::ocf::code_and_text;
use test_support::prelude::*;

const MIGRATE: [(&str, &str); 2] = [
    ("OCF_RESKEY_CRM_meta_migrate_source", "node-a"),
    ("OCF_RESKEY_CRM_meta_migrate_target", "node-b"),
];

fn node_map() -> String {
    format!("node-a={} node-b=host-b", hostname())
}

fn with_node_map(mut params: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    params.push(("node_map", node_map()));
    params
}

/// The offer from this host to host-b that migrate_to left on the block of `dev`.
fn offer_on(dev: &Path) -> HandoffRecord {
    let blk = read_block(dev);
    let HandoffRead::Valid(rec) = blk.handoff() else {
        panic!("no offer on the block: {blk:?}")
    };
    assert_eq!(
        (rec.source.as_str(), rec.target.as_str()),
        (hostname().as_str(), "host-b")
    );
    rec
}

/// The target's parameters: its loop device, mount point and run directory.
fn target_params(fx: &Ext4Fixture, dev: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("device", dev.to_str().unwrap().to_string()),
        (
            "directory",
            fx.img.file("mnt-b").to_str().unwrap().to_string(),
        ),
        (
            "run_dir",
            fx.img.file("run-b").to_str().unwrap().to_string(),
        ),
        ("node_map", node_map()),
    ]
}

/// `action` as node-b: in a UTS namespace named host-b, with `env` besides the migration's.
fn as_node_b(
    agent: &Agent,
    action: &str,
    params: &[(&'static str, String)],
    env: &[(&str, &str)],
) -> (i32, String) {
    let mut base = Command::new("unshare");
    base.args(["--uts", "sh", "-c", "hostname host-b && exec \"$0\" \"$@\""])
        .arg(&agent.path);
    let mut c = agent.command_via(base, action, &borrow(params));
    c.envs(MIGRATE).envs(env.iter().copied());
    code_and_text(&run(&mut c))
}

#[test]
fn migrate_to_and_from_move_the_filesystem_without_the_full_wait() {
    if !require_agent_tools() || !require_tools(&["unshare", "e2fsck"]) {
        return;
    }
    let fx = Ext4Fixture::new();
    let lb = Loop::attach(&fx.img.path);
    let mnt_b = fx.img.file("mnt-b");
    std::fs::create_dir_all(&mnt_b).unwrap();
    let _gb = Mount::guard(&mnt_b);
    let agent = Agent::new();
    let pa = with_node_map(fx.params());
    let (code, out) = agent.run("start", &borrow(&pa), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(fx.mounted());

    let t = Instant::now();
    let (code, out) = agent.run("migrate_to", &borrow(&pa), &MIGRATE);
    let offer_s = t.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{out}");
    assert!(!fx.mounted(), "the source unmounted");
    offer_on(&lb.dev);

    let pb = target_params(&fx, &lb.dev);
    let t = Instant::now();
    let (code, out) = as_node_b(&agent, "migrate_from", &pb, &[]);
    let from_s = t.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{out}");
    assert!(is_mountpoint(&mnt_b), "the target mounted");
    assert!(out.contains("on the handoff from"), "{out}");
    eprintln!("migrate_to {offer_s:.2} s, migrate_from {from_s:.2} s");
    assert!(
        from_s < 5.0,
        "migrate_from took {from_s:.1} s: not the full wait"
    );

    // Pacemaker then stops the source: nothing mounted there, nothing written.
    let before = read_block(&lb.dev);
    let (code, out) = agent.run("stop", &borrow(&pa), &[]);
    assert_eq!(code, 0, "{out}");
    let (code, _) = agent.run("monitor", &borrow(&pa), &[]);
    assert_eq!(code, 7, "the source is stopped");
    let (code, out) = as_node_b(&agent, "monitor", &pb, &[]);
    assert_eq!(code, 0, "{out}");
    let now = read_block(&lb.dev);
    assert_eq!(
        now.bdevname(),
        before.bdevname(),
        "the target's kmmpd holds it"
    );

    let (code, out) = as_node_b(&agent, "stop", &pb, &[]);
    assert_eq!(code, 0, "{out}");
    let fsck = Command::new("e2fsck")
        .args(["-fn"])
        .arg(&fx.img.path)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}

#[test]
fn migrate_from_without_an_offer_fails_and_writes_nothing() {
    if !require_agent_tools() || !require_tools(&["unshare"]) {
        return;
    }
    let fx = Ext4Fixture::new();
    let lb = Loop::attach(&fx.img.path);
    let mnt_b = fx.img.file("mnt-b");
    std::fs::create_dir_all(&mnt_b).unwrap();
    let _gb = Mount::guard(&mnt_b);
    let agent = Agent::new();
    let before = read_block(&lb.dev);
    let (code, out) = as_node_b(&agent, "migrate_from", &target_params(&fx, &lb.dev), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no handoff offered by"), "{out}");
    assert!(!is_mountpoint(&mnt_b));
    assert_eq!(read_block(&lb.dev), before, "nothing written");
}

/// holder=mmpd: the images with host a's view, and host b's; None when the test cannot run here.
fn mmpd_hosts() -> Option<(MmpdFixture, MmpdHost)> {
    if !require_mmpd_test() || !require_tools(&["unshare"]) {
        return None;
    }
    let fx = MmpdFixture::new();
    let b = fx.host("b");
    Some((fx, b))
}

#[test]
fn loop_holder_mmpd_migrate_to_and_from_hand_the_area_to_the_target() {
    let Some((fx, b)) = mmpd_hosts() else {
        return;
    };
    let (agent_a, agent_b) = (Agent::new(), Agent::new());
    let (pa, pb) = (with_node_map(fx.a.params()), with_node_map(b.params()));
    let (code, out) = agent_a.run("start", &borrow(&pa), &[]);
    assert_eq!(code, 0, "{out}");
    let pid_a = agent_a.mmpd_pid();

    let t = Instant::now();
    let (code, out) = agent_a.run("migrate_to", &borrow(&pa), &MIGRATE);
    let to_s = t.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{out}");
    assert!(!fx.a.mounted() && !alive(pid_a), "the source let go: {out}");
    let nonce = format_nonce(offer_on(&fx.a.area.dev).nonce);

    let t = Instant::now();
    let (code, out) = as_node_b(&agent_b, "migrate_from", &pb, &[]);
    let from_s = t.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{out}");
    eprintln!("holder=mmpd: migrate_to {to_s:.2} s, migrate_from {from_s:.2} s");
    assert!(b.mounted(), "the target mounted: {out}");
    let pid_b = agent_b.mmpd_pid();
    let blk = read_block(&b.area.dev);
    assert!(matches!(blk.seq_class(), SeqClass::Live(_)), "{blk:?}");
    assert_eq!(blk.nodename(), "host-b", "the target's mmpd holds the area");
    assert!(
        from_s < 5.0,
        "migrate_from took {from_s:.1} s: not the full wait"
    );
    let confirm = run(Command::new(TOOL)
        .args(["handoff", "--json", "--confirm", &nonce])
        .arg(&fx.a.area.dev));
    assert!(confirm.status.success(), "{}", describe(&confirm));

    // Pacemaker then stops the source (nothing left to do there), and later the target.
    let (code, out) = agent_a.run("stop", &borrow(&pa), &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = agent_a.run("monitor", &borrow(&pa), &[]);
    assert_eq!(code, 7, "the source is stopped: {out}");
    let (code, out) = as_node_b(&agent_b, "monitor", &pb, &[("OCF_CHECK_LEVEL", "10")]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = as_node_b(&agent_b, "stop", &pb, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(wait_for(Duration::from_secs(5), || !alive(pid_b)));
    let blk = read_block(&b.area.dev);
    assert_eq!(
        (blk.seq_class(), blk.nodename()),
        (SeqClass::Clean, "host-b".into())
    );
}

#[test]
fn loop_holder_mmpd_migrate_from_without_an_offer_for_us_fails_and_writes_nothing() {
    let Some((fx, b)) = mmpd_hosts() else {
        return;
    };
    let agent = Agent::new();
    let pb = with_node_map(b.params());
    let area = b.area.dev.to_str().unwrap();
    let refused = |case: &str| {
        let before = read_block(&b.area.dev).encode_raw();
        let (code, out) = as_node_b(&agent, "migrate_from", &pb, &[]);
        assert_eq!(code, 1, "{case}: {out}");
        assert!(
            out.contains(&format!("{area}: no handoff offered by")),
            "{case}: {out}"
        );
        assert!(!b.mounted(), "{case}: nothing mounted");
        assert!(agent.pid_files().is_empty(), "{case}: no mmpd started");
        assert_eq!(
            read_block(&b.area.dev).encode_raw(),
            before,
            "{case}: nothing written"
        );
    };
    refused("no offer (the CLEAN area)");
    write_offer(&fx.a.area.dev, "host-c", 0x1234, |_| {});
    refused("an offer to another node");
    write_offer(&fx.a.area.dev, "host-b", 0x1234, |_| {});
    refused("an offer from another source than node-a");
}
