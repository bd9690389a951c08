//! The command line: commands against a fake proc root (the clap definition and the man page
//! are checked in the binary's own tests).

use lockd_recover::fake_proc::FakeProc;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_lockd-recover");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn fake_proc(osrelease: &str, threads: u64) -> tempfile::TempDir {
    FakeProc {
        osrelease: osrelease.into(),
        ..FakeProc::running(threads)
    }
    .build()
}

fn p(t: &tempfile::TempDir) -> &str {
    t.path().to_str().unwrap()
}

#[test]
fn grace_set_exit_codes() {
    let running = fake_proc("6.18.0\n", 8);
    let o = run(&[
        "--proc-root",
        p(&running),
        "grace",
        "set",
        "--nlm",
        "15",
        "--v4",
        "15",
    ]);
    assert_eq!(o.status.code(), Some(3), "refused while nfsd runs");
    assert!(String::from_utf8_lossy(&o.stderr).contains("only be set while nfsd is stopped"));

    let stopped = fake_proc("6.18.0\n", 0);
    let o = run(&[
        "--proc-root",
        p(&stopped),
        "grace",
        "set",
        "--nlm",
        "15",
        "--v4",
        "15",
        "--lease",
        "10",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(stopped.path().join(f)).unwrap();
    assert_eq!(read("fs/nfsd/nfsv4gracetime"), "15\n");
    assert_eq!(read("sys/fs/nfs/nlm_grace_period"), "15\n");

    let o = run(&["--proc-root", p(&stopped), "grace", "set", "--v4", "5"]);
    assert_eq!(o.status.code(), Some(2), "out of range is a usage error");
    let o = run(&["--proc-root", p(&stopped), "grace", "set"]);
    assert_eq!(o.status.code(), Some(2), "clap usage error");
}

#[test]
fn grace_end_json() {
    let t = fake_proc("6.18.0\n", 8);
    let o = run(&["--proc-root", p(&t), "--json", "grace", "end"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ended"].as_array().unwrap().len(), 2);
    assert_eq!(
        std::fs::read_to_string(t.path().join("fs/lockd/nlm_end_grace")).unwrap(),
        "Y\n"
    );
    let empty = tempfile::tempdir().unwrap();
    let o = run(&["--proc-root", p(&empty), "grace", "end"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "no knob: kernel interface missing"
    );
}

#[test]
fn release_signal_lockd_refused_on_new_kernels() {
    let t = fake_proc("6.6.0\n", 8);
    let o = run(&[
        "--proc-root",
        p(&t),
        "release",
        "--ip",
        "192.0.2.1",
        "--no-verify",
        "--method",
        "signal-lockd",
    ]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("removed in Linux 6.6") && err.contains("unlock-fs"),
        "{err}"
    );
}

#[test]
fn release_verifies_in_proc_locks() {
    let exp = tempfile::tempdir().unwrap();
    let t = fake_proc("6.18.0\n", 8);
    // --ip alone cannot be verified.
    let o = run(&["--proc-root", p(&t), "release", "--ip", "192.0.2.1"]);
    assert_eq!(o.status.code(), Some(2));
    // Clean: both knobs written, verified.
    let o = run(&[
        "--proc-root",
        p(&t),
        "--json",
        "release",
        "--ip",
        "192.0.2.1",
        "--fs",
        p(&exp),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("fs/nfsd/unlock_ip")).unwrap(),
        "192.0.2.1\n"
    );
    // A lock on that filesystem remains: exit 1, named in the message.
    let (maj, min) = lockd_recover::knobs::fs_dev(exp.path()).unwrap();
    std::fs::write(
        t.path().join("locks"),
        format!("1: POSIX  ADVISORY  WRITE 777 {maj:02x}:{min:02x}:12 0 EOF\n"),
    )
    .unwrap();
    let o = run(&[
        "--proc-root",
        p(&t),
        "release",
        "--fs",
        p(&exp),
        "--settle",
        "0.2",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pid 777"));
    // Missing knobs name the path and what to do, exit 4.
    let empty = tempfile::tempdir().unwrap();
    let o = run(&[
        "--proc-root",
        p(&empty),
        "release",
        "--ip",
        "192.0.2.1",
        "--no-verify",
    ]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unlock_ip"));
}

#[test]
fn handoff_refuses_while_ip_is_local_and_takeover_while_ip_is_not() {
    let t = fake_proc("6.18.0\n", 8);
    let exp = tempfile::tempdir().unwrap();
    let o = run(&[
        "--proc-root",
        p(&t),
        "handoff",
        "--ip",
        "127.0.0.1",
        "--fs",
        p(&exp),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("still configured"));
    assert_eq!(
        std::fs::read_to_string(t.path().join("fs/nfsd/unlock_ip")).unwrap(),
        "",
        "nothing written"
    );
    // 192.0.2.1 (TEST-NET-1) is not configured here: binding to it fails, no packet is sent.
    let o = run(&[
        "--proc-root",
        p(&t),
        "takeover",
        "--ip",
        "192.0.2.1",
        "--state-dir",
        p(&exp),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not configured"));
    let stopped = fake_proc("6.18.0\n", 0);
    let o = run(&[
        "--proc-root",
        p(&stopped),
        "takeover",
        "--ip",
        "127.0.0.1",
        "--state-dir",
        p(&exp),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("start nfsd"));
}

/// `record --final` names the floating IP, refuses while it is up, and without a mount mark
/// (a tmpfs has no block device) writes a normal format-2 ledger.
#[test]
fn record_final_refuses_while_the_ip_is_up_and_falls_back_without_a_mark() {
    let t = fake_proc("6.18.0\n", 8);
    let state = tempfile::tempdir().unwrap();
    let Ok(exp) = tempfile::tempdir_in("/dev/shm") else {
        return;
    };
    let args = |ip: &'static str| {
        let mut v = vec!["--proc-root", p(&t), "--json", "record", "--final"];
        v.extend(["--fs", p(&exp), "--state-dir", p(&state), "--ip", ip]);
        v
    };
    assert_eq!(
        run(&args("127.0.0.1")[..9]).status.code(),
        Some(2),
        "--ip is required"
    );
    let o = run(&args("127.0.0.1"));
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("before the final ledger record"));
    let ledger = state.path().join("lockd-recover-ledger.json");
    assert!(!ledger.exists(), "nothing written");
    // 192.0.2.1 (TEST-NET-1) is on no interface here.
    let o = run(&args("192.0.2.1"));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("written as a normal one"));
    let text = std::fs::read_to_string(&ledger).unwrap();
    assert!(
        text.contains("\"format\":2") && !text.contains("final_mount"),
        "{text}"
    );
}

/// Takeover with nobody recorded and no ledger: lockd's grace is ended (after --min-grace),
/// NFSv4's is left alone; with --no-end-grace nothing is written.
#[test]
fn takeover_without_clients_ends_lockd_grace_only() {
    for (extra, expect) in [(None, "Y\n"), (Some("--no-end-grace"), "")] {
        let t = fake_proc("6.18.0\n", 8);
        let state = tempfile::tempdir().unwrap();
        std::fs::create_dir(state.path().join("sm")).unwrap();
        std::fs::create_dir(state.path().join("sm.bak")).unwrap();
        let mut args = vec![
            "--proc-root",
            p(&t),
            "--json",
            "takeover",
            "--ip",
            "127.0.0.1",
            "--state-dir",
            p(&state),
            "--min-grace",
            "0",
        ];
        args.extend(extra);
        let o = run(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("fs/lockd/nlm_end_grace")).unwrap(),
            expect,
            "{extra:?}"
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("fs/nfsd/v4_end_grace")).unwrap(),
            "",
            "v4 grace left alone"
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            v["nlm_grace_ended_without_clients"].is_null(),
            extra.is_some(),
            "{v}"
        );
    }
}

#[test]
fn bad_state_dir_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let o = run(&["notify", "--state-dir", p(&t)]);
    assert_eq!(o.status.code(), Some(5));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("sm") && err.contains(p(&t)), "{err}");
    std::fs::create_dir(t.path().join("sm")).unwrap();
    std::fs::write(t.path().join("sm.bak"), "").unwrap();
    let o = run(&["notify", "--state-dir", p(&t)]);
    assert_eq!(o.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a directory"));
}

#[test]
fn show_lists_v4_clients_and_their_lock_stateids() {
    let t = fake_proc("6.1.0\n", 8);
    let c = t.path().join("fs/nfsd/clients/7");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(
        c.join("info"),
        "clientid: 0x6f2a1e5b00000007\naddress: \"198.18.0.3:724\"\nstatus: confirmed\n\
         name: \"Linux NFSv4.2 client-c\"\nminor version: 2\n",
    )
    .unwrap();
    std::fs::write(
        c.join("states"),
        "- 0x00000002b2c3d4e5f6a7b8c9d0e1f2a3: { type: lock, superblock: \"fd:10:13\", \
         filename: \"data/f\", owner: \"lock id:\\x00\" }\n",
    )
    .unwrap();
    let statd = tempfile::tempdir().unwrap();
    for d in ["sm", "sm.bak"] {
        std::fs::create_dir(statd.path().join(d)).unwrap();
    }
    let o = Command::new(BIN)
        .args(["--proc-root", p(&t), "show", "--state-dir"])
        .arg(statd.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("v4 client (connected): Linux NFSv4.2 client-c from 198.18.0.3:724 (4.2): 1 lock stateids"),
        "{out}"
    );
    assert!(out.contains("inode 13 data/f"), "{out}");
}

#[test]
fn handoff_stop_nfsd_stops_it_before_releasing_and_only_with_the_ip_down() {
    let t = fake_proc("6.1.0\n", 8);
    let exp = tempfile::tempdir().unwrap();
    let o = run(&[
        "--proc-root",
        p(&t),
        "handoff",
        "--ip",
        "127.0.0.1",
        "--fs",
        p(&exp),
        "--stop-nfsd",
    ]);
    assert_eq!(o.status.code(), Some(3), "the IP is still up");
    assert_eq!(
        std::fs::read_to_string(t.path().join("fs/nfsd/threads")).unwrap(),
        "8\n"
    );
    let o = run(&[
        "--proc-root",
        p(&t),
        "handoff",
        "--ip",
        "192.0.2.1",
        "--fs",
        p(&exp),
        "--stop-nfsd",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("fs/nfsd/threads")).unwrap(),
        "0\n"
    );
}

#[test]
fn handoff_stops_nfsd_by_itself_when_a_v4_client_holds_a_lock_on_the_fs() {
    use std::os::unix::fs::MetadataExt;
    let t = fake_proc("6.1.0\n", 8);
    let exp = tempfile::tempdir().unwrap();
    let dev = std::fs::metadata(exp.path()).unwrap().dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let c = t.path().join("fs/nfsd/clients/3");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(
        c.join("info"),
        "clientid: 0x3\naddress: \"198.18.0.3:1\"\nname: \"c\"\nminor version: 2\n",
    )
    .unwrap();
    std::fs::write(
        c.join("states"),
        format!("- 0x01: {{ type: lock, superblock: \"{maj:02x}:{min:02x}:12\", filename: \"f\", owner: \"o\" }}\n"),
    )
    .unwrap();
    let o = run(&[
        "--proc-root",
        p(&t),
        "handoff",
        "--ip",
        "192.0.2.1",
        "--fs",
        p(&exp),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("fs/nfsd/threads")).unwrap(),
        "0\n"
    );
}
