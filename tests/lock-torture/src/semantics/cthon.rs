//! Connectathon `tlock.c` tests 1-8 and 10-12 (reference §5.1): byte ranges, MAXEOF, blocking
//! hand-off, the lock rate, split and merge, and the ways a POSIX lock is released.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::cases::{r, P, RD, W};
use super::ctx::{show, show_data, Ctx, Holder};
use super::error::{unexpected, CaseError, Context};
use super::MAXEOF;
use crate::lock::{self, errno_name, LockKind, Range};
use crate::protocol::{Request, Response};

pub(super) fn t_unlocked(c: &mut Ctx<'_>) -> Result<String, CaseError> {
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

pub(super) fn t_whole_file(c: &mut Ctx<'_>) -> Result<String, CaseError> {
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

pub(super) fn t_first_byte(c: &mut Ctx<'_>) -> Result<String, CaseError> {
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

pub(super) fn t_second_byte(c: &mut Ctx<'_>) -> Result<String, CaseError> {
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

pub(super) fn t_first_two(c: &mut Ctx<'_>) -> Result<String, CaseError> {
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

pub(super) fn t_maxeof(c: &mut Ctx<'_>) -> Result<String, CaseError> {
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
            return Err(unexpected(format!(
                "lock past the largest offset: expected EOVERFLOW, got {}",
                errno_name(e)
            )))
        }
        Ok(()) => return Err(unexpected("a lock past the largest offset was accepted")),
    };
    c.must_unlock(&f, P, r(MAXEOF, 1))?;
    c.peer_free(P, W, r(MAXEOF, 1))?;
    Ok(format!(
        "byte {MAXEOF} lockable; two bytes from there refused with {over}"
    ))
}

pub(super) fn t_mutual_exclusion(c: &mut Ctx<'_>) -> Result<String, CaseError> {
    // mlock test 7: a 6-byte lock at 4092 straddles a page boundary.
    let reg = r(4092, 6);
    let f = c.open()?;
    let wake = blocking_hand_off(c, &f, reg)?;
    data_under_the_lock(c, &f, reg)?;
    c.must_unlock(&f, P, reg)?;
    Ok(format!(
        "peer waited, was woken {:.1} ms after our unlock, data handed over both ways",
        wake.as_secs_f64() * 1e3
    ))
}

/// We lock `reg` and write "abcde" under it; the peer's blocking lock must wait until we
/// unlock, and then be granted. Returns how long after our unlock the peer was woken.
fn blocking_hand_off(c: &mut Ctx<'_>, f: &File, reg: Range) -> Result<Duration, CaseError> {
    c.lock(f, P, W, reg, true)
        .map_err(|e| CaseError::call("our blocking lock failed", e))?;
    f.write_all_at(b"abcde", 4092)
        .map_err(|e| CaseError::io("write under lock", e))?;
    c.peer_open(0)?;
    c.peer.send(&Request::Lock {
        slot: 0,
        kind: P,
        ty: W,
        range: reg,
        wait: true,
    })?;
    if let Some(resp) = c.peer.recv(Duration::from_millis(300))? {
        return Err(unexpected(match resp {
            Response::Ok => {
                "VIOLATION: the peer's blocking lock was granted while we held the range".into()
            }
            other => format!(
                "peer's blocking lock returned {} instead of waiting",
                show(&other)
            ),
        }));
    }
    let handed_over = Instant::now();
    c.must_unlock(f, P, reg)?;
    match c.peer.recv(Duration::from_secs(10))? {
        Some(Response::Ok) => {}
        Some(other) => {
            return Err(unexpected(format!(
                "peer's blocking lock: {}",
                show(&other)
            )))
        }
        None => {
            return Err(unexpected(
                "peer's blocking lock was not granted within 10 s of our unlock",
            ))
        }
    }
    Ok(handed_over.elapsed())
}

/// The peer, now holding `reg`, must read what we wrote and write "edcba" back; once it
/// unlocks, we take the lock again and must read the peer's bytes.
fn data_under_the_lock(c: &mut Ctx<'_>, f: &File, reg: Range) -> Result<(), CaseError> {
    match c.call(Request::Read {
        slot: 0,
        offset: 4092,
        len: 5,
    })? {
        Response::Data { data } if data == b"abcde" => {}
        other => {
            return Err(unexpected(format!(
                "peer read {} under its lock, expected \"abcde\"",
                show_data(&other)
            )))
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
    c.lock(f, P, W, reg, true)
        .map_err(|e| CaseError::call("our second blocking lock failed", e))?;
    let mut back = [0u8; 5];
    f.read_exact_at(&mut back, 4092)
        .map_err(|e| CaseError::io("read under lock", e))?;
    if &back != b"edcba" {
        return Err(unexpected(format!(
            "we read {:?} under the lock, expected \"edcba\" written by the peer",
            String::from_utf8_lossy(&back)
        )));
    }
    Ok(())
}

pub(super) fn t_rate(c: &mut Ctx<'_>) -> Result<String, CaseError> {
    let f = c.open()?;
    let n = c.opts.rate_cycles;
    let start = Instant::now();
    for i in 0..n {
        c.lock(&f, P, W, r(0, 1), false)
            .map_err(|e| CaseError::call(format!("cycle {i}: lock failed"), e))?;
        lock::unlock(&f, P, r(0, 1))
            .map_err(|e| CaseError::call(format!("cycle {i}: unlock failed"), e))?;
    }
    let t = start.elapsed().as_secs_f64();
    Ok(format!(
        "{n} lock/unlock cycles in {:.1} ms ({:.0} cycles/s)",
        t * 1e3,
        if t > 0.0 { f64::from(n) / t } else { 0.0 }
    ))
}

pub(super) fn t_split_merge(c: &mut Ctx<'_>) -> Result<String, CaseError> {
    let f = c.open()?;
    c.must_lock(&f, P, W, r(0, 3))?;
    c.must_unlock(&f, P, r(1, 1))?;
    c.peer_open(0)?;
    c.peer_conflict(P, W, r(0, 1), Some((W, r(0, 1))), Holder::Us)?;
    c.peer_free(P, W, r(1, 1))?;
    c.peer_conflict(P, W, r(2, 1), Some((W, r(2, 1))), Holder::Us)?;
    // The first conflict in [0, EOF) must be the first piece only: the lock was split.
    c.peer_conflict(P, W, r(0, 0), Some((W, r(0, 1))), Holder::Us)
        .context("after unlocking [1, +1) of [0, +3)")?;
    c.must_lock(&f, P, W, r(1, 1))?;
    c.peer_conflict(P, W, r(0, 0), Some((W, r(0, 3))), Holder::Us)
        .context("after re-locking [1, +1): the pieces were not merged")?;
    c.peer_conflict(P, W, r(1, 1), Some((W, r(0, 3))), Holder::Us)?;
    c.must_unlock(&f, P, Range::WHOLE)?;
    c.peer_free(P, W, Range::WHOLE)?;
    Ok("split into [0,+1) and [2,+1), merged back into [0,+3)".into())
}

pub(super) fn t_close_releases(c: &mut Ctx<'_>) -> Result<String, CaseError> {
    c.peer_open(0)?;
    let f = c.open()?;
    // A dup'd descriptor.
    c.must_lock(&f, P, W, Range::WHOLE)?;
    c.peer_conflict(P, W, Range::WHOLE, None, Holder::Us)?;
    let dup = f.try_clone().map_err(|e| CaseError::io("dup", e))?;
    drop(dup);
    c.peer_free(P, W, Range::WHOLE)
        .context("after closing a dup")?;
    // A second, independent open of the same file.
    c.must_lock(&f, P, W, Range::WHOLE)?;
    drop(c.open()?);
    c.peer_free(P, W, Range::WHOLE)
        .context("after closing a second open")?;
    // After a write and a truncate through the locked descriptor (cthon 11).
    c.must_lock(&f, P, W, Range::WHOLE)?;
    f.write_all_at(b"data", 0)
        .map_err(|e| CaseError::io("write", e))?;
    f.set_len(0).map_err(|e| CaseError::io("truncate", e))?;
    drop(c.open()?);
    c.peer_free(P, W, Range::WHOLE)
        .context("after write, truncate and close")?;
    // And the locked descriptor itself.
    c.must_lock(&f, P, W, Range::WHOLE)?;
    drop(f);
    c.peer_granted(0, P, W, Range::WHOLE)
        .context("after closing the locked descriptor")?;
    Ok("released by closing a dup, a second open, after write+truncate, and the locked fd".into())
}

pub(super) fn t_killed_releases(c: &mut Ctx<'_>) -> Result<String, CaseError> {
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
