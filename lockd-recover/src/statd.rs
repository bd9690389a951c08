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

use serde::Serialize;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const SM_DIR: &str = "sm";
pub const SM_BAK_DIR: &str = "sm.bak";
pub const STATE_FILE: &str = "state";
const STATE_TMP: &str = ".state.new";
/// The 36 characters of the four `%08x ` fields before the priv cookie (`RPCARGSLEN`).
const RPCARGSLEN: usize = 36;

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

/// Why one record line cannot be read (reported as [`MalformedLine::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("line is not UTF-8")]
    NotUtf8,
    #[error("line too short for the 7-field record format")]
    TooShort,
    #[error("non-ASCII character in the callback or priv fields")]
    NonAscii,
    #[error("expected four 8-digit hex fields separated by single spaces")]
    CallbackFields,
    #[error("a callback field is not 8 hex digits")]
    CallbackHex,
    #[error("priv cookie is not 32 hex digits")]
    PrivCookie,
    #[error("missing space after the priv cookie")]
    NoSpaceAfterCookie,
    #[error("missing my_name after mon_name")]
    NoMyName,
    #[error("mon_name and my_name must be single non-empty words")]
    BadNames,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StatdError + 'a {
    move |source| StatdError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One line of an `sm/` or `sm.bak/` file (`nsm_create_monitor_record()`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonitorRecord {
    /// NLM callback address as stored: the in-memory `s_addr` printed with `%08x`, so its hex
    /// form depends on host byte order (`0100007f` for 127.0.0.1 on little-endian hosts).
    pub addr: Ipv4Addr,
    pub prog: u32,
    pub vers: u32,
    pub proc_num: u32,
    #[serde(serialize_with = "serialize_hex")]
    pub priv_cookie: [u8; 16],
    /// The monitored peer as lockd named it (usually its IP address).
    pub mon_name: String,
    /// The local name lockd gave (`utsname()->nodename`); sm-notify sends it as mon_name.
    pub my_name: String,
}

fn serialize_hex<S: serde::Serializer>(b: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_hex_u32(field: &str) -> Option<u32> {
    if field.len() != 8 || !field.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(field, 16).ok()
}

impl MonitorRecord {
    /// A record as Linux lockd creates it: callback 127.0.0.1, NLM v3 proc 16.
    pub fn lockd(mon_name: &str, my_name: &str, priv_cookie: [u8; 16]) -> Self {
        Self {
            addr: Ipv4Addr::LOCALHOST,
            prog: crate::nsm::NLM_PROG,
            vers: 3,
            proc_num: 16,
            priv_cookie,
            mon_name: mon_name.to_owned(),
            my_name: my_name.to_owned(),
        }
    }

    /// The line, with its trailing newline, exactly as nfs-utils writes it.
    pub fn to_line(&self) -> String {
        let s_addr = u32::from_ne_bytes(self.addr.octets());
        format!(
            "{s_addr:08x} {:08x} {:08x} {:08x} {} {} {}\n",
            self.prog,
            self.vers,
            self.proc_num,
            hex(&self.priv_cookie),
            self.mon_name,
            self.my_name
        )
    }

    /// Parses one line (without or with its `\n`). Stricter than `nsm_parse_line()`: field
    /// widths must be exact and both names non-empty, because a record we cannot read exactly
    /// must be reported rather than half-used.
    pub fn parse_line(line: &str) -> Result<Self, RecordError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if line.len() < RPCARGSLEN + 32 + 4 {
            return Err(RecordError::TooShort);
        }
        // The fixed-width part is hex and spaces; checking ASCII first also makes the byte
        // offsets below character boundaries.
        if !line.as_bytes()[..RPCARGSLEN + 32].is_ascii() {
            return Err(RecordError::NonAscii);
        }
        let (head, rest) = line.split_at(RPCARGSLEN);
        let words: Vec<&str> = head.split(' ').collect();
        if words.len() != 5 || !words[4].is_empty() {
            return Err(RecordError::CallbackFields);
        }
        let nums: Option<Vec<u32>> = words[..4].iter().map(|w| parse_hex_u32(w)).collect();
        let nums = nums.ok_or(RecordError::CallbackHex)?;
        let (priv_hex, names) = rest.split_at(32);
        let mut priv_cookie = [0u8; 16];
        for (i, b) in priv_cookie.iter_mut().enumerate() {
            let pair = &priv_hex[2 * i..2 * i + 2];
            if !pair.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(RecordError::PrivCookie);
            }
            *b = u8::from_str_radix(pair, 16).map_err(|_| RecordError::PrivCookie)?;
        }
        let names = names
            .strip_prefix(' ')
            .ok_or(RecordError::NoSpaceAfterCookie)?;
        let (mon_name, my_name) = names.split_once(' ').ok_or(RecordError::NoMyName)?;
        if mon_name.is_empty() || my_name.is_empty() || my_name.contains(' ') {
            return Err(RecordError::BadNames);
        }
        Ok(Self {
            addr: Ipv4Addr::from(nums[0].to_ne_bytes()),
            prog: nums[1],
            vers: nums[2],
            proc_num: nums[3],
            priv_cookie,
            mon_name: mon_name.to_owned(),
            my_name: my_name.to_owned(),
        })
    }

    /// nfs-utils identifies a record by `(mon_name, my_name)` (`nsm_delete_host()`).
    fn same_key(&self, other: &Self) -> bool {
        self.mon_name == other.mon_name && self.my_name == other.my_name
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

fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn read_nofollow(path: &Path, what: &'static str) -> Result<Vec<u8>, StatdError> {
    let mut f = open_nofollow(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            StatdError::Symlink {
                path: path.to_path_buf(),
                what,
            }
        } else {
            io_err("cannot read", path)(e)
        }
    })?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(io_err("cannot read", path))?;
    Ok(buf)
}

fn sync_dir(dir: &Path) -> Result<(), StatdError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot fsync directory", dir))
}

/// Owner and mode to give a file we create: those of the file we replace, else the directory's
/// owner (statd and sm-notify run as the owner of `sm/`, `nsm_drop_privileges()`).
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
    mode: u32,
}

/// Writes `data` to `dir/.<name>.new` and renames it over `dir/<name>`, keeping `owner`.
fn atomic_replace(dir: &Path, name: &str, data: &[u8], owner: Owner) -> Result<(), StatdError> {
    let tmp = dir.join(format!(".{name}.new"));
    let target = dir.join(name);
    // A stale temp file from a crash would make O_EXCL fail; it holds nothing of value.
    match fs::symlink_metadata(&tmp) {
        Ok(_) => fs::remove_file(&tmp).map_err(io_err("cannot remove stale", &tmp))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot stat", &tmp)(e)),
    }
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(owner.mode & 0o7777)
            .custom_flags(libc::O_NOFOLLOW | libc::O_SYNC)
            .open(&tmp)
            .map_err(io_err("cannot create", &tmp))?;
        f.write_all(data).map_err(io_err("cannot write", &tmp))?;
        std::os::unix::fs::fchown(&f, Some(owner.uid), Some(owner.gid))
            .map_err(io_err("cannot set owner of", &tmp))?;
        f.set_permissions(fs::Permissions::from_mode(owner.mode & 0o7777))
            .map_err(io_err("cannot set mode of", &tmp))?;
        f.sync_all().map_err(io_err("cannot fsync", &tmp))?;
        fs::rename(&tmp, &target).map_err(io_err("cannot rename into place", &target))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
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

fn check_real_dir(path: &Path) -> Result<fs::Metadata, StatdError> {
    let md = fs::symlink_metadata(path).map_err(io_err("cannot open", path))?;
    if md.file_type().is_symlink() {
        return Err(StatdError::Symlink {
            path: path.to_path_buf(),
            what: "directory",
        });
    }
    if !md.is_dir() {
        return Err(StatdError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    Ok(md)
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
            let md = fs::symlink_metadata(&path).map_err(io_err("cannot stat", &path))?;
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

fn owner_of(md: &fs::Metadata) -> Owner {
    Owner {
        uid: md.uid(),
        gid: md.gid(),
        mode: md.mode(),
    }
}

/// `old` followed by each line of `new` not already present in `old`.
fn merge_lines(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = old.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    let have: Vec<&[u8]> = old
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    for line in new.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if !have.contains(&line) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out
}

/// Parses a host file's bytes into records and malformed-line reports. Blank lines are ignored.
pub fn parse_file(path: &Path, data: &[u8]) -> (Vec<MonitorRecord>, Vec<MalformedLine>) {
    let mut records = Vec::new();
    let mut malformed = Vec::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let parsed = std::str::from_utf8(line)
            .map_err(|_| RecordError::NotUtf8)
            .and_then(MonitorRecord::parse_line);
        match parsed {
            Ok(r) => records.push(r),
            Err(e) => malformed.push(MalformedLine {
                file: path.to_path_buf(),
                line_no: i + 1,
                reason: e.to_string(),
            }),
        }
    }
    (records, malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LINE: &str = "0100007f 000186b5 00000003 00000010 0a000005000000000000000000000000 10.0.0.5 nfs1.example.com\n";

    #[test]
    fn parses_the_reference_example_line() {
        let r = MonitorRecord::parse_line(LINE).unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(r.addr, Ipv4Addr::LOCALHOST);
        }
        assert_eq!((r.prog, r.vers, r.proc_num), (100_021, 3, 16));
        assert_eq!(r.priv_cookie[..4], [10, 0, 0, 5]);
        assert_eq!(r.mon_name, "10.0.0.5");
        assert_eq!(r.my_name, "nfs1.example.com");
        assert_eq!(r.to_line(), LINE);
    }

    #[test]
    fn malformed_lines_are_rejected_with_a_reason() {
        for bad in [
            "",
            "garbage",
            "0100007f 000186b5 00000003 0000001 0a000005000000000000000000000000 a b",
            "0100007f 000186b5 00000003 00000010 0a00000500000000000000000000000z a b",
            "0100007f 000186b5 00000003 00000010 0a000005000000000000000000000000 onlyone",
            "0100007f 000186b5 00000003 00000010 0a000005000000000000000000000000  b",
            "0100007f  000186b 00000003 00000010 0a000005000000000000000000000000 a b",
            "0100007f 000186b5 00000003 00000010 0a000005000000000000000000000000xa b",
            "0100007f 000186b5 00000003 00000010 0a000005000000000000000000000000 a b c",
            "0100007f 000186b5 00000003 00000010 0a0000050000000000000000000000éé a b",
        ] {
            assert!(MonitorRecord::parse_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn state_rules_follow_nsm_get_state() {
        assert_eq!(next_state(None, false), 3, "fresh install gives 3");
        assert_eq!(next_state(None, true), 3);
        assert_eq!(next_state(Some(5), true), 7);
        assert_eq!(next_state(Some(5), false), 5);
        assert_eq!(next_state(Some(4), false), 5, "even is made odd");
        assert_eq!(next_state(Some(4), true), 7);
        assert_eq!(next_state(Some(-2), true), 1);
        assert_eq!(next_state(Some(i32::MAX), true), i32::MIN + 1);
    }

    #[test]
    fn state_file_is_four_native_endian_bytes_written_atomically() {
        let t = tempfile::tempdir().unwrap();
        let d = StatdDir::create(t.path()).unwrap();
        assert_eq!(d.read_state().unwrap(), None);
        let c = d.bump_state(true).unwrap();
        assert_eq!(
            c,
            StateChange {
                previous: None,
                state: 3
            }
        );
        let raw = fs::read(t.path().join(STATE_FILE)).unwrap();
        assert_eq!(raw, 3i32.to_ne_bytes());
        assert!(!t.path().join(STATE_TMP).exists());
        assert_eq!(d.bump_state(true).unwrap().state, 5);
        // A short file counts as missing.
        fs::write(t.path().join(STATE_FILE), [9u8, 0]).unwrap();
        assert_eq!(d.read_state().unwrap(), None);
    }

    #[test]
    fn state_file_keeps_its_mode() {
        let t = tempfile::tempdir().unwrap();
        let d = StatdDir::create(t.path()).unwrap();
        let p = t.path().join(STATE_FILE);
        fs::write(&p, 8i32.to_ne_bytes()).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            d.bump_state(true).unwrap(),
            StateChange {
                previous: Some(8),
                state: 11
            }
        );
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
    }

    #[test]
    fn atomic_rewrites_keep_the_owner() {
        if !nix::unistd::geteuid().is_root() {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "needs root under CI=true"
            );
            eprintln!("SKIP atomic_rewrites_keep_the_owner: not root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let d = StatdDir::create(t.path()).unwrap();
        let state = t.path().join(STATE_FILE);
        fs::write(&state, 3i32.to_ne_bytes()).unwrap();
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        d.bump_state(true).unwrap();
        let md = fs::metadata(&state).unwrap();
        assert_eq!((md.uid(), md.gid()), (65534, 65534));
        let a = MonitorRecord::lockd("10.0.0.5", "a", [1; 16]);
        let b = MonitorRecord::lockd("10.0.0.5", "b", [2; 16]);
        d.add_record(RecordDir::SmBak, "h", &a).unwrap();
        d.add_record(RecordDir::SmBak, "h", &b).unwrap();
        let rec = d.dir(RecordDir::SmBak).join("h");
        std::os::unix::fs::chown(&rec, Some(65534), Some(65534)).unwrap();
        assert!(d.remove_record(RecordDir::SmBak, "h", &a).unwrap());
        let md = fs::metadata(&rec).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o777),
            (65534, 65534, 0o600)
        );
        // New files take the owner of sm/, like statd running as that user would create them.
        std::os::unix::fs::chown(d.dir(RecordDir::Sm), Some(65534), Some(65534)).unwrap();
        d.add_record(RecordDir::Sm, "new", &a).unwrap();
        assert_eq!(
            fs::metadata(d.dir(RecordDir::Sm).join("new"))
                .unwrap()
                .uid(),
            65534
        );
    }

    #[test]
    fn symlinked_state_file_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = StatdDir::create(t.path()).unwrap();
        let target = t.path().join("elsewhere");
        fs::write(&target, 5i32.to_ne_bytes()).unwrap();
        std::os::unix::fs::symlink(&target, t.path().join(STATE_FILE)).unwrap();
        assert!(matches!(d.read_state(), Err(StatdError::Symlink { .. })));
        assert!(matches!(d.write_state(7), Err(StatdError::Symlink { .. })));
        assert_eq!(fs::read(&target).unwrap(), 5i32.to_ne_bytes());
    }

    #[test]
    fn symlinked_sm_directory_is_refused() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("real")).unwrap();
        fs::create_dir(t.path().join(SM_BAK_DIR)).unwrap();
        std::os::unix::fs::symlink(t.path().join("real"), t.path().join(SM_DIR)).unwrap();
        assert!(matches!(
            StatdDir::open(t.path()),
            Err(StatdError::Symlink { .. })
        ));
    }

    #[test]
    fn malformed_records_are_reported_and_kept() {
        let t = tempfile::tempdir().unwrap();
        let d = StatdDir::create(t.path()).unwrap();
        let bak = d.dir(RecordDir::SmBak);
        let content = format!("{LINE}this is not a record\n");
        fs::write(bak.join("10.0.0.5"), &content).unwrap();
        fs::write(bak.join("broken"), "junk\n").unwrap();
        let l = d.list(RecordDir::SmBak).unwrap();
        assert_eq!(l.hosts.len(), 2);
        assert_eq!(l.malformed.len(), 2);
        assert_eq!(l.malformed[0].line_no, 2);
        let rec = MonitorRecord::parse_line(LINE).unwrap();
        assert!(d.remove_record(RecordDir::SmBak, "10.0.0.5", &rec).unwrap());
        // The good line is gone, the malformed one stays byte for byte.
        assert_eq!(
            fs::read_to_string(bak.join("10.0.0.5")).unwrap(),
            "this is not a record\n"
        );
        assert_eq!(fs::read_to_string(bak.join("broken")).unwrap(), "junk\n");
    }

    #[test]
    fn statd_temp_copy_next_to_its_record_is_skipped_and_kept() {
        let t = tempfile::tempdir().unwrap();
        let d = StatdDir::create(t.path()).unwrap();
        let sm = d.dir(RecordDir::Sm);
        fs::write(sm.join("clientd"), LINE).unwrap();
        fs::write(sm.join("clientd.new"), LINE).unwrap();
        // A host whose own name ends in ".new" (there is such a TLD) is still a client.
        fs::write(sm.join("shop.new"), LINE).unwrap();
        let l = d.list(RecordDir::Sm).unwrap();
        let names: Vec<&str> = l.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["clientd", "shop.new"]);
        assert_eq!(l.skipped.len(), 1);
        assert!(
            l.skipped[0].reason.contains("temporary copy of clientd"),
            "{:?}",
            l.skipped
        );
        assert!(sm.join("clientd.new").exists(), "kept, never deleted");
    }

    #[test]
    fn removing_the_last_line_unlinks_the_file() {
        let t = tempfile::tempdir().unwrap();
        let d = StatdDir::create(t.path()).unwrap();
        let a = MonitorRecord::lockd("10.0.0.5", "a.example", [1; 16]);
        let b = MonitorRecord::lockd("10.0.0.5", "b.example", [2; 16]);
        d.add_record(RecordDir::SmBak, "h", &a).unwrap();
        d.add_record(RecordDir::SmBak, "h", &b).unwrap();
        d.add_record(RecordDir::SmBak, "h", &b).unwrap();
        let path = d.dir(RecordDir::SmBak).join("h");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            a.to_line() + &b.to_line()
        );
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(d.remove_record(RecordDir::SmBak, "h", &a).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), b.to_line());
        assert!(!d.remove_record(RecordDir::SmBak, "h", &a).unwrap());
        assert!(d.remove_record(RecordDir::SmBak, "h", &b).unwrap());
        assert!(!path.exists());
    }

    #[test]
    fn retire_moves_sm_to_sm_bak_and_merges() {
        let t = tempfile::tempdir().unwrap();
        let d = StatdDir::create(t.path()).unwrap();
        let a = MonitorRecord::lockd("10.0.0.5", "a", [1; 16]);
        let b = MonitorRecord::lockd("10.0.0.5", "b", [2; 16]);
        let c = MonitorRecord::lockd("10.0.0.6", "a", [3; 16]);
        d.add_record(RecordDir::SmBak, "h5", &a).unwrap();
        d.add_record(RecordDir::Sm, "h5", &a).unwrap();
        d.add_record(RecordDir::Sm, "h5", &b).unwrap();
        d.add_record(RecordDir::Sm, "h6", &c).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.dir(RecordDir::Sm).join("evil")).unwrap();
        let skipped = d.retire_monitored().unwrap();
        assert_eq!(skipped.len(), 1);
        let l = d.list(RecordDir::SmBak).unwrap();
        assert_eq!(l.hosts.len(), 2);
        assert_eq!(l.hosts[0].records, vec![a, b]);
        assert_eq!(l.hosts[1].records, vec![c]);
        assert!(d.dir(RecordDir::Sm).join("evil").is_symlink());
        assert!(!d.dir(RecordDir::Sm).join("h5").exists());
    }

    #[test]
    fn symlinked_record_is_skipped_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let d = StatdDir::create(t.path()).unwrap();
        let outside = t.path().join("outside");
        fs::write(&outside, LINE).unwrap();
        std::os::unix::fs::symlink(&outside, d.dir(RecordDir::SmBak).join("10.0.0.5")).unwrap();
        let l = d.list(RecordDir::SmBak).unwrap();
        assert!(l.hosts.is_empty());
        assert_eq!(l.skipped.len(), 1);
        let rec = MonitorRecord::parse_line(LINE).unwrap();
        assert!(d.remove_record(RecordDir::SmBak, "10.0.0.5", &rec).is_err());
        assert_eq!(fs::read_to_string(&outside).unwrap(), LINE);
    }

    #[test]
    fn bad_host_names_are_refused() {
        for n in ["", ".hidden", "a/b", "a b", "../x"] {
            assert!(check_host_name(n).is_err(), "{n:?}");
        }
        assert!(check_host_name("client1.example.com").is_ok());
        assert!(check_host_name("fe80::1").is_ok());
    }

    fn record() -> impl Strategy<Value = MonitorRecord> {
        (
            any::<[u8; 4]>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<[u8; 16]>(),
            "[a-z0-9.:-]{1,40}",
            "[a-z0-9.-]{1,40}",
        )
            .prop_map(
                |(a, prog, vers, proc_num, priv_cookie, mon_name, my_name)| MonitorRecord {
                    addr: Ipv4Addr::from(a),
                    prog,
                    vers,
                    proc_num,
                    priv_cookie,
                    mon_name,
                    my_name,
                },
            )
    }

    proptest! {
        #[test]
        fn record_line_round_trips(r in record()) {
            prop_assert_eq!(MonitorRecord::parse_line(&r.to_line()).unwrap(), r);
        }

        #[test]
        fn corrupt_one_byte_never_panics(idx in 0usize..120, val in any::<u8>()) {
            let mut b = LINE.as_bytes().to_vec();
            let i = idx % b.len();
            b[i] = val;
            let (_r, _m) = parse_file(Path::new("x"), &b);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = MonitorRecord::parse_line(&s);
        }
    }
}
