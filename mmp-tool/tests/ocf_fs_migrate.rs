//! The `mmp-fs` agent's migrate_to / migrate_from (allow-migrate=true): a planned move as a
//! handoff (HANDOFF.md) on real devices. Two loop devices over one image are the two nodes; the
//! target's actions run in a UTS namespace whose host name is `host-b`, so the two nodes have
//! different MMP names (the kernel's kmmpd still writes the real host name). Needs root; fails
//! instead of skipping when CI=true.

mod ocf_fs_support;

use libmmp::ondisk::handoff::HandoffRead;
use ocf_fs_support::*;
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use test_support::mmp::read_block;
use test_support::mount::is_mountpoint;
use test_support::ocf::code_and_text;
use test_support::prelude::*;

const MIGRATE: [(&str, &str); 2] = [
    ("OCF_RESKEY_CRM_meta_migrate_source", "node-a"),
    ("OCF_RESKEY_CRM_meta_migrate_target", "node-b"),
];

fn node_map() -> String {
    format!(
        "node-a={} node-b=host-b",
        libmmp::host::identity::nodename()
    )
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

/// `action` as node-b: in a UTS namespace named host-b.
fn as_node_b(agent: &Agent, action: &str, params: &[(&'static str, String)]) -> (i32, String) {
    let mut base = Command::new("unshare");
    base.args(["--uts", "sh", "-c", "hostname host-b && exec \"$0\" \"$@\""])
        .arg(&agent.path);
    let mut c = agent.command_via(base, action, &borrow(params));
    c.envs(MIGRATE);
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
    let mut pa = fx.params();
    pa.push(("node_map", node_map()));
    let (code, out) = agent.run("start", &borrow(&pa), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(fx.mounted());

    let t = Instant::now();
    let (code, out) = agent.run("migrate_to", &borrow(&pa), &MIGRATE);
    let offer_s = t.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{out}");
    assert!(!fx.mounted(), "the source unmounted");
    let blk = read_block(&lb.dev);
    let HandoffRead::Valid(rec) = blk.handoff() else {
        panic!("no offer on the block: {blk:?}")
    };
    assert_eq!(
        (rec.source.as_str(), rec.target.as_str()),
        (libmmp::host::identity::nodename().as_str(), "host-b")
    );

    let pb = target_params(&fx, &lb.dev);
    let t = Instant::now();
    let (code, out) = as_node_b(&agent, "migrate_from", &pb);
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
    let (code, out) = as_node_b(&agent, "monitor", &pb);
    assert_eq!(code, 0, "{out}");
    let now = read_block(&lb.dev);
    assert_eq!(
        now.bdevname(),
        before.bdevname(),
        "the target's kmmpd holds it"
    );

    let (code, out) = as_node_b(&agent, "stop", &pb);
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
    let (code, out) = as_node_b(&agent, "migrate_from", &target_params(&fx, &lb.dev));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no handoff offered by"), "{out}");
    assert!(!is_mountpoint(&mnt_b));
    assert_eq!(read_block(&lb.dev), before, "nothing written");
    // holder=mmpd has no migration: a configuration error, nothing done.
    let mut p = target_params(&fx, &lb.dev);
    p.push(("holder", "mmpd".into()));
    p.push((
        "area_device",
        fx.img.file("area").to_str().unwrap().to_string(),
    ));
    let (code, out) = as_node_b(&agent, "migrate_from", &p);
    assert_ne!(code, 0, "{out}");
    assert_eq!(read_block(&lb.dev), before, "nothing written");
}
