//! The semantics suite: Connectathon `tlock.c` tests 1-8 and 10-12, plus OFD locks, flock,
//! upgrade/downgrade and EDEADLK (reference §5.1, §5.3-§5.5).
//!
//! As in `tlock.c`, this process is the "parent" and a peer is the "child": a local peer process
//! on a pipe, or (multi-host mode, like Linux-HA `mlock`) a worker on another host that reaches
//! the same file through its own mount. The peer's view is what counts: a lock is only proven
//! exclusive when *another* lock owner is refused.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use crate::lock::{self, errno_name, is_conflict, Conflict, LockKind, LockType, Range};
use crate::peer::Channel;
use crate::protocol::{Request, Response};

/// The largest offset a lock can start at (OFFSET_MAX for 64-bit off_t): Connectathon's MAXEOF.
pub const MAXEOF: i64 = i64::MAX;
const PEER_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub id: String,
    pub name: String,
    pub status: Status,
    /// Every errno a lock call returned during the test (including expected denials).
    pub errnos: Vec<String>,
    pub detail: String,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    pub mode: String,
    pub path: String,
    pub fs_type: String,
    pub peer: String,
    pub tests: Vec<TestResult>,
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
    pub verdict: String,
}

impl SuiteReport {
    pub fn new(path: &Path, fs_type: &str, peer: &str, tests: Vec<TestResult>) -> SuiteReport {
        let count = |s: Status| tests.iter().filter(|t| t.status == s).count() as u32;
        let (passed, failed, skipped) = (
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skip),
        );
        SuiteReport {
            mode: "semantics".into(),
            path: path.display().to_string(),
            fs_type: fs_type.into(),
            peer: peer.into(),
            passed,
            failed,
            skipped,
            verdict: if failed == 0 { "pass" } else { "fail" }.into(),
            tests,
        }
    }

    pub fn passed(&self) -> bool {
        self.failed == 0
    }

    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "lock-torture semantics on {} ({}), peer: {}",
            self.path, self.fs_type, self.peer
        );
        for t in &self.tests {
            let status = match t.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "SKIP",
            };
            let errnos = if t.errnos.is_empty() {
                String::new()
            } else {
                format!(" [errno seen: {}]", t.errnos.join(", "))
            };
            let _ = writeln!(s, "{status} {:<10} {}{errnos}", t.id, t.name);
            if !t.detail.is_empty() {
                let _ = writeln!(s, "     {}", t.detail);
            }
        }
        let _ = writeln!(
            s,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        );
        s
    }
}

#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// Only run tests whose id is listed (all when empty).
    pub only: Vec<String>,
    /// Lock/unlock cycles for the rate test (Connectathon's default is 1000).
    pub rate_cycles: u32,
    /// The peer is on another host: skip pid checks and tests that need both owners here.
    pub remote: bool,
    /// How long a released lock may take to become free (Connectathon `wait_time`, 3 s).
    pub release_wait: Duration,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            only: Vec::new(),
            rate_cycles: 1000,
            remote: false,
            release_wait: Duration::from_secs(3),
        }
    }
}

type TestFn = fn(&mut Ctx<'_>) -> Result<String, String>;

struct TestDef {
    id: &'static str,
    name: &'static str,
    run: TestFn,
    /// Needs two lock owners that this process controls directly (skipped in multi-host mode).
    local_only: Option<&'static str>,
}

const TESTS: &[TestDef] = &[
    TestDef {
        id: "cthon-1",
        name: "regions of an unlocked file are free",
        run: t_unlocked,
        local_only: None,
    },
    TestDef {
        id: "cthon-2",
        name: "a whole-file lock denies every region",
        run: t_whole_file,
        local_only: None,
    },
    TestDef {
        id: "cthon-3",
        name: "lock on the first byte: denied there, free after it",
        run: t_first_byte,
        local_only: None,
    },
    TestDef {
        id: "cthon-4",
        name: "lock on the second byte: free before and after it",
        run: t_second_byte,
        local_only: None,
    },
    TestDef {
        id: "cthon-5",
        name: "lock on the first two bytes",
        run: t_first_two,
        local_only: None,
    },
    TestDef {
        id: "cthon-6",
        name: "lock at the largest offset (MAXEOF), EOVERFLOW beyond",
        run: t_maxeof,
        local_only: None,
    },
    TestDef {
        id: "cthon-7",
        name: "mutual exclusion: blocking hand-off with data written under the lock",
        run: t_mutual_exclusion,
        local_only: None,
    },
    TestDef {
        id: "cthon-8",
        name: "lock/unlock rate",
        run: t_rate,
        local_only: None,
    },
    TestDef {
        id: "cthon-10",
        name: "partial unlock splits a lock, re-lock merges it",
        run: t_split_merge,
        local_only: None,
    },
    TestDef {
        id: "cthon-11",
        name: "close() of any descriptor releases the process's POSIX locks",
        run: t_close_releases,
        local_only: None,
    },
    TestDef {
        id: "cthon-12",
        name: "a killed process releases its locks (POSIX and OFD)",
        run: t_killed_releases,
        local_only: None,
    },
    TestDef {
        id: "ofd-1",
        name: "OFD locks conflict between descriptions of one process and with POSIX locks",
        run: t_ofd_conflict,
        local_only: None,
    },
    TestDef {
        id: "ofd-2",
        name: "an OFD lock is released only on the last close of its description",
        run: t_ofd_last_close,
        local_only: None,
    },
    TestDef {
        id: "flock-1",
        name: "flock LOCK_EX excludes other processes",
        run: t_flock_exclusive,
        local_only: None,
    },
    TestDef {
        id: "flock-2",
        name: "flock belongs to the open file description",
        run: t_flock_description,
        local_only: None,
    },
    TestDef {
        id: "flock-3",
        name: "shared flocks coexist, exclusive is refused, SH converts to EX",
        run: t_flock_shared,
        local_only: None,
    },
    TestDef {
        id: "rw-posix",
        name: "POSIX read->write upgrade and write->read downgrade",
        run: t_upgrade_posix,
        local_only: None,
    },
    TestDef {
        id: "rw-ofd",
        name: "OFD read->write upgrade and write->read downgrade",
        run: t_upgrade_ofd,
        local_only: None,
    },
    TestDef {
        id: "edeadlk",
        name: "F_SETLKW that would deadlock fails with EDEADLK",
        run: t_deadlock,
        local_only: Some(
            "needs two lock owners on one host: NLM has no cross-host deadlock detection",
        ),
    },
];

/// Ids of every test, in order.
pub fn test_ids() -> Vec<&'static str> {
    TESTS.iter().map(|t| t.id).collect()
}

/// Run the suite in `dir` against `peer`.
pub fn run_suite(dir: &Path, peer: &mut Channel, opts: &SuiteOptions) -> Vec<TestResult> {
    let mut results = Vec::new();
    for def in TESTS {
        if !opts.only.is_empty() && !opts.only.iter().any(|o| o == def.id) {
            continue;
        }
        let started = Instant::now();
        if let (true, Some(why)) = (opts.remote, def.local_only) {
            results.push(TestResult {
                id: def.id.into(),
                name: def.name.into(),
                status: Status::Skip,
                errnos: Vec::new(),
                detail: why.into(),
                duration_ms: 0,
            });
            continue;
        }
        let name = format!("lock-torture-semantics.{}.{}", std::process::id(), def.id);
        let mut ctx = Ctx {
            dir,
            name: name.clone(),
            peer: &mut *peer,
            opts,
            my_pid: std::process::id() as i32,
            errnos: Vec::new(),
        };
        let outcome = match ctx.create() {
            Ok(()) => (def.run)(&mut ctx),
            Err(e) => Err(e),
        };
        let errnos = std::mem::take(&mut ctx.errnos);
        // Close everything the peer has open (releasing its locks) before the next test.
        let _ = peer.call(&Request::Reset, PEER_TIMEOUT);
        let _ = std::fs::remove_file(dir.join(&name));
        let (status, detail) = match outcome {
            Ok(d) => (Status::Pass, d),
            Err(d) => (Status::Fail, d),
        };
        tracing::info!("{} {:?} {}", def.id, status, detail);
        results.push(TestResult {
            id: def.id.into(),
            name: def.name.into(),
            status,
            errnos,
            detail,
            duration_ms: started.elapsed().as_millis() as u64,
        });
    }
    results
}

struct Ctx<'a> {
    dir: &'a Path,
    name: String,
    peer: &'a mut Channel,
    opts: &'a SuiteOptions,
    my_pid: i32,
    errnos: Vec<String>,
}

/// Who must show up as the holder in a peer's test.
#[derive(Clone, Copy)]
enum Holder {
    /// This process (POSIX: l_pid is our pid, OFD: -1), checked only when the peer is local.
    Us,
    /// Whoever: only the conflict matters.
    Anyone,
}

type Step = Result<(), String>;

impl<'a> Ctx<'a> {
    fn create(&mut self) -> Step {
        let path = self.dir.join(&self.name);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map(drop)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))
    }

    fn open(&self) -> Result<File, String> {
        let path = self.dir.join(&self.name);
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    }

    fn saw(&mut self, e: Errno) {
        let n = errno_name(e);
        if !self.errnos.contains(&n) {
            self.errnos.push(n);
        }
    }

    fn lock(
        &mut self,
        f: &File,
        kind: LockKind,
        ty: LockType,
        r: Range,
        wait: bool,
    ) -> Result<(), Errno> {
        lock::lock(f, kind, ty, r, wait).inspect_err(|&e| self.saw(e))
    }

    fn must_lock(&mut self, f: &File, kind: LockKind, ty: LockType, r: Range) -> Step {
        self.lock(f, kind, ty, r, false)
            .map_err(|e| format!("our {kind} {ty:?} lock on {r} failed: {}", errno_name(e)))
    }

    fn must_deny(&mut self, f: &File, kind: LockKind, ty: LockType, r: Range, why: &str) -> Step {
        match self.lock(f, kind, ty, r, false) {
            Err(e) if is_conflict(e) => Ok(()),
            Err(e) => Err(format!(
                "{why}: expected EAGAIN/EACCES, got {}",
                errno_name(e)
            )),
            Ok(()) => Err(format!("{why}: the {kind} {ty:?} lock on {r} was GRANTED")),
        }
    }

    fn must_unlock(&mut self, f: &File, kind: LockKind, r: Range) -> Step {
        lock::unlock(f, kind, r).map_err(|e| {
            self.saw(e);
            format!("our unlock of {r} failed: {}", errno_name(e))
        })
    }

    fn call(&mut self, req: Request) -> Result<Response, String> {
        let resp = self
            .peer
            .call(&req, PEER_TIMEOUT)
            .map_err(|e| e.to_string())?;
        if let Response::Errno { errno, .. } = &resp {
            self.saw(Errno::from_raw(*errno));
        }
        Ok(resp)
    }

    fn peer_ok(&mut self, req: Request, what: &str) -> Step {
        match self.call(req)? {
            Response::Ok => Ok(()),
            other => Err(format!("peer {what}: {}", show(&other))),
        }
    }

    fn peer_open(&mut self, slot: u32) -> Step {
        let name = self.name.clone();
        self.peer_ok(
            Request::Open {
                slot,
                name,
                create: false,
            },
            "open",
        )
    }

    fn peer_free(&mut self, kind: LockKind, ty: LockType, r: Range) -> Step {
        match self.call(Request::Test {
            slot: 0,
            kind,
            ty,
            range: r,
        })? {
            Response::Free => Ok(()),
            other => Err(format!(
                "peer's {kind} test of a {ty:?} lock on {r} expected free, got {}",
                show(&other)
            )),
        }
    }

    fn peer_conflict(
        &mut self,
        kind: LockKind,
        ty: LockType,
        r: Range,
        expect: Option<(LockType, Range)>,
        holder: Holder,
    ) -> Result<Conflict, String> {
        let c = match self.call(Request::Test {
            slot: 0,
            kind,
            ty,
            range: r,
        })? {
            Response::Conflict { conflict } => conflict,
            other => {
                return Err(format!(
                    "peer's {kind} test of a {ty:?} lock on {r} expected a conflict, got {}",
                    show(&other)
                ))
            }
        };
        if let Some((ety, er)) = expect {
            if c.ty != ety || !same_bytes(c.range, er) {
                return Err(format!(
                    "peer's test of {r} reported a {:?} lock on {}, expected a {ety:?} lock on {er}",
                    c.ty, c.range
                ));
            }
        }
        if let (Holder::Us, false) = (holder, self.opts.remote) {
            // l_pid: the owner's pid for a POSIX lock, -1 for an OFD lock (fcntl(2)).
            let want = if kind == LockKind::Ofd {
                -1
            } else {
                self.my_pid
            };
            if c.pid != want {
                return Err(format!(
                    "peer's test of {r} names pid {} as the holder, expected {want}",
                    c.pid
                ));
            }
        }
        Ok(c)
    }

    fn peer_lock(
        &mut self,
        slot: u32,
        kind: LockKind,
        ty: LockType,
        r: Range,
    ) -> Result<Response, String> {
        self.call(Request::Lock {
            slot,
            kind,
            ty,
            range: r,
            wait: false,
        })
    }

    fn peer_denied(&mut self, slot: u32, kind: LockKind, ty: LockType, r: Range) -> Step {
        match self.peer_lock(slot, kind, ty, r)? {
            Response::Errno { errno, name } if is_conflict(Errno::from_raw(errno)) => {
                let _ = name;
                Ok(())
            }
            Response::Ok => {
                let _ = self.call(Request::Unlock {
                    slot,
                    kind,
                    range: r,
                });
                Err(format!(
                    "VIOLATION: the peer was GRANTED a conflicting {kind} {ty:?} lock on {r}"
                ))
            }
            other => Err(format!(
                "peer's {kind} {ty:?} lock on {r} expected EAGAIN/EACCES, got {}",
                show(&other)
            )),
        }
    }

    fn peer_granted(&mut self, slot: u32, kind: LockKind, ty: LockType, r: Range) -> Step {
        match self.peer_lock(slot, kind, ty, r)? {
            Response::Ok => Ok(()),
            other => Err(format!(
                "peer's {kind} {ty:?} lock on {r} expected success, got {}",
                show(&other)
            )),
        }
    }

    fn peer_unlock(&mut self, slot: u32, kind: LockKind, r: Range) -> Step {
        self.peer_ok(
            Request::Unlock {
                slot,
                kind,
                range: r,
            },
            "unlock",
        )
    }

    /// Poll until a write lock on `r` would be granted to a fresh owner, for at most
    /// `release_wait` (a lock released by process exit may take a moment over NFS).
    fn wait_free_from_here(&mut self, kind: LockKind, r: Range) -> Result<Duration, String> {
        let f = self.open()?;
        let start = Instant::now();
        loop {
            match lock::test(&f, kind, LockType::Write, r) {
                Ok(None) => return Ok(start.elapsed()),
                Ok(Some(c)) if start.elapsed() >= self.opts.release_wait => {
                    return Err(format!(
                        "{kind} lock on {} still held (pid {}) {:?} after its owner was killed",
                        c.range, c.pid, self.opts.release_wait
                    ))
                }
                Ok(Some(_)) => thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    self.saw(e);
                    return Err(format!("our {kind} test failed: {}", errno_name(e)));
                }
            }
        }
    }
}

/// Whether two fcntl ranges cover the same bytes: a lock that ends at the largest offset is
/// reported by F_GETLK with `l_len == 0` ("to EOF"), which is the same range.
pub fn same_bytes(a: Range, b: Range) -> bool {
    let end = |r: Range| {
        if r.len == 0 {
            i64::MAX
        } else {
            r.start.saturating_add(r.len - 1)
        }
    };
    a.start == b.start && end(a) == end(b)
}

fn show(r: &Response) -> String {
    match r {
        Response::Ok => "success".into(),
        Response::Free => "free".into(),
        Response::Errno { name, .. } => name.clone(),
        Response::Conflict { conflict: c } => format!(
            "a conflicting {:?} lock on {} (pid {})",
            c.ty, c.range, c.pid
        ),
        Response::Failed { message } => format!("failure: {message}"),
        other => format!("{other:?}"),
    }
}

const P: LockKind = LockKind::Posix;
const W: LockType = LockType::Write;
const RD: LockType = LockType::Read;

fn r(start: i64, len: i64) -> Range {
    Range::new(start, len)
}

fn t_unlocked(c: &mut Ctx<'_>) -> Result<String, String> {
    c.peer_open(0)?;
    let regions = [
        r(0, 0),
        r(0, 1),
        r(1, 1),
        r(0, 4096),
        r(1 << 40, 1),
        r(MAXEOF, 1),
    ];
    for reg in regions {
        c.peer_free(P, W, reg)?;
        c.peer_free(LockKind::Ofd, W, reg)?;
    }
    Ok(format!(
        "{} regions tested free with F_GETLK and F_OFD_GETLK",
        regions.len()
    ))
}

fn t_whole_file(c: &mut Ctx<'_>) -> Result<String, String> {
    let f = c.open()?;
    c.must_lock(&f, P, W, Range::WHOLE)?;
    c.peer_open(0)?;
    for reg in [r(0, 1), r(1, 1), r(0, 0), r(4096, 10), r(MAXEOF, 1)] {
        c.peer_conflict(P, W, reg, Some((W, Range::WHOLE)), Holder::Us)?;
    }
    c.peer_conflict(P, RD, r(100, 1), Some((W, Range::WHOLE)), Holder::Us)?;
    c.peer_denied(0, P, W, r(0, 1))?;
    c.peer_denied(0, P, RD, r(100, 1))?;
    c.must_unlock(&f, P, Range::WHOLE)?;
    c.peer_free(P, W, Range::WHOLE)?;
    Ok("every region denied while locked, free after unlock".into())
}

fn t_first_byte(c: &mut Ctx<'_>) -> Result<String, String> {
    let f = c.open()?;
    c.must_lock(&f, P, W, r(0, 1))?;
    c.peer_open(0)?;
    c.peer_conflict(P, W, r(0, 1), Some((W, r(0, 1))), Holder::Us)?;
    c.peer_conflict(P, W, r(0, 0), Some((W, r(0, 1))), Holder::Us)?;
    c.peer_free(P, W, r(1, 1))?;
    c.peer_free(P, W, r(1, 0))?;
    c.peer_denied(0, P, W, r(0, 1))?;
    c.peer_granted(0, P, W, r(1, 1))?;
    c.must_unlock(&f, P, r(0, 1))?;
    c.peer_free(P, W, r(0, 1))?;
    Ok(String::new())
}

fn t_second_byte(c: &mut Ctx<'_>) -> Result<String, String> {
    let f = c.open()?;
    c.must_lock(&f, P, W, r(1, 1))?;
    c.peer_open(0)?;
    c.peer_free(P, W, r(0, 1))?;
    c.peer_conflict(P, W, r(1, 1), Some((W, r(1, 1))), Holder::Us)?;
    c.peer_free(P, W, r(2, 1))?;
    c.peer_free(P, W, r(2, 0))?;
    c.peer_conflict(P, W, r(0, 0), Some((W, r(1, 1))), Holder::Us)?;
    c.peer_conflict(P, W, r(0, 2), Some((W, r(1, 1))), Holder::Us)?;
    c.must_unlock(&f, P, r(1, 1))?;
    c.peer_free(P, W, r(0, 0))?;
    Ok(String::new())
}

fn t_first_two(c: &mut Ctx<'_>) -> Result<String, String> {
    let f = c.open()?;
    c.must_lock(&f, P, W, r(0, 2))?;
    c.peer_open(0)?;
    c.peer_conflict(P, W, r(0, 1), Some((W, r(0, 2))), Holder::Us)?;
    c.peer_conflict(P, W, r(1, 1), Some((W, r(0, 2))), Holder::Us)?;
    c.peer_conflict(P, W, r(0, 0), Some((W, r(0, 2))), Holder::Us)?;
    c.peer_free(P, W, r(2, 1))?;
    c.peer_free(P, W, r(2, 0))?;
    c.must_unlock(&f, P, r(0, 2))?;
    Ok(String::new())
}

fn t_maxeof(c: &mut Ctx<'_>) -> Result<String, String> {
    let f = c.open()?;
    c.must_lock(&f, P, W, r(MAXEOF, 1))?;
    c.peer_open(0)?;
    c.peer_conflict(P, W, r(MAXEOF, 1), Some((W, r(MAXEOF, 1))), Holder::Us)?;
    c.peer_conflict(P, W, r(0, 0), Some((W, r(MAXEOF, 1))), Holder::Us)?;
    c.peer_conflict(P, W, r(MAXEOF - 1, 0), Some((W, r(MAXEOF, 1))), Holder::Us)?;
    c.peer_free(P, W, r(MAXEOF - 1, 1))?;
    c.peer_free(P, W, r(0, MAXEOF))?;
    c.peer_denied(0, P, W, r(MAXEOF, 1))?;
    // [MAXEOF, MAXEOF+2) does not fit in off_t: fcntl(2) says EOVERFLOW (EINVAL on some systems).
    let over = match c.lock(&f, P, W, r(MAXEOF, 2), false) {
        Err(e @ (Errno::EOVERFLOW | Errno::EINVAL)) => errno_name(e),
        Err(e) => {
            return Err(format!(
                "lock past the largest offset: expected EOVERFLOW, got {}",
                errno_name(e)
            ))
        }
        Ok(()) => return Err("a lock past the largest offset was accepted".into()),
    };
    c.must_unlock(&f, P, r(MAXEOF, 1))?;
    c.peer_free(P, W, r(MAXEOF, 1))?;
    Ok(format!(
        "byte {MAXEOF} lockable; two bytes from there refused with {over}"
    ))
}

fn t_mutual_exclusion(c: &mut Ctx<'_>) -> Result<String, String> {
    // mlock test 7: a 6-byte lock at 4092 straddles a page boundary.
    let reg = r(4092, 6);
    let f = c.open()?;
    c.lock(&f, P, W, reg, true)
        .map_err(|e| format!("our blocking lock failed: {}", errno_name(e)))?;
    f.write_all_at(b"abcde", 4092)
        .map_err(|e| format!("write under lock: {e}"))?;
    c.peer_open(0)?;
    c.peer
        .send(&Request::Lock {
            slot: 0,
            kind: P,
            ty: W,
            range: reg,
            wait: true,
        })
        .map_err(|e| e.to_string())?;
    if let Some(resp) = c
        .peer
        .recv(Duration::from_millis(300))
        .map_err(|e| e.to_string())?
    {
        return Err(match resp {
            Response::Ok => {
                "VIOLATION: the peer's blocking lock was granted while we held the range".into()
            }
            other => format!(
                "peer's blocking lock returned {} instead of waiting",
                show(&other)
            ),
        });
    }
    let handed_over = Instant::now();
    c.must_unlock(&f, P, reg)?;
    match c
        .peer
        .recv(Duration::from_secs(10))
        .map_err(|e| e.to_string())?
    {
        Some(Response::Ok) => {}
        Some(other) => return Err(format!("peer's blocking lock: {}", show(&other))),
        None => {
            return Err("peer's blocking lock was not granted within 10 s of our unlock".into())
        }
    }
    let wake = handed_over.elapsed();
    match c.call(Request::Read {
        slot: 0,
        offset: 4092,
        len: 5,
    })? {
        Response::Data { data } if data == b"abcde" => {}
        other => {
            return Err(format!(
                "peer read {} under its lock, expected \"abcde\"",
                show_data(&other)
            ))
        }
    }
    c.peer_ok(
        Request::Write {
            slot: 0,
            offset: 4092,
            data: b"edcba".to_vec(),
        },
        "write",
    )?;
    c.peer_unlock(0, P, reg)?;
    c.lock(&f, P, W, reg, true)
        .map_err(|e| format!("our second blocking lock failed: {}", errno_name(e)))?;
    let mut back = [0u8; 5];
    f.read_exact_at(&mut back, 4092)
        .map_err(|e| format!("read under lock: {e}"))?;
    if &back != b"edcba" {
        return Err(format!(
            "we read {:?} under the lock, expected \"edcba\" written by the peer",
            String::from_utf8_lossy(&back)
        ));
    }
    c.must_unlock(&f, P, reg)?;
    Ok(format!(
        "peer waited, was woken {:.1} ms after our unlock, data handed over both ways",
        wake.as_secs_f64() * 1e3
    ))
}

fn show_data(r: &Response) -> String {
    match r {
        Response::Data { data } => format!("{:?}", String::from_utf8_lossy(data)),
        other => show(other),
    }
}

fn t_rate(c: &mut Ctx<'_>) -> Result<String, String> {
    let f = c.open()?;
    let n = c.opts.rate_cycles;
    let start = Instant::now();
    for i in 0..n {
        c.lock(&f, P, W, r(0, 1), false)
            .map_err(|e| format!("cycle {i}: lock failed: {}", errno_name(e)))?;
        lock::unlock(&f, P, r(0, 1))
            .map_err(|e| format!("cycle {i}: unlock failed: {}", errno_name(e)))?;
    }
    let t = start.elapsed().as_secs_f64();
    Ok(format!(
        "{n} lock/unlock cycles in {:.1} ms ({:.0} cycles/s)",
        t * 1e3,
        if t > 0.0 { f64::from(n) / t } else { 0.0 }
    ))
}

fn t_split_merge(c: &mut Ctx<'_>) -> Result<String, String> {
    let f = c.open()?;
    c.must_lock(&f, P, W, r(0, 3))?;
    c.must_unlock(&f, P, r(1, 1))?;
    c.peer_open(0)?;
    c.peer_conflict(P, W, r(0, 1), Some((W, r(0, 1))), Holder::Us)?;
    c.peer_free(P, W, r(1, 1))?;
    c.peer_conflict(P, W, r(2, 1), Some((W, r(2, 1))), Holder::Us)?;
    // The first conflict in [0, EOF) must be the first piece only: the lock was split.
    c.peer_conflict(P, W, r(0, 0), Some((W, r(0, 1))), Holder::Us)
        .map_err(|e| format!("after unlocking [1, +1) of [0, +3): {e}"))?;
    c.must_lock(&f, P, W, r(1, 1))?;
    c.peer_conflict(P, W, r(0, 0), Some((W, r(0, 3))), Holder::Us)
        .map_err(|e| format!("after re-locking [1, +1): the pieces were not merged: {e}"))?;
    c.peer_conflict(P, W, r(1, 1), Some((W, r(0, 3))), Holder::Us)?;
    c.must_unlock(&f, P, Range::WHOLE)?;
    c.peer_free(P, W, Range::WHOLE)?;
    Ok("split into [0,+1) and [2,+1), merged back into [0,+3)".into())
}

fn t_close_releases(c: &mut Ctx<'_>) -> Result<String, String> {
    c.peer_open(0)?;
    let f = c.open()?;
    // A dup'd descriptor.
    c.must_lock(&f, P, W, Range::WHOLE)?;
    c.peer_conflict(P, W, Range::WHOLE, None, Holder::Us)?;
    let dup = f.try_clone().map_err(|e| format!("dup: {e}"))?;
    drop(dup);
    c.peer_free(P, W, Range::WHOLE)
        .map_err(|e| format!("after closing a dup: {e}"))?;
    // A second, independent open of the same file.
    c.must_lock(&f, P, W, Range::WHOLE)?;
    drop(c.open()?);
    c.peer_free(P, W, Range::WHOLE)
        .map_err(|e| format!("after closing a second open: {e}"))?;
    // After a write and a truncate through the locked descriptor (cthon 11).
    c.must_lock(&f, P, W, Range::WHOLE)?;
    f.write_all_at(b"data", 0)
        .map_err(|e| format!("write: {e}"))?;
    f.set_len(0).map_err(|e| format!("truncate: {e}"))?;
    drop(c.open()?);
    c.peer_free(P, W, Range::WHOLE)
        .map_err(|e| format!("after write, truncate and close: {e}"))?;
    // And the locked descriptor itself.
    c.must_lock(&f, P, W, Range::WHOLE)?;
    drop(f);
    c.peer_granted(0, P, W, Range::WHOLE)
        .map_err(|e| format!("after closing the locked descriptor: {e}"))?;
    Ok("released by closing a dup, a second open, after write+truncate, and the locked fd".into())
}

fn t_killed_releases(c: &mut Ctx<'_>) -> Result<String, String> {
    let mut notes = Vec::new();
    for kind in [LockKind::Posix, LockKind::Ofd] {
        let name = c.name.clone();
        c.peer_ok(
            Request::HoldAndDie {
                name,
                kind,
                range: Range::WHOLE,
            },
            "hold-and-die",
        )?;
        let took = c.wait_free_from_here(kind, Range::WHOLE)?;
        let f = c.open()?;
        c.must_lock(&f, kind, W, Range::WHOLE)?;
        c.must_unlock(&f, kind, Range::WHOLE)?;
        notes.push(format!(
            "{kind} free {:.0} ms after SIGKILL",
            took.as_secs_f64() * 1e3
        ));
    }
    Ok(notes.join(", "))
}

fn t_ofd_conflict(c: &mut Ctx<'_>) -> Result<String, String> {
    let o = LockKind::Ofd;
    let a = c.open()?;
    let b = c.open()?;
    c.must_lock(&a, o, W, r(0, 10))?;
    c.must_deny(&b, o, W, r(5, 1), "second description in the same process")?;
    c.peer_open(0)?;
    let seen = c.peer_conflict(o, W, r(0, 0), Some((W, r(0, 10))), Holder::Anyone)?;
    if !c.opts.remote && seen.pid != -1 {
        return Err(format!(
            "F_OFD_GETLK reported l_pid {} for an OFD lock, fcntl(2) says -1",
            seen.pid
        ));
    }
    // OFD and POSIX locks conflict with each other (LTP fcntl36).
    c.peer_conflict(P, W, r(3, 1), Some((W, r(0, 10))), Holder::Anyone)?;
    c.peer_denied(0, P, W, r(3, 1))?;
    c.must_unlock(&a, o, r(0, 10))?;
    c.must_lock(&b, o, W, r(5, 1))?;
    c.peer_denied(0, P, RD, r(5, 1))?;
    c.must_unlock(&b, o, r(5, 1))?;
    c.peer_free(o, W, Range::WHOLE)?;
    Ok(String::new())
}

fn t_ofd_last_close(c: &mut Ctx<'_>) -> Result<String, String> {
    let o = LockKind::Ofd;
    let a = c.open()?;
    c.must_lock(&a, o, W, Range::WHOLE)?;
    c.peer_open(0)?;
    // Unlike POSIX, closing another description of the file does not release it.
    drop(c.open()?);
    c.peer_conflict(o, W, Range::WHOLE, None, Holder::Anyone)
        .map_err(|e| format!("after closing another description: {e}"))?;
    let b = a.try_clone().map_err(|e| format!("dup: {e}"))?;
    drop(a);
    c.peer_conflict(o, W, Range::WHOLE, None, Holder::Anyone)
        .map_err(|e| format!("after closing one of two fds of the description: {e}"))?;
    drop(b);
    c.peer_free(o, W, Range::WHOLE)
        .map_err(|e| format!("after the last close: {e}"))?;
    Ok("held across closing another open and a dup, released on the last close".into())
}

fn t_flock_exclusive(c: &mut Ctx<'_>) -> Result<String, String> {
    let fl = LockKind::Flock;
    let f = c.open()?;
    c.must_lock(&f, fl, W, Range::WHOLE)?;
    c.peer_open(0)?;
    c.peer_denied(0, fl, W, Range::WHOLE)?;
    c.peer_denied(0, fl, RD, Range::WHOLE)?;
    c.must_unlock(&f, fl, Range::WHOLE)?;
    c.peer_granted(0, fl, W, Range::WHOLE)?;
    c.must_deny(
        &f,
        fl,
        RD,
        Range::WHOLE,
        "our LOCK_SH while the peer holds LOCK_EX",
    )?;
    c.peer_unlock(0, fl, Range::WHOLE)?;
    Ok(String::new())
}

fn t_flock_description(c: &mut Ctx<'_>) -> Result<String, String> {
    let fl = LockKind::Flock;
    let a = c.open()?;
    let b = c.open()?;
    c.must_lock(&a, fl, W, Range::WHOLE)?;
    // LTP flock06: two opens in one process conflict.
    c.must_deny(
        &b,
        fl,
        W,
        Range::WHOLE,
        "LOCK_EX on a second open in the same process",
    )?;
    // A dup shares the description, so it already holds the lock.
    let d = a.try_clone().map_err(|e| format!("dup: {e}"))?;
    c.must_lock(&d, fl, W, Range::WHOLE)
        .map_err(|e| format!("LOCK_EX through a dup of the holder: {e}"))?;
    drop(a);
    c.must_deny(
        &b,
        fl,
        W,
        Range::WHOLE,
        "the dup still holds the lock after closing the original fd",
    )?;
    drop(d);
    c.must_lock(&b, fl, W, Range::WHOLE)
        .map_err(|e| format!("after the last close of the holder's description: {e}"))?;
    Ok(String::new())
}

fn t_flock_shared(c: &mut Ctx<'_>) -> Result<String, String> {
    let fl = LockKind::Flock;
    let f = c.open()?;
    c.must_lock(&f, fl, RD, Range::WHOLE)?;
    c.peer_open(0)?;
    c.peer_open(1)?;
    c.peer_granted(0, fl, RD, Range::WHOLE)?;
    c.peer_denied(1, fl, W, Range::WHOLE)?;
    c.peer_unlock(0, fl, Range::WHOLE)?;
    c.must_lock(&f, fl, W, Range::WHOLE)
        .map_err(|e| format!("converting our LOCK_SH to LOCK_EX: {e}"))?;
    c.peer_denied(1, fl, RD, Range::WHOLE)?;
    c.must_unlock(&f, fl, Range::WHOLE)?;
    Ok(String::new())
}

fn upgrade(c: &mut Ctx<'_>, k: LockKind) -> Result<String, String> {
    let reg = r(0, 10);
    let f = c.open()?;
    c.must_lock(&f, k, RD, reg)?;
    c.peer_open(0)?;
    c.peer_granted(0, k, RD, reg)?;
    c.must_deny(
        &f,
        k,
        W,
        reg,
        "upgrade while the peer also holds a read lock",
    )?;
    // A refused upgrade must leave the read lock in place (no unlock-then-fail).
    c.peer_unlock(0, k, reg)?;
    c.peer_conflict(k, W, reg, Some((RD, reg)), Holder::Us)
        .map_err(|e| format!("after a refused upgrade: {e}"))?;
    c.must_lock(&f, k, W, reg)
        .map_err(|e| format!("upgrade once alone: {e}"))?;
    c.peer_conflict(k, RD, reg, Some((W, reg)), Holder::Us)?;
    c.must_lock(&f, k, RD, reg)
        .map_err(|e| format!("downgrade: {e}"))?;
    c.peer_conflict(k, W, reg, Some((RD, reg)), Holder::Us)?;
    c.peer_granted(0, k, RD, reg)?;
    // Downgrade of part of a range splits it by type.
    c.peer_unlock(0, k, reg)?;
    c.must_lock(&f, k, W, reg)?;
    c.must_lock(&f, k, RD, r(4, 2))?;
    c.peer_conflict(k, RD, r(0, 0), Some((W, r(0, 4))), Holder::Us)
        .map_err(|e| format!("partial downgrade of [4,+2): {e}"))?;
    c.peer_conflict(k, W, r(4, 2), Some((RD, r(4, 2))), Holder::Us)
        .map_err(|e| format!("partial downgrade of [4,+2): {e}"))?;
    c.peer_free(k, RD, r(4, 2))?;
    c.peer_conflict(k, RD, r(6, 0), Some((W, r(6, 4))), Holder::Us)?;
    c.must_unlock(&f, k, Range::WHOLE)?;
    c.peer_free(k, W, Range::WHOLE)?;
    Ok(String::new())
}

fn t_upgrade_posix(c: &mut Ctx<'_>) -> Result<String, String> {
    upgrade(c, LockKind::Posix)
}

fn t_upgrade_ofd(c: &mut Ctx<'_>) -> Result<String, String> {
    upgrade(c, LockKind::Ofd)
}

fn t_deadlock(c: &mut Ctx<'_>) -> Result<String, String> {
    // Two owners that this process controls: the usual peer (P2) and a second one (P1).
    let mut p1 = Channel::spawn_local(c.dir).map_err(|e| e.to_string())?;
    let name = c.name.clone();
    let t = PEER_TIMEOUT;
    let call1 = |p1: &mut Channel, req: Request| p1.call(&req, t).map_err(|e| e.to_string());
    match call1(
        &mut p1,
        Request::Open {
            slot: 0,
            name,
            create: false,
        },
    )? {
        Response::Ok => {}
        other => return Err(format!("second peer open: {}", show(&other))),
    }
    match call1(
        &mut p1,
        Request::Lock {
            slot: 0,
            kind: P,
            ty: W,
            range: r(0, 1),
            wait: false,
        },
    )? {
        Response::Ok => {}
        other => return Err(format!("second peer lock [0,+1): {}", show(&other))),
    }
    c.peer_open(0)?;
    c.peer_granted(0, P, W, r(1, 1))?;
    c.peer
        .send(&Request::Lock {
            slot: 0,
            kind: P,
            ty: W,
            range: r(0, 1),
            wait: true,
        })
        .map_err(|e| e.to_string())?;
    if let Some(resp) = c
        .peer
        .recv(Duration::from_millis(200))
        .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "peer's blocking lock on [0,+1) did not wait: {}",
            show(&resp)
        ));
    }
    // P1 now asks for what P2 holds while P2 waits for P1: the kernel must refuse with EDEADLK.
    p1.send(&Request::Lock {
        slot: 0,
        kind: P,
        ty: W,
        range: r(1, 1),
        wait: true,
    })
    .map_err(|e| e.to_string())?;
    let verdict = match p1.recv(Duration::from_secs(3)).map_err(|e| e.to_string())? {
        Some(Response::Errno { errno, name }) => {
            c.saw(Errno::from_raw(errno));
            if Errno::from_raw(errno) == Errno::EDEADLK {
                Ok(())
            } else {
                Err(format!(
                    "the deadlocking F_SETLKW failed with {name}, expected EDEADLK"
                ))
            }
        }
        Some(other) => Err(format!(
            "the deadlocking F_SETLKW returned {}",
            show(&other)
        )),
        None => Err(
            "no EDEADLK: the deadlocking F_SETLKW blocked for 3 s (deadlock not detected)".into(),
        ),
    };
    // Break the cycle either way: killing P1 releases [0,+1) and wakes P2.
    p1.kill();
    match c
        .peer
        .recv(Duration::from_secs(10))
        .map_err(|e| e.to_string())?
    {
        Some(Response::Ok) => {}
        Some(other) => {
            return Err(format!(
                "peer's waiting lock after the deadlock was broken: {}",
                show(&other)
            ))
        }
        None => {
            return Err("peer's waiting lock was not granted after the other owner died".into())
        }
    }
    verdict.map(|()| "EDEADLK returned at once to the request that closed the cycle".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_ending_at_offset_max_are_the_same_bytes() {
        assert!(same_bytes(r(MAXEOF, 1), r(MAXEOF, 0)));
        assert!(same_bytes(r(5, 0), r(5, MAXEOF - 4)));
        assert!(!same_bytes(r(0, 1), r(0, 0)));
        assert!(!same_bytes(r(0, 3), r(1, 2)));
    }

    #[test]
    fn ids_are_unique() {
        let mut ids = test_ids();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    #[test]
    fn report_counts_and_verdict() {
        let t = |id: &str, status| TestResult {
            id: id.into(),
            name: "n".into(),
            status,
            errnos: vec!["EAGAIN".into()],
            detail: "why".into(),
            duration_ms: 1,
        };
        let rep = SuiteReport::new(
            Path::new("/d"),
            "tmpfs",
            "local",
            vec![t("a", Status::Pass), t("b", Status::Skip)],
        );
        assert!(rep.passed());
        assert_eq!((rep.passed, rep.failed, rep.skipped), (1, 0, 1));
        let rep = SuiteReport::new(
            Path::new("/d"),
            "tmpfs",
            "local",
            vec![t("a", Status::Pass), t("b", Status::Fail)],
        );
        assert!(!rep.passed());
        assert_eq!(rep.verdict, "fail");
        let text = rep.render_text();
        assert!(text.contains("FAIL b"), "{text}");
        assert!(text.contains("[errno seen: EAGAIN]"), "{text}");
        assert!(text.contains("1 passed, 1 failed, 0 skipped"), "{text}");
    }
}
