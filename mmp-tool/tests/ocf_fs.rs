//! The `mmp-fs` OCF resource agent (holder=ext4) against loop devices, through the tools
//! Pacemaker users run: `ocf-tester`, and `crm_resource --validate/--force-start/--force-check/
//! --force-stop` (whose exit code is the agent's OCF code). Root, loop devices, e2fsprogs,
//! resource-agents, pacemaker-cli-utils and libxml2-utils are needed: the tests skip without
//! them, and fail under CI=true.

mod ocf_fs_support;

use libmmp::ondisk::mmp::{MmpBlock, SeqClass};
use ocf_fs_support::*;
use std::process::Command;
use std::time::{Duration, Instant};
use test_support::prelude::*;

fn require_pacemaker_tools() -> bool {
    require_agent_tools() && require_tools(&["crm_resource", "ocf-tester", "xmllint"])
}

#[test]
fn loop_ocf_tester_passes() {
    if !require_pacemaker_tools() {
        return;
    }
    let fx = Ext4Fixture::new();
    let provider = Provider::install("tester");
    let agent = Agent::new();
    let mut c = Command::new("ocf-tester");
    c.args(["-n", "fs1"]);
    for (k, v) in fx.params() {
        c.arg("-o").arg(format!("{k}={v}"));
    }
    c.arg(provider.agent())
        .env("MMP_HA_STATE_DIR", &agent.state);
    let out = run(&mut c);
    let text = describe(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("passed all tests"), "{text}");
    assert!(!fx.mounted());
}

#[test]
fn loop_crm_resource_good_configuration() {
    if !require_pacemaker_tools() {
        return;
    }
    let fx = Ext4Fixture::new();
    let p = Provider::install("good");
    let params = fx.params();
    let params = borrow(&params);
    let crm = |op: &str, env: &[(&str, &str)]| p.crm(&[op], &params, env);
    let (code, out) = crm("--validate", &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = crm("--force-check", &[]);
    assert_eq!(code, 7, "probe before the start: {out}");
    let (code, out) = crm("--force-start", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(fx.mounted());
    for level in ["0", "10", "20"] {
        let (code, out) = crm("--force-check", &[("OCF_CHECK_LEVEL", level)]);
        assert_eq!(code, 0, "check level {level}: {out}");
    }
    assert!(fx.mnt.join(".mmp-fs_status").is_dir());
    let blk = read_block(&fx.lp.dev);
    assert_eq!(blk.nodename(), libmmp::host::identity::nodename());
    let (code, out) = crm("--force-stop", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!fx.mounted());
    assert_eq!(read_block(&fx.lp.dev).seq_class(), SeqClass::Clean);
    let (code, out) = crm("--force-check", &[]);
    assert_eq!(code, 7, "{out}");
}

#[test]
fn crm_resource_missing_device_is_not_configured_and_a_probe_says_not_running() {
    if !require_root("the provider directory in /usr/lib/ocf") || !require_tools(&["crm_resource"])
    {
        return;
    }
    let p = Provider::install("missing");
    let dir = tempfile::tempdir().unwrap();
    let params = [
        ("device", "/dev/mmp-test-no-such-device"),
        ("directory", dir.path().to_str().unwrap()),
    ];
    let (code, out) = p.crm(&["--validate"], &params, &[]);
    assert_eq!(code, 6, "{out}");
    assert!(
        out.contains("/dev/mmp-test-no-such-device does not exist"),
        "{out}"
    );
    let (code, out) = p.crm(&["--force-start"], &params, &[]);
    assert_eq!(code, 6, "{out}");
    let (code, out) = p.crm(&["--force-check"], &params, &[]);
    assert_eq!(code, 7, "a probe where the device is missing: {out}");
    let (code, out) = p.crm(&["--force-stop"], &params, &[]);
    assert_eq!(code, 0, "{out}");
    // A missing mount point and a missing parameter are configuration errors too.
    let bad = [
        ("device", "/dev/null"),
        ("directory", "/nonexistent/mmp-test"),
    ];
    let (code, out) = p.crm(&["--validate"], &bad, &[]);
    assert_eq!(code, 6, "{out}");
    assert!(
        out.contains("/nonexistent/mmp-test does not exist"),
        "{out}"
    );
    let (code, out) = p.crm(&["--validate"], &params[1..], &[]);
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("required parameter device"), "{out}");
}

#[test]
fn loop_crm_resource_wrong_fstype_names_what_is_there() {
    if !require_pacemaker_tools() || !require_tools(&["mkfs.xfs"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("xfs.img");
    test_support::image::sparse_file(&img, 320 << 20);
    run_ok(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&img));
    let lp = Loop::attach(&img);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _guard = Mount::guard(&mnt);
    let p = Provider::install("xfs");
    let params = [
        ("device", lp.dev.to_str().unwrap()),
        ("directory", mnt.to_str().unwrap()),
    ];
    let before = std::fs::read(&img).unwrap();
    for op in ["--validate", "--force-start"] {
        let (code, out) = p.crm(&[op], &params, &[]);
        assert_eq!(code, 6, "{op}: {out}");
        assert!(out.contains("libblkid sees xfs"), "{op}: {out}");
    }
    assert!(!test_support::mount::is_mountpoint(&mnt));
    assert!(std::fs::read(&img).unwrap() == before, "nothing written");
    // xfs with holder=ext4 is refused from the parameters alone, pointing to holder=mmpd.
    let mut xfs = params.to_vec();
    xfs.push(("fstype", "xfs"));
    let (code, out) = p.crm(&["--validate"], &xfs, &[]);
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("holder=mmpd"), "{out}");
}

/// What the holder wrote, apart from what changes at each of its writes.
fn holder_fields(b: &MmpBlock) -> (u32, String, String) {
    (b.mmp_magic, b.nodename(), b.bdevname())
}

#[test]
fn loop_crm_resource_device_held_by_another_node_is_refused_and_stop_writes_nothing() {
    if !require_pacemaker_tools() {
        return;
    }
    let fx = Ext4Fixture::new();
    // Another node: the kernel mounts the same image through a second loop device.
    let other = Loop::attach(&fx.img.path);
    let _other_mount = kernel_mount(&other.dev, &fx.img.file("other-mnt")).unwrap();
    let before = read_block(&fx.lp.dev);
    assert!(matches!(before.seq_class(), SeqClass::Live(_)));
    assert_eq!(before.bdevname(), other.name());
    let p = Provider::install("held");
    let params = fx.params();
    let params = borrow(&params);
    for timeout in [None, Some("60s")] {
        let t = Instant::now();
        let mut op = vec!["--force-start"];
        op.extend(timeout.map(|t| ["--timeout", t]).into_iter().flatten());
        let (code, out) = p.crm(&op, &params, &[]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("in use on another node"), "{out}");
        let holder = format!("node '{}' device '{}'", before.nodename(), other.name());
        assert!(out.contains(&holder), "{out}");
        assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
        assert!(!fx.mounted(), "nothing mounted");
    }
    // A stop after the failed start: 0, and nothing written (the holder's fields unchanged,
    // its sequence still moving).
    let (code, out) = p.crm(&["--force-stop"], &params, &[]);
    assert_eq!(code, 0, "{out}");
    let after = read_block(&fx.lp.dev);
    assert_eq!(holder_fields(&after), holder_fields(&before));
    assert_ne!(after.mmp_seq, before.mmp_seq, "the holder kept writing");
    let (code, out) = p.crm(&["--force-check"], &params, &[]);
    assert_eq!(code, 7, "{out}");
}

#[test]
fn loop_start_and_stop_are_idempotent() {
    if !require_agent_tools() {
        return;
    }
    let fx = Ext4Fixture::new();
    let agent = Agent::new();
    let params = fx.params();
    let params = borrow(&params);
    for action in ["start", "start"] {
        let (code, out) = agent.run(action, &params, &[]);
        assert_eq!(code, 0, "{action}: {out}");
        assert!(fx.mounted());
    }
    let (code, out) = agent.run("monitor", &params, &[("OCF_CHECK_LEVEL", "10")]);
    assert_eq!(code, 0, "{out}");
    for action in ["stop", "stop"] {
        let (code, out) = agent.run(action, &params, &[]);
        assert_eq!(code, 0, "{action}: {out}");
        assert!(!fx.mounted());
    }
    let (code, out) = agent.run("monitor", &params, &[]);
    assert_eq!(code, 7, "{out}");
}

#[test]
fn loop_dead_holder_starts_within_the_advertised_timeout_and_a_short_one_is_named() {
    if !require_agent_tools() {
        return;
    }
    let fx = Ext4Fixture::new();
    // A holder that died: a live sequence that nobody updates.
    write_foreign(&fx.lp.dev, 0x1234, "dead-node");
    let agent = Agent::new();
    let params = fx.params();
    let params = borrow(&params);
    let t = Instant::now();
    let (code, out) = agent.run(
        "start",
        &params,
        &[("OCF_RESKEY_CRM_meta_timeout", "20000")],
    );
    assert_eq!(code, 6, "{out}");
    assert!(
        out.contains("dead-node") && out.contains("op start timeout="),
        "{out}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(read_block(&fx.lp.dev).mmp_seq, 0x1234, "nothing written");
    let t = Instant::now();
    let (code, out) = agent.run("start", &params, &[]);
    let took = t.elapsed();
    assert_eq!(code, 0, "{out}");
    assert!(took < Duration::from_secs(40), "{took:?} (advertised 60 s)");
    eprintln!("start after a dead holder: {took:?}");
    let (code, out) = agent.run("stop", &params, &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn loop_sigkill_in_start_and_in_stop_leaves_nothing_the_next_start_cannot_handle() {
    if !require_agent_tools() {
        return;
    }
    let fx = Ext4Fixture::new();
    let agent = Agent::new();
    let params = fx.params();
    let params = borrow(&params);
    // Killed during the claim's verification: our sequence stays in the block, unwritten.
    let mut start = spawn_agent(&agent, "start", &params, &fx.img.file("start.log"));
    assert!(
        start.wait_log("verifying our claim", Duration::from_secs(20)),
        "{}",
        start.log()
    );
    start.signal(nix::sys::signal::Signal::SIGKILL);
    start.wait_code(Duration::from_secs(5));
    assert!(!fx.mounted());
    let (code, out) = agent.run("start", &params, &[]);
    assert_eq!(code, 0, "start after a killed start: {out}");
    assert!(fx.mounted());
    // Killed while the stop waits for a busy mount point to be free.
    let mut busy = Command::new("sleep");
    busy.arg("600").current_dir(&fx.mnt);
    let mut busy = busy.spawn().unwrap();
    let mut stop = spawn_agent(&agent, "stop", &params, &fx.img.file("stop.log"));
    let seen = stop.wait_log("retrying", Duration::from_secs(20));
    stop.signal(nix::sys::signal::Signal::SIGKILL);
    stop.wait_code(Duration::from_secs(5));
    let _ = busy.kill();
    let _ = busy.wait();
    assert!(seen, "{}", stop.log());
    let (code, out) = agent.run("start", &params, &[]);
    assert_eq!(code, 0, "start after a killed stop: {out}");
    let (code, out) = agent.run("stop", &params, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!fx.mounted());
    assert_eq!(read_block(&fx.lp.dev).seq_class(), SeqClass::Clean);
}

/// The agent in the background, its stderr in `log`.
fn spawn_agent(
    agent: &Agent,
    action: &str,
    params: &[(&str, &str)],
    log: &std::path::Path,
) -> Proc {
    let mut env: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (format!("OCF_RESKEY_{k}"), v.to_string()))
        .collect();
    env.push(("MMP_HA_STATE_DIR".into(), agent.state.display().to_string()));
    env.push(("OCF_RESKEY_CRM_meta_timeout".into(), "60000".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Proc::spawn(&agent.path, &[action], log.to_path_buf(), &env)
}
