//! NFSv4 clients and their lock stateids, as nfsd shows them under /proc/fs/nfsd/clients/<n>/
//! (since Linux 5.3; `client_info_show()`, `states_show()`, `fs/nfsd/nfs4state.c`):
//!
//! ```text
//! info:   clientid: 0x6f2a1e5b00000001
//!         address: "198.18.0.3:724"
//!         status: confirmed                  (5.13+)
//!         name: "Linux NFSv4.2 client-c"
//!         minor version: 2
//! states: - 0x00000001b2c3...: { type: lock, superblock: "fd:10:13", filename: "data/f", owner: "lock id:\x00..." }
//! ```
//!
//! A lock stateid is one owner's locking state on one file, not a lock ("there may be multiple
//! (or no) lock ranges associated with it", `nfs4_show_lock()`): the byte ranges are in
//! /proc/locks. Strings are printed by `seq_escape_mem_ascii()` between double quotes; they are
//! kept here in that escaped form.

use crate::knobs::ProcRoot;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// The clients directory under the proc root.
pub const CLIENTS_DIR: &str = "fs/nfsd/clients";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum V4ParseError {
    #[error("line {line}: {what}")]
    Malformed { line: usize, what: &'static str },
    #[error("no {0} line")]
    MissingField(&'static str),
}

#[derive(Debug, Error)]
pub enum V4StateError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: V4ParseError,
    },
}

/// One client's `info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub clientid: String,
    pub address: String,
    /// The long-form client name (escaped), the key nfsdcld stores.
    pub name: String,
    pub minor_version: u32,
    pub status: Option<String>,
}

/// One `type: lock` line of `states`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LockState {
    pub stateid: String,
    /// major:minor of the filesystem, as the server saw it.
    pub dev: (u32, u32),
    pub ino: u64,
    pub filename: String,
    pub owner: String,
}

/// A client with its lock stateids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V4Client {
    pub info: ClientInfo,
    pub locks: Vec<LockState>,
    /// Open stateids (not recorded per file: counted, for the report).
    pub opens: usize,
    pub delegations: usize,
}

/// A quoted value: the text between the first and the last double quote.
fn unquote(v: &str) -> Option<&str> {
    v.strip_prefix('"')?.strip_suffix('"')
}

/// Parses `info` (total: any input gives Ok or Err).
pub fn parse_info(text: &str) -> Result<ClientInfo, V4ParseError> {
    let (mut clientid, mut address, mut name, mut minor, mut status) =
        (None, None, None, None, None);
    for (i, line) in text.lines().enumerate() {
        let bad = |what| V4ParseError::Malformed { line: i + 1, what };
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        match key {
            "clientid" => clientid = Some(value.to_owned()),
            "address" => {
                address = Some(unquote(value).ok_or(bad("address not quoted"))?.to_owned())
            }
            "name" => name = Some(unquote(value).ok_or(bad("name not quoted"))?.to_owned()),
            "minor version" => minor = Some(value.parse().map_err(|_| bad("minor version"))?),
            "status" => status = Some(value.to_owned()),
            _ => {}
        }
    }
    Ok(ClientInfo {
        clientid: clientid.ok_or(V4ParseError::MissingField("clientid"))?,
        address: address.ok_or(V4ParseError::MissingField("address"))?,
        name: name.ok_or(V4ParseError::MissingField("name"))?,
        minor_version: minor.ok_or(V4ParseError::MissingField("minor version"))?,
        status,
    })
}

/// Splits `key: value, key: "quoted, with commas", ...` honouring quotes and backslashes.
fn fields(body: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let (mut start, mut in_quote, mut escaped) = (0, false, false);
    let b = body.as_bytes();
    for i in 0..=b.len() {
        let at_end = i == b.len();
        if !at_end {
            match (b[i], in_quote, escaped) {
                (_, true, true) => escaped = false,
                (b'\\', true, false) => escaped = true,
                (b'"', _, false) => in_quote = !in_quote,
                _ => {}
            }
        }
        if at_end || (!in_quote && b[i] == b',') {
            let f = body[start..i].trim();
            if let Some((k, v)) = f.split_once(": ") {
                out.push((k, v));
            }
            start = (i + 1).min(b.len());
        }
    }
    out
}

/// "fd:10:13" -> ((0xfd, 0x10), 13): `nfs4_show_superblock()` prints `%02x:%02x:%ld`.
fn superblock(v: &str) -> Option<((u32, u32), u64)> {
    let mut it = unquote(v)?.split(':');
    let major = u32::from_str_radix(it.next()?, 16).ok()?;
    let minor = u32::from_str_radix(it.next()?, 16).ok()?;
    let ino = it.next()?.parse().ok()?;
    it.next().is_none().then_some(((major, minor), ino))
}

/// Counts of what a `states` file holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct States {
    pub locks: Vec<LockState>,
    pub opens: usize,
    pub delegations: usize,
}

/// Parses `states` (total).
pub fn parse_states(text: &str) -> Result<States, V4ParseError> {
    let mut s = States::default();
    for (i, line) in text.lines().enumerate() {
        let bad = |what| V4ParseError::Malformed { line: i + 1, what };
        let Some(rest) = line.strip_prefix("- ") else {
            continue;
        };
        let (stateid, body) = rest.split_once(": {").ok_or(bad("no '{'"))?;
        let body = body.trim_end().strip_suffix('}').ok_or(bad("no '}'"))?;
        let f = fields(body);
        let get = |k: &str| f.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        match get("type") {
            Some("lock") => {
                let (dev, ino) = get("superblock")
                    .and_then(superblock)
                    .ok_or(bad("lock without a superblock"))?;
                let text = |k| get(k).and_then(unquote).unwrap_or("").to_owned();
                s.locks.push(LockState {
                    stateid: stateid.to_owned(),
                    dev,
                    ino,
                    filename: text("filename"),
                    owner: text("owner"),
                });
            }
            Some("open") => s.opens += 1,
            Some("deleg") => s.delegations += 1,
            Some(_) => {}
            None => return Err(bad("no type")),
        }
    }
    Ok(s)
}

/// Every client under /proc/fs/nfsd/clients (none when the directory does not exist: nfsd
/// not mounted or older than 5.3). A client that goes away while being read is skipped.
pub fn read_clients(proc: &ProcRoot) -> Result<Vec<V4Client>, V4StateError> {
    let dir = proc.path(CLIENTS_DIR);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(V4StateError::Io { path: dir, source }),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let (info_p, states_p) = (e.path().join("info"), e.path().join("states"));
        // ENOENT/ENXIO: the client was destroyed between readdir and read.
        let (Ok(info), Ok(states)) = (fs::read_to_string(&info_p), fs::read_to_string(&states_p))
        else {
            continue;
        };
        let info = parse_info(&info).map_err(|source| V4StateError::Parse {
            path: info_p,
            source,
        })?;
        let st = parse_states(&states).map_err(|source| V4StateError::Parse {
            path: states_p,
            source,
        })?;
        out.push(V4Client {
            info,
            locks: st.locks,
            opens: st.opens,
            delegations: st.delegations,
        });
    }
    out.sort_by(|a, b| a.info.name.cmp(&b.info.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) const INFO: &str = "clientid: 0x6f2a1e5b00000001\naddress: \"198.18.0.3:724\"\n\
        status: confirmed\nseconds from last renew: 2\nname: \"Linux NFSv4.2 client-c\"\n\
        minor version: 2\nImplementation domain: \"kernel.org\"\n";
    pub(crate) const STATES: &str = "- 0x00000001b2c3d4e5f6a7b8c9d0e1f2a3: { type: open, access: rw, deny: --, superblock: \"fd:10:13\", filename: \"data/f\", owner: \"open id:\\x00\\x00\" }\n\
        - 0x00000002b2c3d4e5f6a7b8c9d0e1f2a3: { type: lock, superblock: \"fd:10:13\", filename: \"data/a, b\", owner: \"lock id:\\x00\\x22\" }\n\
        - 0x00000003b2c3d4e5f6a7b8c9d0e1f2a3: { type: deleg, access: r, superblock: \"fd:10:14\", filename: \"x\" }\n";

    #[test]
    fn info_and_states() {
        let i = parse_info(INFO).unwrap();
        assert_eq!(i.name, "Linux NFSv4.2 client-c");
        assert_eq!(i.address, "198.18.0.3:724");
        assert_eq!(i.minor_version, 2);
        assert_eq!(i.status.as_deref(), Some("confirmed"));
        let s = parse_states(STATES).unwrap();
        assert_eq!((s.opens, s.delegations), (1, 1));
        assert_eq!(s.locks.len(), 1);
        let l = &s.locks[0];
        assert_eq!((l.dev, l.ino), ((0xfd, 0x10), 13));
        assert_eq!(l.filename, "data/a, b");
        assert_eq!(l.owner, "lock id:\\x00\\x22");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            parse_info("clientid: 0x1\n"),
            Err(V4ParseError::MissingField("address"))
        );
        assert!(parse_info("clientid: 1\naddress: x\n").is_err());
        assert!(parse_states("- 0x1: { type: lock, superblock: \"zz\" }\n").is_err());
        assert!(parse_states("- 0x1 type: lock\n").is_err());
    }

    #[test]
    fn read_clients_from_a_tree() {
        let t = tempfile::tempdir().unwrap();
        let c = t.path().join(CLIENTS_DIR).join("3");
        fs::create_dir_all(&c).unwrap();
        fs::write(c.join("info"), INFO).unwrap();
        fs::write(c.join("states"), STATES).unwrap();
        let clients = read_clients(&ProcRoot::new(t.path())).unwrap();
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].locks.len(), 1);
        let none = tempfile::tempdir().unwrap();
        assert!(read_clients(&ProcRoot::new(none.path()))
            .unwrap()
            .is_empty());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "(.|\n){0,300}") {
            let _ = parse_info(&s);
            let _ = parse_states(&s);
        }
    }
}
