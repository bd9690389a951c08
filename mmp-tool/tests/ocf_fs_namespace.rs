//! The `mmp-fs` stop while another mount namespace of this node still has the filesystem
//! mounted. In a test binary of its own: the namespace it creates copies every mount that
//! exists at that moment, which would make the stops of tests running beside it fail too.

mod ocf_fs_support;

use libmmp::ondisk::mmp::SeqClass;
use ocf_fs_support::*;
use std::process::Command;
use std::time::Duration;
use test_support::prelude::*;

#[test]
fn loop_stop_fails_while_another_mount_namespace_still_has_it() {
    if !require_agent_tools() || !require_tools(&["unshare"]) {
        return;
    }
    let fx = Ext4Fixture::new();
    let agent = Agent::new();
    let params = fx.params();
    let params = borrow(&params);
    let (code, out) = agent.run("start", &params, &[]);
    assert_eq!(code, 0, "{out}");
    // A process that unshares its mount namespace while the filesystem is mounted keeps a copy
    // of the mount, and kmmpd running, after our unmount.
    let mut ns = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sleep", "120"])
        .spawn()
        .unwrap();
    let comm = format!("/proc/{}/comm", ns.id());
    assert!(wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep")
    }));
    let (code, out) = agent.run("stop", &params, &[]);
    let _ = ns.kill();
    let _ = ns.wait();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("another mount namespace") && out.contains("(sleep)"),
        "{out}"
    );
    assert!(!fx.mounted());
    let (code, out) = agent.run("stop", &params, &[]);
    assert_eq!(code, 0, "once that namespace is gone: {out}");
    assert!(wait_for(Duration::from_secs(3), || {
        read_block(&fx.lp.dev).seq_class() == SeqClass::Clean
    }));
}
