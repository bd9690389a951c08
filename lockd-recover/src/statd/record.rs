//! One record line of an `sm/` or `sm.bak/` file (`nsm_create_monitor_record()`,
//! `nsm_parse_line()` in nfs-utils `support/nsm/file.c`), and a whole host file's lines.

use super::MalformedLine;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::Path;
use thiserror::Error;

/// The 36 characters of the four `%08x ` fields before the priv cookie (`RPCARGSLEN`).
const RPCARGSLEN: usize = 36;

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
    pub(super) fn same_key(&self, other: &Self) -> bool {
        self.mon_name == other.mon_name && self.my_name == other.my_name
    }
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
