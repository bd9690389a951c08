//! The main loop's mailbox: what the I/O pool and the claim threads send it, and the eventfd
//! that wakes its `poll`.

use crate::claim_thread::Event;
use crate::pool::Done;
use libmmp::io::device::Device;
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::sync::Mutex;

/// What the pool and the claim threads send to the main loop.
pub(super) enum Msg {
    Claim(Event),
    Io(Done<Device>),
}

/// The main loop's mailbox: a list and an eventfd to wake the loop's `poll`.
pub(super) struct Inbox {
    /// The messages, and whether a wake-up is pending (written and not yet taken).
    items: Mutex<(Vec<Msg>, bool)>,
    pub(super) efd: EventFd,
}

impl Inbox {
    pub(super) fn new() -> std::io::Result<Self> {
        Ok(Inbox {
            items: Mutex::new((Vec::new(), false)),
            efd: EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
        })
    }

    /// Queue `m`; with `wake`, make the loop look now (once per batch: the eventfd is written
    /// only if no wake-up is pending already).
    pub(super) fn push(&self, m: Msg, wake: bool) {
        let mut g = self.items.lock().unwrap_or_else(|e| e.into_inner());
        g.0.push(m);
        if wake && !g.1 {
            g.1 = true;
            drop(g);
            if let Err(e) = self.efd.write(1) {
                tracing::error!("waking the main loop (eventfd): {e}");
            }
        }
    }

    pub(super) fn take(&self) -> Vec<Msg> {
        let mut g = self.items.lock().unwrap_or_else(|e| e.into_inner());
        g.1 = false;
        std::mem::take(&mut g.0)
    }
}
