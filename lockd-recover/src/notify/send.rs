//! Steps 4c and 5: the exchange. One thread, `poll()` on the sockets; each round drains the
//! replies, sends what is due within the rate and the window, then sleeps until a reply, the
//! next due send, a token, or the deadline.

use super::plan::{Phase, Target};
use super::reply::handle_reply;
use super::socket::Sockets;
use super::{ClientStatus, NotifyConfig, NotifyError};
use crate::nsm::{self, StatChge};
use crate::rpc::{self, XidGen};
use crate::statd::StatdDir;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Token bucket for the packet rate.
pub(super) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(super) fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        let burst = (rate / 20.0).clamp(1.0, 64.0);
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    pub(super) fn refill(&mut self, now: Instant) {
        let dt = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    pub(super) fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub(super) fn next_token_in(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
    }
}

/// What an outstanding XID was sent for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) idx: usize,
    pub(super) phase: Phase,
    pub(super) name_idx: usize,
}

/// The state of one notify round: the targets, the sockets, and the requests awaiting replies.
pub(super) struct Exchange<'a> {
    cfg: &'a NotifyConfig,
    dir: &'a StatdDir,
    pub(super) targets: Vec<Target>,
    socks: Sockets,
    xids: XidGen,
    pending: HashMap<u32, Pending>,
    /// Where the next send round starts, so a rate or window limit does not always favour
    /// the first targets.
    cursor: usize,
}

impl<'a> Exchange<'a> {
    /// Binds the sockets the targets need (see [`Sockets::open`]).
    pub(super) fn new(
        cfg: &'a NotifyConfig,
        dir: &'a StatdDir,
        mut targets: Vec<Target>,
        warnings: &mut Vec<String>,
    ) -> Result<Self, NotifyError> {
        let mut xids = XidGen::new();
        let seed = xids.next_xid();
        let socks = Sockets::open(&mut targets, cfg, seed, warnings)?;
        Ok(Self {
            cfg,
            dir,
            targets,
            socks,
            xids,
            pending: HashMap::new(),
            cursor: 0,
        })
    }

    pub(super) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.socks.local_addrs()
    }

    /// Runs until every target is done or failed, or until `deadline`. Returns the number of
    /// replies ignored (unparsable, or matching no outstanding XID).
    pub(super) fn run(
        &mut self,
        state: i32,
        deadline: Instant,
        send_start: Instant,
    ) -> Result<u64, NotifyError> {
        let mut bucket = Bucket::new(self.cfg.max_rate, send_start);
        let mut buf = vec![0u8; rpc::MAX_MSG_SIZE * 4];
        let mut ignored = 0;
        loop {
            ignored += self.drain_replies(&mut buf);
            let now = Instant::now();
            let active = self.targets.iter().filter(|t| is_active(t)).count();
            if active == 0 || now >= deadline {
                return Ok(ignored);
            }
            bucket.refill(now);
            let rate_limited = self.send_due(now, state, &mut bucket);
            let mut wake = self
                .targets
                .iter()
                .filter(|t| is_active(t))
                .map(|t| t.next_send)
                .fold(deadline, Instant::min);
            if rate_limited {
                wake = wake.min(now + bucket.next_token_in());
            }
            self.wait_until(wake)?;
        }
    }

    /// Handles every datagram waiting on the sockets; returns how many were ignored.
    fn drain_replies(&mut self, buf: &mut [u8]) -> u64 {
        let Self {
            cfg,
            dir,
            targets,
            socks,
            pending,
            ..
        } = self;
        let mut ignored = 0;
        for sock in socks.iter() {
            loop {
                let n = match sock.recv_from(buf) {
                    Ok((n, _from)) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ICMP errors surface on some kernels as ECONNREFUSED; the retry handles it.
                    Err(e) => {
                        tracing::debug!(error = %e, "recv");
                        break;
                    }
                };
                let now = Instant::now();
                if !handle_reply(&buf[..n], now, cfg, dir, targets, pending) {
                    ignored += 1;
                }
            }
        }
        ignored
    }

    /// Sends every request that is due, within the window and the rate. Returns whether the
    /// rate stopped it.
    fn send_due(&mut self, now: Instant, state: i32, bucket: &mut Bucket) -> bool {
        let n = self.targets.len();
        let mut in_flight = 0usize;
        for t in self.targets.iter_mut() {
            if t.awaiting && t.next_send <= now {
                t.awaiting = false; // timed out: due for a retry
            }
            in_flight += usize::from(t.awaiting);
        }
        for step in 0..n {
            let i = (self.cursor + step) % n;
            let t = &self.targets[i];
            if !is_active(t) || t.next_send > now {
                continue;
            }
            if in_flight >= self.cfg.max_in_flight.max(1) {
                // Replies (or retry times) wake us up again.
                self.cursor = i;
                return false;
            }
            if !bucket.take() {
                self.cursor = i;
                return true;
            }
            if self.socks.for_addr(t.addr).is_none() {
                let t = &mut self.targets[i];
                t.phase = Phase::Failed;
                t.problem = Some((
                    ClientStatus::SendFailed,
                    "no socket for this address family".into(),
                ));
                continue;
            }
            self.send_one(i, now, state);
        }
        false
    }

    /// Sends the next request of target `i` (rpcbind lookup or SM_NOTIFY) and schedules its
    /// retry with exponential back-off.
    fn send_one(&mut self, idx: usize, now: Instant, state: i32) {
        let Self {
            cfg,
            targets,
            socks,
            xids,
            pending,
            ..
        } = self;
        let t = &mut targets[idx];
        let (Some(ip), Some(sock)) = (t.addr, socks.for_addr(t.addr)) else {
            return;
        };
        // After three unanswered notifies, ask rpcbind again: statd may have restarted on another
        // port (sm-notify resets the port once `retries >= 4`).
        if t.phase == Phase::Notify && t.sends_in_phase >= 3 {
            t.phase = Phase::Lookup;
            t.sends_in_phase = 0;
        }
        let xid = xids.next_xid();
        let Some((packet, dest)) = request(t, ip, xid, state, cfg.rpcbind_port) else {
            return;
        };
        pending.insert(
            xid,
            Pending {
                idx,
                phase: t.phase,
                name_idx: t.name_idx,
            },
        );
        t.packets += 1;
        t.awaiting = true;
        t.sends_in_phase += 1;
        t.next_send = now + t.timeout;
        t.timeout = (t.timeout * 2).min(cfg.max_timeout);
        match sock.send_to(&packet, dest) {
            Ok(_) => tracing::trace!(host = %t.host, %dest, xid, phase = ?t.phase, "sent"),
            Err(e) => {
                tracing::debug!(host = %t.host, %dest, error = %e, "send failed");
                t.problem = Some((ClientStatus::SendFailed, format!("send to {dest}: {e}")));
            }
        }
    }

    /// Sleeps in `poll()` until a reply arrives or `wake` comes.
    fn wait_until(&self, wake: Instant) -> Result<(), NotifyError> {
        let wait = wake.saturating_duration_since(Instant::now());
        // Round up so we never wake just before the due time and spin.
        let ms = u16::try_from(
            wait.as_nanos()
                .div_ceil(1_000_000)
                .min(u128::from(u16::MAX)),
        )
        .unwrap_or(u16::MAX);
        let mut fds: Vec<PollFd<'_>> = self
            .socks
            .iter()
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::from(ms)) {
            Err(e) if e != nix::errno::Errno::EINTR => Err(NotifyError::Socket {
                op: "poll",
                source_addr: format!("{:?}", self.socks.local_addrs()),
                err: e.into(),
            }),
            _ => Ok(()),
        }
    }
}

fn is_active(t: &Target) -> bool {
    matches!(t.phase, Phase::Lookup | Phase::Notify)
}

/// The datagram for a target's current step and where it goes; `None` once it is finished.
fn request(
    t: &Target,
    ip: IpAddr,
    xid: u32,
    state: i32,
    rpcbind_port: u16,
) -> Option<(Vec<u8>, SocketAddr)> {
    match t.phase {
        Phase::Lookup => {
            let p = if ip.is_ipv4() {
                rpc::encode_call(
                    xid,
                    nsm::RPCBIND_PROG,
                    nsm::PMAP_VERS,
                    nsm::PMAPPROC_GETPORT,
                    &nsm::encode_getport_args(nsm::NSM_PROG, nsm::NSM_VERS, nsm::IPPROTO_UDP),
                )
            } else {
                rpc::encode_call(
                    xid,
                    nsm::RPCBIND_PROG,
                    nsm::RPCB_VERS,
                    nsm::RPCBPROC_GETADDR,
                    &nsm::encode_getaddr_args(nsm::NSM_PROG, nsm::NSM_VERS, "udp6", ""),
                )
            };
            Some((p, SocketAddr::new(ip, rpcbind_port)))
        }
        Phase::Notify => {
            let args = StatChge {
                mon_name: t.names[t.name_idx].clone(),
                state,
            }
            .encode();
            Some((
                rpc::encode_call(xid, nsm::NSM_PROG, nsm::NSM_VERS, nsm::SM_NOTIFY, &args),
                SocketAddr::new(ip, t.port),
            ))
        }
        Phase::Done | Phase::Failed => None,
    }
}
