//! The only place with `unsafe`: thin wrappers over the libc lock calls and signal setup.
//!
//! The lock calls deliberately go through the C library (`libc::fcntl`, `libc::flock`), not raw
//! syscalls, so an `LD_PRELOAD` shim can interpose them: that is how the test suite proves that
//! torture mode detects a lock implementation that grants everything.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// `fcntl(fd, cmd, struct flock *)` for the record-lock commands
/// (`F_GETLK`, `F_SETLK`, `F_SETLKW`, `F_OFD_GETLK`, `F_OFD_SETLK`, `F_OFD_SETLKW`).
///
/// # References
/// fcntl(2) "Advisory record locking" and "Open file description locks".
pub fn fcntl_lock(
    fd: BorrowedFd<'_>,
    cmd: libc::c_int,
    lock: &mut libc::flock,
) -> Result<(), Errno> {
    debug_assert!(matches!(
        cmd,
        libc::F_GETLK
            | libc::F_SETLK
            | libc::F_SETLKW
            | libc::F_OFD_GETLK
            | libc::F_OFD_SETLK
            | libc::F_OFD_SETLKW
    ));
    // SAFETY: `fd` is a borrowed, open descriptor that outlives the call; `lock` is an exclusive
    // reference to an initialised `struct flock`, which is exactly the third argument all six
    // commands expect (the kernel reads it, and F_GETLK/F_OFD_GETLK write it back in place).
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, lock as *mut libc::flock) };
    if r == -1 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `flock(fd, operation)`.
///
/// # References
/// flock(2).
pub fn flock(fd: BorrowedFd<'_>, operation: libc::c_int) -> Result<(), Errno> {
    // SAFETY: `fd` is a borrowed, open descriptor; flock(2) takes no pointers.
    let r = unsafe { libc::flock(fd.as_raw_fd(), operation) };
    if r == -1 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// Install SIGINT/SIGTERM handlers that only set a flag, read with [`stop_requested`].
///
/// SA_RESTART is not set: a blocking `F_SETLKW` or `read` then returns EINTR, so loops get to
/// look at the flag.
pub fn install_stop_handlers() -> Result<(), Errno> {
    let action = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived since [`install_stop_handlers`].
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

/// Ignore SIGINT and SIGTERM (helper processes: the supervisor decides when they stop, so a
/// Ctrl-C on the terminal does not kill the lock holder before the report is written).
pub fn ignore_stop_signals() -> Result<(), Errno> {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: SIG_IGN installs no code of ours; nothing is run in signal context.
        unsafe { sigaction(signal, &ignore) }?;
    }
    Ok(())
}
