//! `/proc/locks` parsing (format of `lock_get_status()` in `fs/locks.c`).
//!
//! ```text
//! 1: POSIX  ADVISORY  WRITE 1234 08:02:131074 0 EOF
//! 1: -> POSIX  ADVISORY  WRITE 1240 08:02:131074 0 EOF      (a waiter, not a held lock)
//! 2: FLOCK  ADVISORY  READ  5678 00:1a:12 0 EOF
//! 3: POSIX  ADVISORY  READ  -1 <none>:0 100 199
//! ```
//! Major and minor are printed with `%02x` (hex, may be longer than 2 digits), the inode in
//! decimal, start and end in decimal or `EOF`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line_no} of the locks file is not in /proc/locks format: {reason}: {text:?}")]
pub struct LocksParseError {
    pub line_no: usize,
    pub reason: &'static str,
    pub text: String,
}

/// One entry of `/proc/locks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEntry {
    pub id: u64,
    /// A waiter (`->`) blocked on the lock `id`, not a held lock.
    pub blocked: bool,
    /// `POSIX`, `FLOCK`, `OFDLCK`, `LEASE`, `DELEG`, ...
    pub kind: String,
    /// `ADVISORY`, `MANDATORY`, `ACTIVE`, `BREAKING`, ...
    pub mode: String,
    /// `READ`, `WRITE` or `UNLCK`.
    pub access: String,
    pub pid: i64,
    /// (major, minor) of the superblock device; `None` for `<none>`.
    pub dev: Option<(u32, u32)>,
    pub ino: u64,
    pub start: u64,
    /// Inclusive end offset; `None` means `EOF` (to end of file).
    pub end: Option<u64>,
}

impl LockEntry {
    /// A held byte-range lock of the kind NLM and nfsd take on the server (POSIX).
    pub fn is_held_posix(&self) -> bool {
        !self.blocked && self.kind == "POSIX"
    }
}

fn parse_line(line: &str, line_no: usize) -> Result<LockEntry, LocksParseError> {
    let err = |reason| LocksParseError {
        line_no,
        reason,
        text: line.chars().take(200).collect(),
    };
    let mut t = line.split_ascii_whitespace();
    let id = t
        .next()
        .and_then(|s| s.strip_suffix(':'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err("missing 'N:' id"))?;
    let mut kind = t.next().ok_or_else(|| err("missing lock kind"))?;
    let blocked = kind == "->";
    if blocked {
        kind = t.next().ok_or_else(|| err("missing lock kind"))?;
    }
    let mode = t.next().ok_or_else(|| err("missing mode"))?;
    let access = t.next().ok_or_else(|| err("missing access type"))?;
    let pid = t
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err("bad pid"))?;
    let devino = t.next().ok_or_else(|| err("missing device:inode"))?;
    let (dev, ino) = if let Some(rest) = devino.strip_prefix("<none>:") {
        (None, rest.parse().map_err(|_| err("bad inode"))?)
    } else {
        let mut p = devino.split(':');
        let (Some(maj), Some(min), Some(ino), None) = (p.next(), p.next(), p.next(), p.next())
        else {
            return Err(err("device:inode is not MAJ:MIN:INO"));
        };
        let maj = u32::from_str_radix(maj, 16).map_err(|_| err("bad major"))?;
        let min = u32::from_str_radix(min, 16).map_err(|_| err("bad minor"))?;
        (Some((maj, min)), ino.parse().map_err(|_| err("bad inode"))?)
    };
    let start = t
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err("bad start offset"))?;
    let end = match t.next().ok_or_else(|| err("missing end offset"))? {
        "EOF" => None,
        s => Some(s.parse().map_err(|_| err("bad end offset"))?),
    };
    if t.next().is_some() {
        return Err(err("trailing fields"));
    }
    Ok(LockEntry {
        id,
        blocked,
        kind: kind.to_owned(),
        mode: mode.to_owned(),
        access: access.to_owned(),
        pid,
        dev,
        ino,
        start,
        end,
    })
}

/// Parses the whole file. Blank lines are ignored; any other unparsable line is an error,
/// because a verification that silently skips lines could miss a stale lock.
pub fn parse(text: &str) -> Result<Vec<LockEntry>, LocksParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l, i + 1))
        .collect()
}

pub use libmmp::io::dev_major_minor;

/// Held POSIX locks on the filesystem with device `dev`.
pub fn held_on_dev(entries: &[LockEntry], dev: (u32, u32)) -> Vec<LockEntry> {
    entries
        .iter()
        .filter(|e| e.is_held_posix() && e.dev == Some(dev))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
1: POSIX  ADVISORY  WRITE 1234 08:02:131074 0 EOF
1: -> POSIX  ADVISORY  WRITE 1240 08:02:131074 0 EOF
2: FLOCK  ADVISORY  READ  5678 00:1a:12 0 EOF
3: OFDLCK ADVISORY  READ  -1 103:05:77 100 199
4: POSIX  ADVISORY  READ  42 <none>:0 0 9
5: LEASE  ACTIVE    READ  99 fd:00:5 0 EOF
";

    #[test]
    fn parses_kernel_format() {
        let v = parse(SAMPLE).unwrap();
        assert_eq!(v.len(), 6);
        assert_eq!(v[0].kind, "POSIX");
        assert_eq!(v[0].dev, Some((8, 2)));
        assert_eq!(v[0].ino, 131_074);
        assert_eq!(v[0].end, None);
        assert!(v[1].blocked && v[1].pid == 1240);
        assert_eq!(v[2].dev, Some((0, 0x1a)));
        assert_eq!(v[3].dev, Some((0x103, 5)));
        assert_eq!((v[3].start, v[3].end), (100, Some(199)));
        assert_eq!(v[3].pid, -1);
        assert_eq!(v[4].dev, None);
        assert_eq!(v[5].mode, "ACTIVE");
        let held = held_on_dev(&v, (8, 2));
        assert_eq!(held.len(), 1, "the waiter is not a held lock");
    }

    #[test]
    fn garbage_is_an_error_with_line_number() {
        let e = parse("1: POSIX ADVISORY WRITE 1 08:02:3 0 EOF\nnonsense\n").unwrap_err();
        assert_eq!(e.line_no, 2);
        for bad in [
            "1 POSIX ADVISORY WRITE 1 08:02:3 0 EOF",
            "1: POSIX ADVISORY WRITE x 08:02:3 0 EOF",
            "1: POSIX ADVISORY WRITE 1 0802:3 0 EOF",
            "1: POSIX ADVISORY WRITE 1 08:02:3 0",
            "1: POSIX ADVISORY WRITE 1 08:02:3 0 EOF extra",
            "1: POSIX ADVISORY WRITE 1 zz:02:3 0 EOF",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn real_proc_locks_parses() {
        // The host's own /proc/locks, whatever it holds right now, must parse.
        let text = std::fs::read_to_string("/proc/locks").unwrap();
        parse(&text).unwrap();
    }

    #[test]
    fn dev_split_matches_glibc() {
        assert_eq!(dev_major_minor(0x0802), (8, 2));
        assert_eq!(dev_major_minor(0x10305), (0x103, 5));
        assert_eq!(dev_major_minor(0x1a), (0, 0x1a));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn formatted_entries_round_trip(id in 1u64..1_000_000, maj in 0u32..4096, min in 0u32..1_048_576,
                                        ino in any::<u64>(), pid in -1i64..4_000_000, start in any::<u64>(),
                                        end in proptest::option::of(any::<u64>()), w in any::<bool>()) {
            let access = if w { "WRITE" } else { "READ " };
            let end_s = end.map_or("EOF".to_string(), |e| e.to_string());
            let line = format!("{id}: POSIX  ADVISORY  {access} {pid} {maj:02x}:{min:02x}:{ino} {start} {end_s}\n");
            let v = parse(&line).unwrap();
            prop_assert_eq!(v.len(), 1);
            prop_assert_eq!(v[0].dev, Some((maj, min)));
            prop_assert_eq!((v[0].ino, v[0].start, v[0].end, v[0].pid), (ino, start, end, pid));
        }
    }
}
