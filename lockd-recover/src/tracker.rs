//! nfsdcld's client tracker, checked before nfsd starts (read-only: nothing here writes to it).
//!
//! With nfsdcld (Debian 12's nfs-server.service wants it), the NFSv4 clients allowed to reclaim
//! after a restart are the rows of one table of nfsdcld's sqlite database. A failed-over server
//! only lets clients reclaim if that database came over with the shared filesystem, nfsdcld
//! opened it there before nfsd started, and it names the clients. Facts from nfs-utils
//! (`utils/nfsdcld/sqlite.c`, HEAD 7acc8b94):
//! - `main.sqlite` in the storage directory (`-s`, `[nfsdcld] storagedir`; default
//!   /var/lib/nfs/nfsdcld), schema `CLD_SQLITE_LATEST_SCHEMA_VERSION` 4: `parameters(key, value)`
//!   with `version`, `grace(current, recovery)` (one row; recovery 0 = not in grace) and
//!   `"rec-%016x"(id BLOB PRIMARY KEY, princhash BLOB)` per epoch, `id` being the client's
//!   long-form name (`sqlite_maindb_init_v4()`).
//! - nfsdcld reads the epochs once at start (`sqlite_startup_query_grace()`); on the kernel's
//!   GraceStart it sets recovery = current and creates the next table when recovery is 0, or
//!   only empties the current table when it is not ("restarted while in grace",
//!   `sqlite_grace_start()`). The clients allowed to reclaim are those of `rec-<recovery>`
//!   after that step: `rec-<current>` now when recovery is 0, `rec-<recovery>` otherwise.
//! - nfsdcld keeps the database open while it runs (`dbh`), so its open file descriptors say
//!   which database the running daemon uses.
//! - With nfsdcld and an empty table the kernel skips v4 grace entirely (`nfs4_state_start_net`,
//!   "no clients to reclaim, skipping NFSv4 grace period"), so every reclaim then fails.

use crate::knobs::ProcRoot;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The database file in nfsdcld's storage directory.
pub const DB_FILE: &str = "main.sqlite";
/// The schema version this code reads (`CLD_SQLITE_LATEST_SCHEMA_VERSION`, nfs-utils
/// `utils/nfsdcld/sqlite.c`); nfsdcld upgrades older ones itself when it starts.
pub const SCHEMA_VERSION: u32 = 4;
/// Debian's default storage directory (`CLD_DEFAULT_STORAGEDIR`).
pub const DEFAULT_STORAGE_DIR: &str = "/var/lib/nfs/nfsdcld";

#[derive(Debug, Error)]
pub enum TrackerError {
    #[error("{path} does not exist: nfsdcld has not created its database there. Mount the shared filesystem, start nfsdcld with -s {} (or [nfsdcld] storagedir in /etc/nfs.conf), then start nfsd", dir.display())]
    Missing { path: PathBuf, dir: PathBuf },
    #[error("cannot stat {path}: {source}")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nfsdcld's storage {dir} is on the root filesystem ({root}), not on the shared disk: after a failover the other node would not see these clients and every NFSv4 reclaim would fail. Put storagedir on the shared filesystem")]
    OnRootDisk { dir: PathBuf, root: PathBuf },
    #[error("nfsdcld's storage {dir} is not on the shared filesystem holding {shared}: put storagedir on it, so the client records fail over with the export")]
    NotOnShared { dir: PathBuf, shared: PathBuf },
    #[error("{path} is not a readable sqlite database ({source}): the tracker is corrupt; restore it or remove it (every NFSv4 client then loses its locks)")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {what}: {source}")]
    Query {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path} has schema version {found:?}; this lockd-recover reads nfsdcld's version {SCHEMA_VERSION}: not an nfsdcld database, or one from a newer nfs-utils")]
    UnknownSchema { path: PathBuf, found: String },
    #[error("{path}: the grace table is not sane: {reason}")]
    BadGrace { path: PathBuf, reason: String },
    #[error("nfsdcld is not running (no process named nfsdcld under {proc}): nfsd would wait about 1 s for it and silently fall back to another tracker that knows none of these clients. Start nfsdcld -s {} first", dir.display())]
    NfsdcldNotRunning { proc: PathBuf, dir: PathBuf },
    #[error("nfsdcld (pid {pid}) runs but does not have {db} open (it has {open:?}): it was started with another storage directory or before the shared filesystem was mounted; restart it with -s {}", dir.display())]
    NfsdcldOtherStorage {
        pid: u32,
        db: PathBuf,
        dir: PathBuf,
        open: Vec<PathBuf>,
    },
}

/// What to check: the storage directory, where the shared filesystem is, what is the root
/// filesystem (`/`; a test gives another directory).
#[derive(Debug, Clone)]
pub struct TrackerCheck {
    pub storage_dir: PathBuf,
    /// Any path on the shared filesystem (the export): the storage must be on the same one.
    pub shared: Option<PathBuf>,
    pub root: PathBuf,
    /// Whether a running nfsdcld must have the database open.
    pub require_nfsdcld: bool,
}

/// What the tracker holds, as nfsd will see it at its next start.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TrackerReport {
    pub db: PathBuf,
    pub schema_version: u32,
    pub current_epoch: u64,
    pub recovery_epoch: u64,
    /// nfsdcld stopped during a grace period: the next start keeps the recovery epoch.
    pub restarted_in_grace: bool,
    /// The table whose clients may reclaim at the next grace start.
    pub table: String,
    /// Their long-form client names (non-printable bytes escaped).
    pub clients: Vec<String>,
    pub nfsdcld_pid: Option<u32>,
    pub warnings: Vec<String>,
}

/// Every check, in order: the database exists, its storage is on the shared disk, it reads as
/// nfsdcld's schema with a sane grace row, then (optionally) nfsdcld runs with it open.
pub fn check(proc: &ProcRoot, c: &TrackerCheck) -> Result<TrackerReport, TrackerError> {
    let db = c.storage_dir.join(DB_FILE);
    if !db.exists() {
        return Err(TrackerError::Missing {
            path: db,
            dir: c.storage_dir.clone(),
        });
    }
    check_placement(c)?;
    let mut rep = read(&db)?;
    if c.require_nfsdcld {
        rep.nfsdcld_pid = Some(nfsdcld_with(proc, &db, &c.storage_dir)?);
    }
    if rep.clients.is_empty() {
        rep.warnings.push(format!(
            "{} lists NO client in {}: the kernel will skip NFSv4 grace entirely and every v4 client's reclaim will fail (its locks are lost). Fine only for a first start with no v4 client",
            db.display(),
            rep.table
        ));
    }
    Ok(rep)
}

fn dev_of(path: &Path) -> Result<u64, TrackerError> {
    fs::metadata(path)
        .map(|m| m.dev())
        .map_err(|source| TrackerError::Stat {
            path: path.to_path_buf(),
            source,
        })
}

/// The storage must not be on the root filesystem, and must be on the shared one when given.
pub fn check_placement(c: &TrackerCheck) -> Result<(), TrackerError> {
    let dev = dev_of(&c.storage_dir)?;
    if dev == dev_of(&c.root)? {
        return Err(TrackerError::OnRootDisk {
            dir: c.storage_dir.clone(),
            root: c.root.clone(),
        });
    }
    if let Some(shared) = &c.shared {
        if dev != dev_of(shared)? {
            return Err(TrackerError::NotOnShared {
                dir: c.storage_dir.clone(),
                shared: shared.clone(),
            });
        }
    }
    Ok(())
}

/// sqlite reports a file that is not a database at the first statement, not at open.
fn query_err<'a>(
    db: &'a Path,
    what: &'static str,
) -> impl FnOnce(rusqlite::Error) -> TrackerError + 'a {
    move |source| match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) | Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            TrackerError::Corrupt {
                path: db.to_path_buf(),
                source,
            }
        }
        _ => TrackerError::Query {
            path: db.to_path_buf(),
            what,
            source,
        },
    }
}

/// Reads the database without writing to it: opened read-only and `query_only`.
pub fn read(db: &Path) -> Result<TrackerReport, TrackerError> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| TrackerError::Corrupt {
        path: db.to_path_buf(),
        source,
    })?;
    conn.pragma_update(None, "query_only", true)
        .map_err(query_err(db, "cannot make the connection read-only"))?;
    let schema_version = schema_version(&conn, db)?;
    let (current, recovery) = grace_row(&conn, db)?;
    // The table nfsdcld's next GraceStart recovers from (sqlite_grace_start()).
    let epoch = if recovery == 0 { current } else { recovery };
    let table = format!("rec-{epoch:016x}");
    let clients = clients(&conn, db, &table)?;
    Ok(TrackerReport {
        db: db.to_path_buf(),
        schema_version,
        current_epoch: current,
        recovery_epoch: recovery,
        restarted_in_grace: recovery != 0,
        table,
        clients,
        nfsdcld_pid: None,
        warnings: Vec::new(),
    })
}

fn table_exists(conn: &Connection, db: &Path, name: &str) -> Result<bool, TrackerError> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(query_err(db, "cannot list tables"))
}

fn schema_version(conn: &Connection, db: &Path) -> Result<u32, TrackerError> {
    let unknown = |found: String| TrackerError::UnknownSchema {
        path: db.to_path_buf(),
        found,
    };
    if !table_exists(conn, db, "parameters")? {
        return Err(unknown("no parameters table".into()));
    }
    let v: Option<String> = conn
        .query_row(
            "SELECT CAST(value AS TEXT) FROM parameters WHERE key = 'version'",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(query_err(db, "cannot read the schema version"))?;
    match v {
        Some(v) if v.trim().parse() == Ok(SCHEMA_VERSION) => Ok(SCHEMA_VERSION),
        Some(v) => Err(unknown(v)),
        None => Err(unknown("no version row".into())),
    }
}

/// The one `grace` row: current >= 1, and recovery 0 or below current (nfsdcld only ever sets
/// recovery to an earlier current).
fn grace_row(conn: &Connection, db: &Path) -> Result<(u64, u64), TrackerError> {
    let bad = |reason: String| TrackerError::BadGrace {
        path: db.to_path_buf(),
        reason,
    };
    if !table_exists(conn, db, "grace")? {
        return Err(bad("no grace table".into()));
    }
    let mut stmt = conn
        .prepare("SELECT current, recovery FROM grace")
        .map_err(query_err(db, "cannot read the grace table"))?;
    let rows: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|it| it.collect())
        .map_err(query_err(db, "cannot read the grace table"))?;
    let &[(current, recovery)] = rows.as_slice() else {
        return Err(bad(format!(
            "{} rows, nfsdcld keeps exactly one",
            rows.len()
        )));
    };
    // sqlite stores the epochs as signed; nfsdcld casts them to uint64_t.
    let (current, recovery) = (current as u64, recovery as u64);
    if current == 0 {
        return Err(bad("current epoch 0 (nfsdcld starts at 1)".into()));
    }
    if recovery != 0 && recovery >= current {
        return Err(bad(format!(
            "recovery epoch {recovery} is not below the current epoch {current}"
        )));
    }
    Ok((current, recovery))
}

fn clients(conn: &Connection, db: &Path, table: &str) -> Result<Vec<String>, TrackerError> {
    if !table_exists(conn, db, table)? {
        return Err(TrackerError::BadGrace {
            path: db.to_path_buf(),
            reason: format!("the grace row names table \"{table}\", which does not exist"),
        });
    }
    // The name is ours (an epoch in hex), checked to exist above: safe to quote into SQL.
    let mut stmt = conn
        .prepare(&format!("SELECT id FROM \"{table}\" ORDER BY id"))
        .map_err(query_err(db, "cannot read the client table"))?;
    let ids: Vec<Vec<u8>> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|it| it.collect())
        .map_err(query_err(db, "cannot read the client table"))?;
    Ok(ids.iter().map(|id| id.escape_ascii().to_string()).collect())
}

/// Reclaim progress during a grace period, read from the database (read-only): nfsdcld
/// keeps the clients allowed to reclaim in `rec-<recovery>` and adds a client to
/// `rec-<current>` when the kernel records it (`nfsd4_client_record_create()`), which for
/// v4.1+ clients happens at RECLAIM_COMPLETE (`nfsd4_reclaim_complete()`,
/// `fs/nfsd/nfs4state.c`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReclaimProgress {
    pub in_grace: bool,
    pub allowed: Vec<String>,
    pub completed: Vec<String>,
}

impl ReclaimProgress {
    /// Allowed to reclaim, but not recorded again yet.
    pub fn not_completed(&self) -> Vec<String> {
        self.allowed
            .iter()
            .filter(|c| !self.completed.contains(c))
            .cloned()
            .collect()
    }
}

pub fn reclaim_progress(db: &Path) -> Result<ReclaimProgress, TrackerError> {
    let r = read(db)?;
    if !r.restarted_in_grace {
        return Ok(ReclaimProgress {
            in_grace: false,
            allowed: Vec::new(),
            completed: Vec::new(),
        });
    }
    let conn =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|source| {
            TrackerError::Corrupt {
                path: db.to_path_buf(),
                source,
            }
        })?;
    let completed = clients(&conn, db, &format!("rec-{:016x}", r.current_epoch))?;
    Ok(ReclaimProgress {
        in_grace: true,
        allowed: r.clients,
        completed,
    })
}

/// The pid of the nfsdcld that has `db` open.
fn nfsdcld_with(proc: &ProcRoot, db: &Path, dir: &Path) -> Result<u32, TrackerError> {
    let want = fs::canonicalize(db).unwrap_or_else(|_| db.to_path_buf());
    let pids = pids_named(proc.root(), "nfsdcld");
    let Some(&first) = pids.first() else {
        return Err(TrackerError::NfsdcldNotRunning {
            proc: proc.root().to_path_buf(),
            dir: dir.to_path_buf(),
        });
    };
    let mut open = Vec::new();
    for pid in &pids {
        let files = open_files(proc.root(), *pid);
        if files.iter().any(|f| f == &want) {
            return Ok(*pid);
        }
        open.extend(
            files
                .into_iter()
                .filter(|f| f.extension().is_some_and(|e| e == "sqlite")),
        );
    }
    Err(TrackerError::NfsdcldOtherStorage {
        pid: first,
        db: want,
        dir: dir.to_path_buf(),
        open,
    })
}

/// Processes whose `comm` is `name`, lowest pid first.
fn pids_named(proc_root: &Path, name: &str) -> Vec<u32> {
    let Ok(rd) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
                .is_ok_and(|c| c.trim_end() == name)
        })
        .collect();
    pids.sort_unstable();
    pids
}

fn open_files(proc_root: &Path, pid: u32) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else {
        return Vec::new();
    };
    rd.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .collect()
}

#[cfg(test)]
mod tests;
