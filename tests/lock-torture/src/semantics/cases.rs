//! The suite's table of tests, and the shorthand the tests are written in.

use super::ctx::Ctx;
use super::error::CaseError;
use super::{cthon, linux};
use crate::lock::{LockKind, LockType, Range};

pub(super) type TestFn = fn(&mut Ctx<'_>) -> Result<String, CaseError>;

pub(super) struct TestDef {
    pub id: &'static str,
    pub name: &'static str,
    pub run: TestFn,
    /// Needs two lock owners that this process controls directly (skipped in multi-host mode).
    pub local_only: Option<&'static str>,
}

pub(super) const TESTS: &[TestDef] = &[
    TestDef {
        id: "cthon-1",
        name: "regions of an unlocked file are free",
        run: cthon::t_unlocked,
        local_only: None,
    },
    TestDef {
        id: "cthon-2",
        name: "a whole-file lock denies every region",
        run: cthon::t_whole_file,
        local_only: None,
    },
    TestDef {
        id: "cthon-3",
        name: "lock on the first byte: denied there, free after it",
        run: cthon::t_first_byte,
        local_only: None,
    },
    TestDef {
        id: "cthon-4",
        name: "lock on the second byte: free before and after it",
        run: cthon::t_second_byte,
        local_only: None,
    },
    TestDef {
        id: "cthon-5",
        name: "lock on the first two bytes",
        run: cthon::t_first_two,
        local_only: None,
    },
    TestDef {
        id: "cthon-6",
        name: "lock at the largest offset (MAXEOF), EOVERFLOW beyond",
        run: cthon::t_maxeof,
        local_only: None,
    },
    TestDef {
        id: "cthon-7",
        name: "mutual exclusion: blocking hand-off with data written under the lock",
        run: cthon::t_mutual_exclusion,
        local_only: None,
    },
    TestDef {
        id: "cthon-8",
        name: "lock/unlock rate",
        run: cthon::t_rate,
        local_only: None,
    },
    TestDef {
        id: "cthon-10",
        name: "partial unlock splits a lock, re-lock merges it",
        run: cthon::t_split_merge,
        local_only: None,
    },
    TestDef {
        id: "cthon-11",
        name: "close() of any descriptor releases the process's POSIX locks",
        run: cthon::t_close_releases,
        local_only: None,
    },
    TestDef {
        id: "cthon-12",
        name: "a killed process releases its locks (POSIX and OFD)",
        run: cthon::t_killed_releases,
        local_only: None,
    },
    TestDef {
        id: "ofd-1",
        name: "OFD locks conflict between descriptions of one process and with POSIX locks",
        run: linux::t_ofd_conflict,
        local_only: None,
    },
    TestDef {
        id: "ofd-2",
        name: "an OFD lock is released only on the last close of its description",
        run: linux::t_ofd_last_close,
        local_only: None,
    },
    TestDef {
        id: "flock-1",
        name: "flock LOCK_EX excludes other processes",
        run: linux::t_flock_exclusive,
        local_only: None,
    },
    TestDef {
        id: "flock-2",
        name: "flock belongs to the open file description",
        run: linux::t_flock_description,
        local_only: None,
    },
    TestDef {
        id: "flock-3",
        name: "shared flocks coexist, exclusive is refused, SH converts to EX",
        run: linux::t_flock_shared,
        local_only: None,
    },
    TestDef {
        id: "rw-posix",
        name: "POSIX read->write upgrade and write->read downgrade",
        run: linux::t_upgrade_posix,
        local_only: None,
    },
    TestDef {
        id: "rw-ofd",
        name: "OFD read->write upgrade and write->read downgrade",
        run: linux::t_upgrade_ofd,
        local_only: None,
    },
    TestDef {
        id: "edeadlk",
        name: "F_SETLKW that would deadlock fails with EDEADLK",
        run: linux::t_deadlock,
        local_only: Some(
            "needs two lock owners on one host: NLM has no cross-host deadlock detection",
        ),
    },
];

pub(super) const P: LockKind = LockKind::Posix;
pub(super) const W: LockType = LockType::Write;
pub(super) const RD: LockType = LockType::Read;

pub(super) fn r(start: i64, len: i64) -> Range {
    Range::new(start, len)
}
