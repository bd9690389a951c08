//! The tracker checks against databases made by the real nfsdcld where it is installed
//! (nfs-kernel-server), and by nfsdcld's schema statements (`sqlite_maindb_init_v4()`,
//! nfs-utils `utils/nfsdcld/sqlite.c`) for the broken variants.

use super::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A directory on a filesystem other than the root one (tmpfs /dev/shm), standing for the
/// shared disk.
fn shared_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").unwrap()
}

fn nfsdcld_installed() -> bool {
    test_support::require::require_tools(&["nfsdcld"])
}

/// Lets the real nfsdcld create `dir/main.sqlite`. Without an rpc_pipefs pipe it exits after
/// preparing the database (`main()`: `sqlite_prepare_dbh()` comes before `cld_pipe_init()`).
fn nfsdcld_creates(dir: &Path) {
    let out = Command::new("nfsdcld")
        .args(["-F", "-s"])
        .arg(dir)
        .arg("-p")
        .arg(dir.join("no-pipefs"))
        .output()
        .unwrap();
    assert!(
        dir.join(DB_FILE).exists(),
        "nfsdcld made no database: {out:?}"
    );
}

/// The real nfsdcld running on `dir`: its pipe is a FIFO in a fake pipefs directory, which
/// it opens and waits on (`cld_pipe_init()`), keeping the database open.
struct Daemon {
    child: Child,
    _pipefs: tempfile::TempDir,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        let pipefs = tempfile::tempdir().unwrap();
        std::fs::create_dir(pipefs.path().join("nfsd")).unwrap();
        nix::unistd::mkfifo(
            &pipefs.path().join("nfsd/cld"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let child = Command::new("nfsdcld")
            .args(["-F", "-s"])
            .arg(dir)
            .arg("-p")
            .arg(pipefs.path())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let want = fs::canonicalize(dir).unwrap().join(DB_FILE);
        let until = Instant::now() + Duration::from_secs(10);
        while !open_files(Path::new("/proc"), child.id()).contains(&want) {
            assert!(Instant::now() < until, "nfsdcld never opened {want:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            _pipefs: pipefs,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nfsdcld's v4 schema, as `sqlite_maindb_init_v4()` creates it, with `version` and `grace`
/// as given.
fn schema_db(dir: &Path, version: &str, grace: &[(i64, i64)]) -> PathBuf {
    let db = dir.join(DB_FILE);
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE parameters (key TEXT PRIMARY KEY, value TEXT);
         CREATE TABLE grace (current INTEGER , recovery INTEGER);
         CREATE TABLE \"rec-0000000000000001\" (id BLOB PRIMARY KEY, princhash BLOB);
         INSERT INTO parameters VALUES ('first_time', '1');",
    )
    .unwrap();
    c.execute("INSERT INTO parameters VALUES ('version', ?1)", [version])
        .unwrap();
    for (cur, rec) in grace {
        c.execute("INSERT INTO grace VALUES (?1, ?2)", [cur, rec])
            .unwrap();
    }
    db
}

/// A client row as nfsdcld's Create upcall stores it (`sqlite_insert_client()`).
fn add_client(db: &Path, table: &str, name: &[u8]) {
    let c = Connection::open(db).unwrap();
    c.execute(
        &format!("INSERT OR REPLACE INTO \"{table}\" (id) VALUES (?1)"),
        [name],
    )
    .unwrap();
}

fn opts(dir: &Path) -> TrackerCheck {
    TrackerCheck {
        storage_dir: dir.to_path_buf(),
        shared: Some(dir.to_path_buf()),
        root: "/".into(),
        require_nfsdcld: false,
    }
}

fn no_proc() -> (tempfile::TempDir, ProcRoot) {
    let t = tempfile::tempdir().unwrap();
    let p = ProcRoot::new(t.path());
    (t, p)
}

#[test]
fn real_nfsdcld_database_with_clients_passes_and_is_not_written() {
    if !nfsdcld_installed() {
        return;
    }
    let d = shared_dir();
    nfsdcld_creates(d.path());
    let db = d.path().join(DB_FILE);
    add_client(&db, "rec-0000000000000001", b"Linux NFSv4.2 client-c");
    add_client(&db, "rec-0000000000000001", b"Linux NFSv4.1 client-d\x01");
    let before = fs::read(&db).unwrap();
    let (_t, proc) = no_proc();
    let r = check(&proc, &opts(d.path())).unwrap();
    assert_eq!(r.schema_version, 4);
    assert_eq!((r.current_epoch, r.recovery_epoch), (1, 0));
    assert_eq!(r.table, "rec-0000000000000001");
    assert_eq!(
        r.clients,
        ["Linux NFSv4.1 client-d\\x01", "Linux NFSv4.2 client-c"]
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(fs::read(&db).unwrap(), before, "the check wrote nothing");
}

#[test]
fn empty_tracker_warns_loudly() {
    if !nfsdcld_installed() {
        return;
    }
    let d = shared_dir();
    nfsdcld_creates(d.path());
    let (_t, proc) = no_proc();
    let r = check(&proc, &opts(d.path())).unwrap();
    assert!(r.clients.is_empty());
    assert!(r.warnings[0].contains("skip NFSv4 grace entirely"), "{r:?}");
}

#[test]
fn running_nfsdcld_must_have_this_database_open() {
    if !nfsdcld_installed() {
        return;
    }
    let d = shared_dir();
    let mut o = opts(d.path());
    o.require_nfsdcld = true;
    nfsdcld_creates(d.path());
    // A fake proc tree without nfsdcld.
    let (_t, fake) = no_proc();
    let e = check(&fake, &o).unwrap_err();
    assert!(matches!(e, TrackerError::NfsdcldNotRunning { .. }), "{e}");
    let real = ProcRoot::new("/proc");
    let daemon = Daemon::start(d.path());
    let r = check(&real, &o).unwrap();
    assert_eq!(r.nfsdcld_pid, Some(daemon.child.id()));
    // The same daemon seen from a check of another directory: the wrong storage.
    let other = shared_dir();
    nfsdcld_creates(other.path());
    let mut o2 = opts(other.path());
    o2.require_nfsdcld = true;
    let e = check(&real, &o2).unwrap_err();
    assert!(matches!(e, TrackerError::NfsdcldOtherStorage { .. }), "{e}");
}

#[test]
fn restarted_in_grace_recovers_from_the_recovery_table() {
    let d = shared_dir();
    let db = schema_db(d.path(), "4", &[(2, 1)]);
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE \"rec-0000000000000002\" (id BLOB PRIMARY KEY, princhash BLOB);",
        )
        .unwrap();
    add_client(&db, "rec-0000000000000001", b"old-epoch client");
    add_client(&db, "rec-0000000000000002", b"new-epoch client");
    let r = read(&db).unwrap();
    assert!(r.restarted_in_grace);
    assert_eq!(r.table, "rec-0000000000000001");
    assert_eq!(r.clients, ["old-epoch client"]);
}

#[test]
fn missing_database_is_refused() {
    let d = shared_dir();
    let (_t, proc) = no_proc();
    let e = check(&proc, &opts(d.path())).unwrap_err();
    assert!(matches!(e, TrackerError::Missing { .. }));
    assert!(e.to_string().contains("start nfsdcld with -s"), "{e}");
}

#[test]
fn corrupt_database_is_refused() {
    let d = shared_dir();
    fs::write(d.path().join(DB_FILE), vec![0x5a; 8192]).unwrap();
    let (_t, proc) = no_proc();
    let e = check(&proc, &opts(d.path())).unwrap_err();
    assert!(matches!(e, TrackerError::Corrupt { .. }), "{e}");
}

#[test]
fn unknown_schemas_are_refused() {
    for version in ["5", "3", "x"] {
        let d = shared_dir();
        let db = schema_db(d.path(), version, &[(1, 0)]);
        let e = read(&db).unwrap_err();
        assert!(
            matches!(&e, TrackerError::UnknownSchema { found, .. } if found == version),
            "{e}"
        );
    }
    // Some other sqlite database.
    let d = shared_dir();
    let db = d.path().join(DB_FILE);
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t (x);")
        .unwrap();
    assert!(matches!(read(&db), Err(TrackerError::UnknownSchema { .. })));
}

#[test]
fn insane_grace_rows_are_refused() {
    for grace in [&[][..], &[(1, 0), (2, 1)], &[(0, 0)], &[(1, 1)], &[(3, 0)]] {
        let d = shared_dir();
        let db = schema_db(d.path(), "4", grace);
        let e = read(&db).unwrap_err();
        assert!(matches!(e, TrackerError::BadGrace { .. }), "{grace:?}: {e}");
    }
}

#[test]
fn storage_on_the_root_disk_or_off_the_shared_one_is_refused() {
    let d = shared_dir();
    schema_db(d.path(), "4", &[(1, 0)]);
    let (_t, proc) = no_proc();
    // The "root filesystem" is the one holding the storage.
    let mut o = opts(d.path());
    o.root = d.path().to_path_buf();
    let e = check(&proc, &o).unwrap_err();
    assert!(matches!(e, TrackerError::OnRootDisk { .. }), "{e}");
    assert!(e.to_string().contains("not on the shared disk"));
    // The shared filesystem is another one than the storage's.
    let local = tempfile::tempdir().unwrap();
    let mut o = opts(d.path());
    o.shared = Some(local.path().to_path_buf());
    o.root = local.path().join("missing");
    assert!(matches!(check(&proc, &o), Err(TrackerError::Stat { .. })));
    o.root = "/proc".into();
    let e = check(&proc, &o).unwrap_err();
    assert!(matches!(e, TrackerError::NotOnShared { .. }), "{e}");
}

#[test]
fn reclaim_progress_names_clients_without_reclaim_complete() {
    let d = shared_dir();
    let db = schema_db(d.path(), "4", &[(2, 1)]);
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE \"rec-0000000000000002\" (id BLOB PRIMARY KEY, princhash BLOB);",
        )
        .unwrap();
    for c in [&b"done"[..], b"slow"] {
        add_client(&db, "rec-0000000000000001", c);
    }
    // The kernel records a v4.1+ client again at its RECLAIM_COMPLETE.
    add_client(&db, "rec-0000000000000002", b"done");
    let p = reclaim_progress(&db).unwrap();
    assert!(p.in_grace);
    assert_eq!(p.not_completed(), ["slow"]);
    let d2 = shared_dir();
    let idle = schema_db(d2.path(), "4", &[(1, 0)]);
    assert!(!reclaim_progress(&idle).unwrap().in_grace);
}
