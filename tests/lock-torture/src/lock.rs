//! Typed, safe lock operations over POSIX record locks, OFD locks and flock.

use std::fmt;
use std::os::fd::AsFd;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use crate::sys;

/// Which lock API to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// POSIX record locks (`F_SETLK`): owned by the process, released on *any* close.
    Posix,
    /// Open-file-description locks (`F_OFD_SETLK`): owned by the open file description.
    Ofd,
    /// `flock(2)`: whole-file, owned by the open file description.
    Flock,
}

impl LockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LockKind::Posix => "posix",
            LockKind::Ofd => "ofd",
            LockKind::Flock => "flock",
        }
    }

    /// flock has no byte ranges and no test (GETLK) operation.
    pub fn has_ranges(self) -> bool {
        !matches!(self, LockKind::Flock)
    }
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shared (read) or exclusive (write).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockType {
    Read,
    Write,
}

impl LockType {
    fn fcntl_type(self) -> libc::c_short {
        match self {
            LockType::Read => libc::F_RDLCK as libc::c_short,
            LockType::Write => libc::F_WRLCK as libc::c_short,
        }
    }
}

/// A byte range as fcntl(2) sees it: `len == 0` means "to the end of the file, however large".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub start: i64,
    pub len: i64,
}

impl Range {
    pub const WHOLE: Range = Range { start: 0, len: 0 };

    pub fn new(start: i64, len: i64) -> Range {
        Range { start, len }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            write!(f, "[{}, EOF)", self.start)
        } else {
            write!(f, "[{}, +{})", self.start, self.len)
        }
    }
}

/// What a test (F_GETLK / F_OFD_GETLK) found in the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub ty: LockType,
    pub range: Range,
    /// `l_pid` of the holder: the owning process for POSIX locks, -1 for OFD locks. Over NFS it
    /// is whatever the server reports, usually not a local pid.
    pub pid: i32,
}

/// Conflict errors: fcntl(2) allows either EAGAIN or EACCES; flock(2) uses EWOULDBLOCK (which is
/// EAGAIN on Linux).
pub fn is_conflict(errno: Errno) -> bool {
    matches!(errno, Errno::EAGAIN | Errno::EACCES)
}

fn flock_struct(l_type: libc::c_short, range: Range) -> libc::flock {
    libc::flock {
        l_type,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: range.start,
        l_len: range.len,
        // Must be 0 for the OFD commands (fcntl(2)); ignored by the POSIX set commands.
        l_pid: 0,
    }
}

fn set_cmd(kind: LockKind, wait: bool) -> libc::c_int {
    match (kind, wait) {
        (LockKind::Posix, false) => libc::F_SETLK,
        (LockKind::Posix, true) => libc::F_SETLKW,
        (LockKind::Ofd, false) => libc::F_OFD_SETLK,
        (LockKind::Ofd, true) => libc::F_OFD_SETLKW,
        (LockKind::Flock, _) => unreachable!("flock has no fcntl command"),
    }
}

/// Take (or convert) a lock. For flock the range is ignored and the whole file is locked.
pub fn lock<F: AsFd>(
    fd: &F,
    kind: LockKind,
    ty: LockType,
    range: Range,
    wait: bool,
) -> Result<(), Errno> {
    match kind {
        LockKind::Flock => {
            let mut op = match ty {
                LockType::Read => libc::LOCK_SH,
                LockType::Write => libc::LOCK_EX,
            };
            if !wait {
                op |= libc::LOCK_NB;
            }
            sys::flock(fd.as_fd(), op)
        }
        _ => {
            let mut fl = flock_struct(ty.fcntl_type(), range);
            sys::fcntl_lock(fd.as_fd(), set_cmd(kind, wait), &mut fl)
        }
    }
}

/// Release a lock (a range for POSIX/OFD, the whole file for flock).
pub fn unlock<F: AsFd>(fd: &F, kind: LockKind, range: Range) -> Result<(), Errno> {
    match kind {
        LockKind::Flock => sys::flock(fd.as_fd(), libc::LOCK_UN),
        _ => {
            let mut fl = flock_struct(libc::F_UNLCK as libc::c_short, range);
            sys::fcntl_lock(fd.as_fd(), set_cmd(kind, false), &mut fl)
        }
    }
}

/// Ask whether a lock of type `ty` on `range` would be granted (F_GETLK / F_OFD_GETLK).
/// `Ok(None)`: it would. flock has no such call: EINVAL.
pub fn test<F: AsFd>(
    fd: &F,
    kind: LockKind,
    ty: LockType,
    range: Range,
) -> Result<Option<Conflict>, Errno> {
    let cmd = match kind {
        LockKind::Posix => libc::F_GETLK,
        LockKind::Ofd => libc::F_OFD_GETLK,
        LockKind::Flock => return Err(Errno::EINVAL),
    };
    let mut fl = flock_struct(ty.fcntl_type(), range);
    sys::fcntl_lock(fd.as_fd(), cmd, &mut fl)?;
    let ty = match libc::c_int::from(fl.l_type) {
        libc::F_UNLCK => return Ok(None),
        libc::F_RDLCK => LockType::Read,
        libc::F_WRLCK => LockType::Write,
        // The kernel never reports anything else; treat an unknown type as a write lock so a
        // broken implementation shows up as a conflict rather than as "free".
        _ => LockType::Write,
    };
    Ok(Some(Conflict {
        ty,
        range: Range::new(fl.l_start, fl.l_len),
        pid: fl.l_pid,
    }))
}

/// Errno as its symbolic name ("EAGAIN"), the form used in every report.
pub fn errno_name(errno: Errno) -> String {
    format!("{errno:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    #[test]
    fn ofd_locks_conflict_between_descriptions_of_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let a = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let b = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        lock(&a, LockKind::Ofd, LockType::Write, Range::new(0, 10), false).unwrap();
        let err = lock(&b, LockKind::Ofd, LockType::Write, Range::new(5, 1), false).unwrap_err();
        assert!(is_conflict(err), "{err:?}");
        let c = test(&b, LockKind::Ofd, LockType::Read, Range::WHOLE)
            .unwrap()
            .unwrap();
        assert_eq!(c.ty, LockType::Write);
        assert_eq!(c.range, Range::new(0, 10));
        assert_eq!(c.pid, -1, "OFD locks report l_pid -1");
        unlock(&a, LockKind::Ofd, Range::WHOLE).unwrap();
        assert_eq!(
            test(&b, LockKind::Ofd, LockType::Write, Range::WHOLE).unwrap(),
            None
        );
    }

    #[test]
    fn flock_has_no_test_operation() {
        let f = tempfile::tempfile().unwrap();
        assert_eq!(
            test(&f, LockKind::Flock, LockType::Write, Range::WHOLE),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn errno_names_are_symbolic() {
        assert_eq!(errno_name(Errno::ENOLCK), "ENOLCK");
        assert_eq!(errno_name(Errno::EAGAIN), "EAGAIN");
    }
}
