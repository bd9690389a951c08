//! sd_notify(3) that never blocks the main loop.
//!
//! The loop that sends READY=1, STATUS= and WATCHDOG=1 is the loop that beats and fences
//! (`super`): it must never wait for the service manager. A datagram to NOTIFY_SOCKET blocks
//! when the receiver's queue is full (`net.unix.max_dgram_qlen` datagrams unread, 10 by
//! default), and the sd-notify crate's `notify` sends blocking: with a manager that did not read
//! its socket, mmpd's 11th STATUS= (about 60 s after READY) stopped the loop, its heartbeats and
//! its fence decisions, and it never fenced (found by the soak test, `tests/soak.rs`; the
//! regression test is `tests/systemd.rs`). Here the send is non-blocking, and a message the
//! manager has no room for is dropped and logged: a manager that reads nothing misses a status
//! line, never a heartbeat. (A missed WATCHDOG=1 makes systemd act on its own watchdog, which is
//! what that watchdog is for.)

use sd_notify::NotifyState;
use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};

/// Messages dropped so far (the manager's queue was full).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Sends `states` to $NOTIFY_SOCKET (nothing without it), without blocking.
pub fn notify(states: &[NotifyState]) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
    match send(&path, msg.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            let n = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
            // The first drop and then every doubling: a manager that stopped reading is news,
            // each further line is not.
            if n.is_power_of_two() {
                tracing::warn!(
                    "the service manager's notify socket is full: dropped {n} message(s) so far (this one: {})",
                    msg.trim_end().replace('\n', " ")
                );
            }
        }
        Err(e) => tracing::debug!("sd_notify: {e}"),
    }
}

/// One datagram to `path` (`@name`: the abstract namespace, as systemd may pass it).
fn send(path: &OsStr, msg: &[u8]) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    let n = sock.send_to_addr(msg, &addr)?;
    if n == msg.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "incomplete datagram",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A receiver that reads nothing: once its queue is full the send returns WouldBlock at
    /// once instead of waiting.
    #[test]
    fn a_full_queue_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&p).unwrap();
        let t0 = std::time::Instant::now();
        let mut full = false;
        for _ in 0..10_000 {
            match send(p.as_os_str(), b"STATUS=x\n") {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    full = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(full, "the queue never filled");
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=x\n");
        drop(rx);
        assert!(send(Path::new("/nonexistent/notify.sock").as_os_str(), b"x").is_err());
    }
}
