//! `start-nfsd` against a fake proc tree and a stand-in rpc.nfsd that records the host name
//! it sees (the scope), "starts" nfsd by writing the thread count, and logs a tracker line to
//! a stand-in kernel log, as nfsd does while starting.

use lockd_recover::fake_proc::FakeProc;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use test_support::require::require_root;

const BIN: &str = env!("CARGO_BIN_EXE_lockd-recover");

struct Lab {
    proc: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl Lab {
    /// nfsd stopped; the stand-in rpc.nfsd logs `tracking` ("nfsdcld", "legacy").
    fn new(threads: u64, tracking: &str) -> Lab {
        let proc = FakeProc::running(threads).build();
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "#!/bin/sh\nhostname > {d}/scope\necho \"$@\" > {d}/args\n\
             for n; do :; done\necho $n > {p}/fs/nfsd/threads\n\
             echo '6,9,9,-;NFSD: Using {tracking} client tracking operations.' >> {d}/kmsg\n\
             echo '6,10,10,-;NFSD: starting 15-second grace period (net f0000098)' >> {d}/kmsg\n",
            d = dir.path().display(),
            p = proc.path().display(),
        );
        let rpc = dir.path().join("rpc.nfsd");
        fs::write(&rpc, script).unwrap();
        fs::set_permissions(&rpc, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(
            dir.path().join("kmsg"),
            "6,1,1,-;NFSD: Using legacy client tracking operations.\n",
        )
        .unwrap();
        Lab { proc, dir }
    }

    fn run(&self, extra: &[&str]) -> Output {
        let d = self.dir.path();
        Command::new(BIN)
            .arg("--proc-root")
            .arg(self.proc.path())
            .arg("start-nfsd")
            .arg("--rpc-nfsd")
            .arg(d.join("rpc.nfsd"))
            .arg("--kmsg")
            .arg(d.join("kmsg"))
            .args(["--confirm-timeout", "0.5"])
            .args(extra)
            .output()
            .unwrap()
    }

    fn read(&self, f: &str) -> String {
        fs::read_to_string(self.dir.path().join(f)).unwrap_or_default()
    }

    fn proc_file(&self, f: &str) -> String {
        fs::read_to_string(self.proc.path().join(f)).unwrap()
    }

    /// A process named nfsdcld in the fake tree, with `db` open.
    fn fake_nfsdcld(&self, db: &Path) {
        let p = self.proc.path().join("4242");
        fs::create_dir_all(p.join("fd")).unwrap();
        fs::write(p.join("comm"), "nfsdcld\n").unwrap();
        std::os::unix::fs::symlink(db, p.join("fd/6")).unwrap();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An nfsdcld database (its v4 schema, `sqlite_maindb_init_v4()`) with one client, on tmpfs
/// (not the root disk).
fn tracker_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let c = rusqlite::Connection::open(d.path().join("main.sqlite")).unwrap();
    c.execute_batch(
        "CREATE TABLE parameters (key TEXT PRIMARY KEY, value TEXT);
         CREATE TABLE grace (current INTEGER , recovery INTEGER);
         CREATE TABLE \"rec-0000000000000001\" (id BLOB PRIMARY KEY, princhash BLOB);
         INSERT INTO parameters VALUES ('version', '4');
         INSERT INTO parameters VALUES ('first_time', '0');
         INSERT INTO grace VALUES (1, 0);
         INSERT INTO \"rec-0000000000000001\" (id) VALUES (CAST('Linux NFSv4.2 c' AS BLOB));",
    )
    .unwrap();
    d
}

#[test]
fn starts_nfsd_in_its_scope_after_setting_grace() {
    if !require_root("unshare of a UTS namespace") {
        return;
    }
    let lab = Lab::new(0, "nfsdcld");
    let host = lockd_recover::scope::current();
    let o = lab.run(&[
        "--scope",
        "nfs-vip.lab",
        "--threads",
        "4",
        "--v4-grace",
        "15",
        "--lease",
        "10",
        "--nlm-grace",
        "10",
        "--",
        "-N",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(lab.read("scope"), "nfs-vip.lab\n");
    assert_eq!(lab.read("args"), "-N 3 4\n");
    assert_eq!(
        lockd_recover::scope::current(),
        host,
        "the host keeps its name"
    );
    assert_eq!(lab.proc_file("fs/nfsd/nfsv4gracetime"), "15\n");
    assert_eq!(lab.proc_file("fs/nfsd/nfsv4leasetime"), "10\n");
    assert_eq!(lab.proc_file("sys/fs/nfs/nlm_grace_period"), "10\n");
    let out = text(&o);
    assert!(out.contains("nfsd client tracking: Nfsdcld"), "{out}");
    assert!(out.contains("starting 15-second grace"), "{out}");
}

#[test]
fn refuses_when_nfsd_runs_or_the_scope_is_bad() {
    let lab = Lab::new(8, "nfsdcld");
    let o = lab.run(&["--scope", "nfs-vip", "--v4-grace", "15"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("nfsd is already running"));
    assert_eq!(lab.read("scope"), "", "rpc.nfsd never ran");
    assert_eq!(lab.proc_file("fs/nfsd/nfsv4gracetime"), "");
    let lab = Lab::new(0, "nfsdcld");
    let o = lab.run(&["--scope", "not a host name"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    fs::remove_file(lab.proc.path().join("fs/nfsd/threads")).unwrap();
    let o = lab.run(&["--scope", "nfs-vip"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "nfsd fs not mounted: {}",
        text(&o)
    );
    assert!(text(&o).contains("mount -t nfsd"), "{}", text(&o));
}

#[test]
fn tracker_is_checked_before_and_confirmed_after() {
    if !require_root("unshare of a UTS namespace") {
        return;
    }
    let t = tracker_dir();
    let dir = t.path().to_str().unwrap();
    // No nfsdcld: refused before anything starts.
    let lab = Lab::new(0, "nfsdcld");
    let o = lab.run(&["--scope", "nfs-vip", "--tracker-dir", dir]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("nfsdcld is not running"), "{}", text(&o));
    assert_eq!(lab.read("scope"), "");
    // nfsdcld with the database open, and nfsd uses it.
    lab.fake_nfsdcld(&fs::canonicalize(t.path().join("main.sqlite")).unwrap());
    let o = lab.run(&["--scope", "nfs-vip", "--tracker-dir", dir, "--shared", dir]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("1 NFSv4 clients may reclaim"),
        "{}",
        text(&o)
    );
    // nfsd fell back to the legacy tracker: stopped again, refused.
    let lab = Lab::new(0, "legacy");
    lab.fake_nfsdcld(&fs::canonicalize(t.path().join("main.sqlite")).unwrap());
    let o = lab.run(&["--scope", "nfs-vip", "--tracker-dir", dir]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("not nfsdcld"), "{}", text(&o));
    assert_eq!(
        lab.proc_file("fs/nfsd/threads"),
        "0\n",
        "nfsd stopped again"
    );
}
