//! Linux lock semantics beyond Connectathon (reference §5.3-§5.5): OFD locks, flock,
//! read/write upgrade and downgrade, and EDEADLK.

use std::time::Duration;

use nix::errno::Errno;

use super::cases::{r, P, RD, W};
use super::ctx::{show, Ctx, Holder};
use super::error::{unexpected, CaseError, Context};
use super::PEER_TIMEOUT;
use crate::lock::{LockKind, Range};
use crate::peer::Channel;
use crate::protocol::{Request, Response};

pub(super) fn t_ofd_conflict(c: &mut Ctx<'_>) -> Result<String, CaseError> {
    let o = LockKind::Ofd;
    let a = c.open()?;
    let b = c.open()?;
    c.must_lock(&a, o, W, r(0, 10))?;
    c.must_deny(&b, o, W, r(5, 1), "second description in the same process")?;
    c.peer_open(0)?;
    let seen = c.peer_conflict(o, W, r(0, 0), Some((W, r(0, 10))), Holder::Anyone)?;
    if !c.opts.remote && seen.pid != -1 {
        return Err(unexpected(format!(
            "F_OFD_GETLK reported l_pid {} for an OFD lock, fcntl(2) says -1",
            seen.pid
        )));
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

pub(super) fn t_ofd_last_close(c: &mut Ctx<'_>) -> Result<String, CaseError> {
    let o = LockKind::Ofd;
    let a = c.open()?;
    c.must_lock(&a, o, W, Range::WHOLE)?;
    c.peer_open(0)?;
    // Unlike POSIX, closing another description of the file does not release it.
    drop(c.open()?);
    c.peer_conflict(o, W, Range::WHOLE, None, Holder::Anyone)
        .context("after closing another description")?;
    let b = a.try_clone().map_err(|e| CaseError::io("dup", e))?;
    drop(a);
    c.peer_conflict(o, W, Range::WHOLE, None, Holder::Anyone)
        .context("after closing one of two fds of the description")?;
    drop(b);
    c.peer_free(o, W, Range::WHOLE)
        .context("after the last close")?;
    Ok("held across closing another open and a dup, released on the last close".into())
}

pub(super) fn t_flock_exclusive(c: &mut Ctx<'_>) -> Result<String, CaseError> {
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

pub(super) fn t_flock_description(c: &mut Ctx<'_>) -> Result<String, CaseError> {
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
    let d = a.try_clone().map_err(|e| CaseError::io("dup", e))?;
    c.must_lock(&d, fl, W, Range::WHOLE)
        .context("LOCK_EX through a dup of the holder")?;
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
        .context("after the last close of the holder's description")?;
    Ok(String::new())
}

pub(super) fn t_flock_shared(c: &mut Ctx<'_>) -> Result<String, CaseError> {
    let fl = LockKind::Flock;
    let f = c.open()?;
    c.must_lock(&f, fl, RD, Range::WHOLE)?;
    c.peer_open(0)?;
    c.peer_open(1)?;
    c.peer_granted(0, fl, RD, Range::WHOLE)?;
    c.peer_denied(1, fl, W, Range::WHOLE)?;
    c.peer_unlock(0, fl, Range::WHOLE)?;
    c.must_lock(&f, fl, W, Range::WHOLE)
        .context("converting our LOCK_SH to LOCK_EX")?;
    c.peer_denied(1, fl, RD, Range::WHOLE)?;
    c.must_unlock(&f, fl, Range::WHOLE)?;
    Ok(String::new())
}

fn upgrade(c: &mut Ctx<'_>, k: LockKind) -> Result<String, CaseError> {
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
        .context("after a refused upgrade")?;
    c.must_lock(&f, k, W, reg).context("upgrade once alone")?;
    c.peer_conflict(k, RD, reg, Some((W, reg)), Holder::Us)?;
    c.must_lock(&f, k, RD, reg).context("downgrade")?;
    c.peer_conflict(k, W, reg, Some((RD, reg)), Holder::Us)?;
    c.peer_granted(0, k, RD, reg)?;
    // Downgrade of part of a range splits it by type.
    c.peer_unlock(0, k, reg)?;
    c.must_lock(&f, k, W, reg)?;
    c.must_lock(&f, k, RD, r(4, 2))?;
    c.peer_conflict(k, RD, r(0, 0), Some((W, r(0, 4))), Holder::Us)
        .context("partial downgrade of [4,+2)")?;
    c.peer_conflict(k, W, r(4, 2), Some((RD, r(4, 2))), Holder::Us)
        .context("partial downgrade of [4,+2)")?;
    c.peer_free(k, RD, r(4, 2))?;
    c.peer_conflict(k, RD, r(6, 0), Some((W, r(6, 4))), Holder::Us)?;
    c.must_unlock(&f, k, Range::WHOLE)?;
    c.peer_free(k, W, Range::WHOLE)?;
    Ok(String::new())
}

pub(super) fn t_upgrade_posix(c: &mut Ctx<'_>) -> Result<String, CaseError> {
    upgrade(c, LockKind::Posix)
}

pub(super) fn t_upgrade_ofd(c: &mut Ctx<'_>) -> Result<String, CaseError> {
    upgrade(c, LockKind::Ofd)
}

pub(super) fn t_deadlock(c: &mut Ctx<'_>) -> Result<String, CaseError> {
    // Two owners that this process controls: the usual peer (P2) and a second one (P1).
    let mut p1 = second_owner_holds_first_byte(c)?;
    peer_waits_for_first_byte(c)?;
    // P1 now asks for what P2 holds while P2 waits for P1: the kernel must refuse with EDEADLK.
    p1.send(&Request::Lock {
        slot: 0,
        kind: P,
        ty: W,
        range: r(1, 1),
        wait: true,
    })?;
    let verdict = expect_edeadlk(c, p1.recv(Duration::from_secs(3))?);
    // Break the cycle either way: killing P1 releases [0,+1) and wakes P2.
    p1.kill();
    match c.peer.recv(Duration::from_secs(10))? {
        Some(Response::Ok) => {}
        Some(other) => {
            return Err(unexpected(format!(
                "peer's waiting lock after the deadlock was broken: {}",
                show(&other)
            )))
        }
        None => {
            return Err(unexpected(
                "peer's waiting lock was not granted after the other owner died",
            ))
        }
    }
    verdict.map(|()| "EDEADLK returned at once to the request that closed the cycle".into())
}

/// Start a second local peer (P1) that opens the test file and locks its first byte.
fn second_owner_holds_first_byte(c: &mut Ctx<'_>) -> Result<Channel, CaseError> {
    let mut p1 = Channel::spawn_local(c.dir)?;
    let name = c.name.clone();
    let t = PEER_TIMEOUT;
    let call1 = |p1: &mut Channel, req: Request| p1.call(&req, t).map_err(CaseError::from);
    match call1(
        &mut p1,
        Request::Open {
            slot: 0,
            name,
            create: false,
        },
    )? {
        Response::Ok => {}
        other => return Err(unexpected(format!("second peer open: {}", show(&other)))),
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
        other => {
            return Err(unexpected(format!(
                "second peer lock [0,+1): {}",
                show(&other)
            )))
        }
    }
    Ok(p1)
}

/// The usual peer (P2) locks the second byte, then waits for the first, which P1 holds.
fn peer_waits_for_first_byte(c: &mut Ctx<'_>) -> Result<(), CaseError> {
    c.peer_open(0)?;
    c.peer_granted(0, P, W, r(1, 1))?;
    c.peer.send(&Request::Lock {
        slot: 0,
        kind: P,
        ty: W,
        range: r(0, 1),
        wait: true,
    })?;
    if let Some(resp) = c.peer.recv(Duration::from_millis(200))? {
        return Err(unexpected(format!(
            "peer's blocking lock on [0,+1) did not wait: {}",
            show(&resp)
        )));
    }
    Ok(())
}

/// Judge P1's answer to the request that closes the cycle: only EDEADLK passes.
fn expect_edeadlk(c: &mut Ctx<'_>, answer: Option<Response>) -> Result<(), CaseError> {
    match answer {
        Some(Response::Errno { errno, name }) => {
            c.saw(Errno::from_raw(errno));
            if Errno::from_raw(errno) == Errno::EDEADLK {
                Ok(())
            } else {
                Err(unexpected(format!(
                    "the deadlocking F_SETLKW failed with {name}, expected EDEADLK"
                )))
            }
        }
        Some(other) => Err(unexpected(format!(
            "the deadlocking F_SETLKW returned {}",
            show(&other)
        ))),
        None => Err(unexpected(
            "no EDEADLK: the deadlocking F_SETLKW blocked for 3 s (deadlock not detected)",
        )),
    }
}
