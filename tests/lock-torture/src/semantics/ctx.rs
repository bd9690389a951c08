//! The test context: the file under test, the peer, and the steps every test is written in
//! ("we lock", "the peer must be denied", "the peer must see it free"). Each step records the
//! errnos it saw and fails with a [`CaseError`] that says what was expected.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::error::{unexpected, CaseError};
use super::{SuiteOptions, PEER_TIMEOUT};
use crate::lock::{self, errno_name, is_conflict, Conflict, LockKind, LockType, Range};
use crate::peer::Channel;
use crate::protocol::{Request, Response};

pub(super) struct Ctx<'a> {
    pub dir: &'a Path,
    /// The test file's name in `dir`.
    pub name: String,
    pub peer: &'a mut Channel,
    pub opts: &'a SuiteOptions,
    pub my_pid: i32,
    /// Every errno a lock call returned so far (the report lists them).
    pub errnos: Vec<String>,
}

/// Who must show up as the holder in a peer's test.
#[derive(Clone, Copy)]
pub(super) enum Holder {
    /// This process (POSIX: l_pid is our pid, OFD: -1), checked only when the peer is local.
    Us,
    /// Whoever: only the conflict matters.
    Anyone,
}

pub(super) type Step = Result<(), CaseError>;

impl<'a> Ctx<'a> {
    pub(super) fn create(&mut self) -> Step {
        let path = self.dir.join(&self.name);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map(drop)
            .map_err(|source| CaseError::File {
                op: "create",
                path: path.clone(),
                source,
            })
    }

    pub(super) fn open(&self) -> Result<File, CaseError> {
        let path = self.dir.join(&self.name);
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| CaseError::File {
                op: "open",
                path: path.clone(),
                source,
            })
    }

    pub(super) fn saw(&mut self, e: Errno) {
        let n = errno_name(e);
        if !self.errnos.contains(&n) {
            self.errnos.push(n);
        }
    }

    pub(super) fn lock(
        &mut self,
        f: &File,
        kind: LockKind,
        ty: LockType,
        r: Range,
        wait: bool,
    ) -> Result<(), Errno> {
        lock::lock(f, kind, ty, r, wait).inspect_err(|&e| self.saw(e))
    }

    pub(super) fn must_lock(&mut self, f: &File, kind: LockKind, ty: LockType, r: Range) -> Step {
        self.lock(f, kind, ty, r, false)
            .map_err(|e| CaseError::call(format!("our {kind} {ty:?} lock on {r} failed"), e))
    }

    pub(super) fn must_deny(
        &mut self,
        f: &File,
        kind: LockKind,
        ty: LockType,
        r: Range,
        why: &str,
    ) -> Step {
        match self.lock(f, kind, ty, r, false) {
            Err(e) if is_conflict(e) => Ok(()),
            Err(e) => Err(unexpected(format!(
                "{why}: expected EAGAIN/EACCES, got {}",
                errno_name(e)
            ))),
            Ok(()) => Err(unexpected(format!(
                "{why}: the {kind} {ty:?} lock on {r} was GRANTED"
            ))),
        }
    }

    pub(super) fn must_unlock(&mut self, f: &File, kind: LockKind, r: Range) -> Step {
        lock::unlock(f, kind, r).map_err(|e| {
            self.saw(e);
            CaseError::call(format!("our unlock of {r} failed"), e)
        })
    }

    pub(super) fn call(&mut self, req: Request) -> Result<Response, CaseError> {
        let resp = self.peer.call(&req, PEER_TIMEOUT)?;
        if let Response::Errno { errno, .. } = &resp {
            self.saw(Errno::from_raw(*errno));
        }
        Ok(resp)
    }

    pub(super) fn peer_ok(&mut self, req: Request, what: &str) -> Step {
        match self.call(req)? {
            Response::Ok => Ok(()),
            other => Err(unexpected(format!("peer {what}: {}", show(&other)))),
        }
    }

    pub(super) fn peer_open(&mut self, slot: u32) -> Step {
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

    pub(super) fn peer_free(&mut self, kind: LockKind, ty: LockType, r: Range) -> Step {
        match self.call(Request::Test {
            slot: 0,
            kind,
            ty,
            range: r,
        })? {
            Response::Free => Ok(()),
            other => Err(unexpected(format!(
                "peer's {kind} test of a {ty:?} lock on {r} expected free, got {}",
                show(&other)
            ))),
        }
    }

    pub(super) fn peer_conflict(
        &mut self,
        kind: LockKind,
        ty: LockType,
        r: Range,
        expect: Option<(LockType, Range)>,
        holder: Holder,
    ) -> Result<Conflict, CaseError> {
        let c = match self.call(Request::Test {
            slot: 0,
            kind,
            ty,
            range: r,
        })? {
            Response::Conflict { conflict } => conflict,
            other => {
                return Err(unexpected(format!(
                    "peer's {kind} test of a {ty:?} lock on {r} expected a conflict, got {}",
                    show(&other)
                )))
            }
        };
        if let Some((ety, er)) = expect {
            if c.ty != ety || !same_bytes(c.range, er) {
                return Err(unexpected(format!(
                    "peer's test of {r} reported a {:?} lock on {}, expected a {ety:?} lock on {er}",
                    c.ty, c.range
                )));
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
                return Err(unexpected(format!(
                    "peer's test of {r} names pid {} as the holder, expected {want}",
                    c.pid
                )));
            }
        }
        Ok(c)
    }

    pub(super) fn peer_lock(
        &mut self,
        slot: u32,
        kind: LockKind,
        ty: LockType,
        r: Range,
    ) -> Result<Response, CaseError> {
        self.call(Request::Lock {
            slot,
            kind,
            ty,
            range: r,
            wait: false,
        })
    }

    pub(super) fn peer_denied(
        &mut self,
        slot: u32,
        kind: LockKind,
        ty: LockType,
        r: Range,
    ) -> Step {
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
                Err(unexpected(format!(
                    "VIOLATION: the peer was GRANTED a conflicting {kind} {ty:?} lock on {r}"
                )))
            }
            other => Err(unexpected(format!(
                "peer's {kind} {ty:?} lock on {r} expected EAGAIN/EACCES, got {}",
                show(&other)
            ))),
        }
    }

    pub(super) fn peer_granted(
        &mut self,
        slot: u32,
        kind: LockKind,
        ty: LockType,
        r: Range,
    ) -> Step {
        match self.peer_lock(slot, kind, ty, r)? {
            Response::Ok => Ok(()),
            other => Err(unexpected(format!(
                "peer's {kind} {ty:?} lock on {r} expected success, got {}",
                show(&other)
            ))),
        }
    }

    pub(super) fn peer_unlock(&mut self, slot: u32, kind: LockKind, r: Range) -> Step {
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
    pub(super) fn wait_free_from_here(
        &mut self,
        kind: LockKind,
        r: Range,
    ) -> Result<Duration, CaseError> {
        let f = self.open()?;
        let start = Instant::now();
        loop {
            match lock::test(&f, kind, LockType::Write, r) {
                Ok(None) => return Ok(start.elapsed()),
                Ok(Some(c)) if start.elapsed() >= self.opts.release_wait => {
                    return Err(unexpected(format!(
                        "{kind} lock on {} still held (pid {}) {:?} after its owner was killed",
                        c.range, c.pid, self.opts.release_wait
                    )))
                }
                Ok(Some(_)) => thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    self.saw(e);
                    return Err(CaseError::call(format!("our {kind} test failed"), e));
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

pub(super) fn show(r: &Response) -> String {
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

pub(super) fn show_data(r: &Response) -> String {
    match r {
        Response::Data { data } => format!("{:?}", String::from_utf8_lossy(data)),
        other => show(other),
    }
}
