//! The statd state directory: the binary `state` file and the `sm/` and `sm.bak/` records,
//! in the exact formats nfs-utils reads and writes (`support/nsm/file.c`).
//!
//! Rules kept here:
//! - Nothing is opened through a symlink (`O_NOFOLLOW`, `symlink_metadata`); a symlink where a
//!   record or the state file should be is reported and left alone.
//! - Every rewrite is a temp file in the same directory, fsynced, given the owner and mode of
//!   the file it replaces, then `rename()`d over it, and the directory fsynced.
//! - Malformed lines are reported and kept byte for byte; only a line we matched exactly is
//!   ever removed.

mod files;
mod record;
#[cfg(test)]
mod tests;

pub use record::{parse_file, MonitorRecord, RecordError};

use files::{
    atomic_replace, check_real_dir, merge_lines, owner_of, read_nofollow, sync_dir, Owner,
};
use serde::Serialize;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const SM_DIR: &str = "sm";
pub const SM_BAK_DIR: &str = "sm.bak";
pub const STATE_FILE: &str = "state";
const STATE_TMP: &str = ".state.new";

#[derive(Debug, Error)]
pub enum StatdError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is a symlink; statd files are never followed through symlinks, replace it with a real {what}")]
    Symlink { path: PathBuf, what: &'static str },
    #[error("{path} is not a directory; a statd directory needs {SM_DIR}/ and {SM_BAK_DIR}/ subdirectories (create them, owned by the statd user)")]
    NotADirectory { path: PathBuf },
    #[error("invalid record file name {0:?}: it must be non-empty and contain no '/', whitespace or leading '.'")]
    BadName(String),
}

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StatdError + 'a {
    move |source| StatdError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A line that could not be parsed; it is reported and kept in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MalformedLine {
    pub file: PathBuf,
    pub line_no: usize,
    pub reason: String,
}

/// Something in the directory we did not read (symlink, non-regular file, unreadable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedEntry {
    pub path: PathBuf,
    pub reason: String,
}

/// One host file with its parsed records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    /// File name: the canonical peer name, and what sm-notify resolves (`smn_get_host()`).
    pub name: String,
    pub records: Vec<MonitorRecord>,
}

#[derive(Debug, Default, Clone)]
pub struct Listing {
    pub hosts: Vec<HostFile>,
    pub malformed: Vec<MalformedLine>,
    pub skipped: Vec<SkippedEntry>,
}

/// `state` update result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StateChange {
    /// The value found in the file, if it held at least 4 bytes.
    pub previous: Option<i32>,
    pub state: i32,
}

/// The rules of nfs-utils `nsm_get_state()`: a missing or short file gives 1 and forces an
/// update; an even value is made odd; an update adds 2. The result is always odd.
pub fn next_state(current: Option<i32>, update: bool) -> i32 {
    let (mut state, update) = match current {
        None => (1, true),
        Some(v) => (v, update),
    };
    if state & 1 == 0 {
        state = state.wrapping_add(1);
    }
    if update {
        // nfs-utils adds 2 to a C int; wrapping keeps the value odd, like its overflow does.
        state = state.wrapping_add(2);
    }
    state
}

/// Validates a record file name (`statd_canonical_name()` never yields '/' or whitespace).
pub fn check_host_name(name: &str) -> Result<(), StatdError> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains('/')
        || name.chars().any(char::is_whitespace)
    {
        return Err(StatdError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Which record directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordDir {
    Sm,
    SmBak,
}

impl RecordDir {
    pub fn name(self) -> &'static str {
        match self {
            RecordDir::Sm => SM_DIR,
            RecordDir::SmBak => SM_BAK_DIR,
        }
    }
}

/// A statd state directory (`-P DIR` of rpc.statd and sm-notify).
#[derive(Debug, Clone)]
pub struct StatdDir {
    root: PathBuf,
}

impl StatdDir {
    /// Opens an existing statd directory; `sm/` and `sm.bak/` must be real directories.
    pub fn open(root: &Path) -> Result<Self, StatdError> {
        check_real_dir(root)?;
        let d = Self {
            root: root.to_path_buf(),
        };
        check_real_dir(&d.dir(RecordDir::Sm))?;
        check_real_dir(&d.dir(RecordDir::SmBak))?;
        Ok(d)
    }

    /// Creates `root`, `sm/` and `sm.bak/` if missing (mode 0700 like nfs-utils' packaging).
    pub fn create(root: &Path) -> Result<Self, StatdError> {
        for p in [root.to_path_buf(), root.join(SM_DIR), root.join(SM_BAK_DIR)] {
            match fs::symlink_metadata(&p) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&p)
                        .map_err(io_err("cannot create directory", &p))?;
                }
                Err(e) => return Err(io_err("cannot stat", &p)(e)),
            }
        }
        Self::open(root)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, which: RecordDir) -> PathBuf {
        self.root.join(which.name())
    }

    fn dir_owner(&self) -> Result<Owner, StatdError> {
        let p = self.dir(RecordDir::Sm);
        let md = fs::symlink_metadata(&p).map_err(io_err("cannot stat", &p))?;
        Ok(Owner {
            uid: md.uid(),
            gid: md.gid(),
            mode: 0o600,
        })
    }

    /// Reads `state`: `Ok(None)` if missing or shorter than 4 bytes (as nfs-utils treats it).
    /// The value is a native-endian C int.
    pub fn read_state(&self) -> Result<Option<i32>, StatdError> {
        let path = self.root.join(STATE_FILE);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("cannot stat", &path)(e)),
            Ok(_) => {}
        }
        let data = read_nofollow(&path, "file")?;
        Ok(data
            .get(..4)
            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])))
    }

    /// Writes `state` atomically (`.state.new` with O_SYNC, then rename), keeping the owner
    /// and mode of the previous file.
    pub fn write_state(&self, state: i32) -> Result<(), StatdError> {
        let path = self.root.join(STATE_FILE);
        let owner = match fs::symlink_metadata(&path) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(StatdError::Symlink { path, what: "file" })
            }
            Ok(md) => Owner {
                uid: md.uid(),
                gid: md.gid(),
                mode: md.mode(),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Owner {
                mode: 0o644,
                ..self.dir_owner()?
            },
            Err(e) => return Err(io_err("cannot stat", &path)(e)),
        };
        debug_assert_eq!(STATE_TMP, format!(".{STATE_FILE}.new"));
        atomic_replace(&self.root, STATE_FILE, &state.to_ne_bytes(), owner)
    }

    /// Reads, advances (see [`next_state`]) and writes the state number.
    pub fn bump_state(&self, update: bool) -> Result<StateChange, StatdError> {
        let previous = self.read_state()?;
        let state = next_state(previous, update);
        if Some(state) != previous {
            self.write_state(state)?;
        }
        Ok(StateChange { previous, state })
    }

    /// Lists and parses every host file of `which`. Entries whose name starts with '.' (our
    /// temp files) are ignored; symlinks and non-regular files are reported as skipped.
    pub fn list(&self, which: RecordDir) -> Result<Listing, StatdError> {
        let dir = self.dir(which);
        let mut listing = Listing::default();
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("cannot list", &dir))? {
            let entry = entry.map_err(io_err("cannot list", &dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                listing.skipped.push(SkippedEntry {
                    path,
                    reason: "file name is not UTF-8".into(),
                });
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let md = match fs::symlink_metadata(&path) {
                Ok(md) => md,
                // Gone since the listing: rpc.statd renamed `<name>.new` over `<name>` meanwhile
                // (seen in the lab: the nfs-locks worker failed on it). Take `<name>` instead,
                // which readdir may not have returned.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if let Some(base) = name.strip_suffix(".new") {
                        let bp = dir.join(base);
                        if fs::symlink_metadata(&bp).is_ok_and(|m| m.is_file()) {
                            names.push((base.to_owned(), bp));
                        }
                    }
                    continue;
                }
                Err(e) => return Err(io_err("cannot stat", &path)(e)),
            };
            if md.file_type().is_symlink() {
                listing.skipped.push(SkippedEntry {
                    path,
                    reason: "symlink, not followed".into(),
                });
                continue;
            }
            if !md.is_file() {
                listing.skipped.push(SkippedEntry {
                    path,
                    reason: "not a regular file".into(),
                });
                continue;
            }
            names.push((name, path));
        }
        // rpc.statd rewrites a record through `<name>.new` and a rename
        // (nfs-utils `nsm_make_temp_pathname`); a crash in between leaves `<name>.new` next to
        // `<name>`. That is a stale copy of a record, not a client named "<name>.new": report it
        // as skipped (and keep it) instead of notifying it.
        let present: std::collections::HashSet<String> =
            names.iter().map(|(n, _)| n.clone()).collect();
        names.retain(|(name, path)| match name.strip_suffix(".new") {
            Some(base) if present.contains(base) => {
                listing.skipped.push(SkippedEntry {
                    path: path.clone(),
                    reason: format!(
                        "temporary copy of {base} left by an interrupted rpc.statd rewrite"
                    ),
                });
                false
            }
            _ => true,
        });
        names.sort();
        names.dedup_by(|a, b| a.0 == b.0);
        for (name, path) in names {
            let data = match read_nofollow(&path, "file") {
                Ok(d) => d,
                Err(e) => {
                    listing.skipped.push(SkippedEntry {
                        path,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let (records, malformed) = parse_file(&path, &data);
            listing.malformed.extend(malformed);
            listing.hosts.push(HostFile { name, records });
        }
        Ok(listing)
    }

    /// Adds a record line to `which/<host>` (creating the file `O_EXCL|O_SYNC`, mode 0600,
    /// owned like `sm/`), unless a line with the same `(mon_name, my_name)` is already there.
    pub fn add_record(
        &self,
        which: RecordDir,
        host: &str,
        rec: &MonitorRecord,
    ) -> Result<(), StatdError> {
        check_host_name(host)?;
        let dir = self.dir(which);
        let path = dir.join(host);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let owner = self.dir_owner()?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_SYNC)
                    .open(&path)
                    .map_err(io_err("cannot create", &path))?;
                f.write_all(rec.to_line().as_bytes())
                    .map_err(io_err("cannot write", &path))?;
                std::os::unix::fs::fchown(&f, Some(owner.uid), Some(owner.gid))
                    .map_err(io_err("cannot set owner of", &path))?;
                sync_dir(&dir)
            }
            Err(e) => Err(io_err("cannot stat", &path)(e)),
            Ok(md) if md.file_type().is_symlink() => {
                Err(StatdError::Symlink { path, what: "file" })
            }
            Ok(md) => {
                let data = read_nofollow(&path, "file")?;
                let (records, _) = parse_file(&path, &data);
                if records.iter().any(|r| r.same_key(rec)) {
                    return Ok(());
                }
                let mut data = data;
                if !data.is_empty() && !data.ends_with(b"\n") {
                    data.push(b'\n');
                }
                data.extend_from_slice(rec.to_line().as_bytes());
                atomic_replace(&dir, host, &data, owner_of(&md))
            }
        }
    }

    /// Removes the line matching `rec` by `(mon_name, my_name)` from `which/<host>`; unlinks the
    /// file when nothing (not even a malformed line) is left. Returns whether a line was removed.
    pub fn remove_record(
        &self,
        which: RecordDir,
        host: &str,
        rec: &MonitorRecord,
    ) -> Result<bool, StatdError> {
        check_host_name(host)?;
        let dir = self.dir(which);
        let path = dir.join(host);
        let md = match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("cannot stat", &path)(e)),
            Ok(md) if md.file_type().is_symlink() => {
                return Err(StatdError::Symlink { path, what: "file" })
            }
            Ok(md) => md,
        };
        let data = read_nofollow(&path, "file")?;
        let mut kept: Vec<u8> = Vec::with_capacity(data.len());
        let mut removed = false;
        for line in data.split_inclusive(|&b| b == b'\n') {
            let matches = !removed
                && std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| MonitorRecord::parse_line(s).ok())
                    .is_some_and(|r| r.same_key(rec));
            if matches {
                removed = true;
            } else {
                kept.extend_from_slice(line);
            }
        }
        if !removed {
            return Ok(false);
        }
        if kept.iter().all(|b| b.is_ascii_whitespace()) {
            // No directory fsync here (nfs-utils does none either): if the unlink is lost in a
            // crash, the client is merely notified once more on the next run.
            fs::remove_file(&path).map_err(io_err("cannot remove", &path))?;
        } else {
            atomic_replace(&dir, host, &kept, owner_of(&md))?;
        }
        Ok(true)
    }

    /// Moves every regular file of `sm/` to `sm.bak/`, as `nsm_retire_monitored_hosts()` does.
    /// Where `sm.bak/<host>` already exists, its lines are kept and the new ones appended
    /// (nfs-utils' plain rename would drop the older lines). Returns what was skipped.
    pub fn retire_monitored(&self) -> Result<Vec<SkippedEntry>, StatdError> {
        let sm = self.dir(RecordDir::Sm);
        let bak = self.dir(RecordDir::SmBak);
        let mut skipped = Vec::new();
        for entry in fs::read_dir(&sm).map_err(io_err("cannot list", &sm))? {
            let entry = entry.map_err(io_err("cannot list", &sm))?;
            let src = entry.path();
            let name = entry.file_name();
            match name.to_str() {
                Some(n) if !n.starts_with('.') => {}
                _ => continue,
            }
            let md = fs::symlink_metadata(&src).map_err(io_err("cannot stat", &src))?;
            if !md.is_file() {
                skipped.push(SkippedEntry {
                    path: src,
                    reason: if md.file_type().is_symlink() {
                        "symlink, not followed or moved".into()
                    } else {
                        "not a regular file".into()
                    },
                });
                continue;
            }
            let dst = bak.join(&name);
            match fs::symlink_metadata(&dst) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::rename(&src, &dst).map_err(io_err("cannot move to sm.bak", &src))?;
                }
                Err(e) => return Err(io_err("cannot stat", &dst)(e)),
                Ok(dmd) if !dmd.is_file() => {
                    skipped.push(SkippedEntry {
                        path: src,
                        reason: format!("{} exists and is not a regular file", dst.display()),
                    });
                    continue;
                }
                Ok(dmd) => {
                    let old = read_nofollow(&dst, "file")?;
                    let new = read_nofollow(&src, "file")?;
                    let merged = merge_lines(&old, &new);
                    atomic_replace(&bak, name_str(&name), &merged, owner_of(&dmd))?;
                    fs::remove_file(&src).map_err(io_err("cannot remove", &src))?;
                }
            }
        }
        sync_dir(&bak)?;
        sync_dir(&sm)?;
        Ok(skipped)
    }
}

fn name_str(n: &OsStr) -> &str {
    n.to_str().unwrap_or_default()
}
