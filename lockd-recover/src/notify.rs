//! Concurrent SM_NOTIFY to every client recorded in a statd directory — what nfs-utils
//! `sm-notify` does (`utils/statd/sm-notify.c`), with all clients in flight at once.
//!
//! Order of work, as in sm-notify's `main()`:
//! 1. move `sm/` records to `sm.bak/` ([`StatdDir::retire_monitored`]);
//! 2. load all of `sm.bak/`; with no clients, stop (the state is not bumped, like sm-notify);
//! 3. bump the state number (+2, odd) and mirror it into `nsm_local_state`;
//! 4. per client: rpcbind GETPORT (IPv4) or GETADDR (IPv6) for statd's UDP port, then
//!    SM_NOTIFY, then the short-name variant when the name has a dot;
//! 5. delete a client's record lines only after its final reply; clients never reached keep
//!    their records in `sm.bak/` for the next run.
//!
//! One thread, one non-blocking UDP socket per address family, `poll()`; a token bucket bounds
//! the packet rate; every request is retried with exponential back-off until a global deadline.

use crate::knobs::{self, ProcRoot};
use crate::nsm::{self, StatChge};
use crate::rpc::{self, XidGen};
use crate::statd::{
    MalformedLine, MonitorRecord, RecordDir, SkippedEntry, StatdDir, StatdError, StateChange,
};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6};
use serde::Serialize;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How to choose the local UDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortChoice {
    /// A reserved port (< 1024) when running as root, like sm-notify's `bindresvport()`,
    /// otherwise an ephemeral one.
    Auto,
    /// A reserved port, or fail.
    Reserved,
    /// Any port the kernel picks.
    Ephemeral,
    /// Exactly this port (sm-notify `-p`), e.g. for a firewall rule.
    Fixed(u16),
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub state_dir: PathBuf,
    pub proc_root: PathBuf,
    /// Bind this source address (the floating IP), like sm-notify `-v`.
    pub source_addr: Option<IpAddr>,
    pub source_port: PortChoice,
    /// Name sent as SM_NOTIFY mon_name; by default each record's my_name (as sm-notify without
    /// `-v`).
    pub mon_name: Option<String>,
    /// Bump the state number (sm-notify `-n` turns this off).
    pub update_state: bool,
    /// After the full name is acknowledged, notify again with the name cut at its first dot.
    pub short_names: bool,
    /// rpcbind's port on every client (111; other values only for tests).
    pub rpcbind_port: u16,
    /// Packets per second, all clients together.
    pub max_rate: u32,
    /// Requests awaiting a reply, all clients together. Bounds the queue at a slow peer (or a
    /// congested path) so that bursts are not dropped and paid for with back-off.
    pub max_in_flight: usize,
    pub initial_timeout: Duration,
    pub max_timeout: Duration,
    /// Give up on clients not reached after this long (their records stay in `sm.bak/`).
    pub deadline: Duration,
}

impl NotifyConfig {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            proc_root: PathBuf::from("/proc"),
            source_addr: None,
            source_port: PortChoice::Auto,
            mon_name: None,
            update_state: true,
            short_names: true,
            rpcbind_port: nsm::RPCBIND_PORT,
            max_rate: 10_000,
            max_in_flight: 256,
            initial_timeout: Duration::from_millis(1000),
            max_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error(transparent)]
    Statd(#[from] StatdError),
    #[error("cannot {op} UDP socket (source {source_addr}): {err}")]
    Socket {
        op: &'static str,
        source_addr: String,
        #[source]
        err: io::Error,
    },
    #[error("no reserved port (< 1024) could be bound for source {0}: {1}; run as root or pass --source-port 0")]
    NoReservedPort(String, io::Error),
    #[error("--source-addr {src} is {src_family} but client {host} resolves only to {dst}")]
    FamilyMismatch {
        src: IpAddr,
        src_family: &'static str,
        host: String,
        dst: IpAddr,
    },
}

/// Outcome for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientStatus {
    /// Every name variant was acknowledged and the record removed from `sm.bak/`.
    Notified,
    /// Acknowledged, but the record could not be removed (see detail).
    NotifiedRecordKept,
    /// rpcbind answered that no statd is registered (port 0) on the last try.
    NoStatd,
    /// No answer at all before the deadline.
    NoReply,
    /// The client answered with an RPC error (denied, PROG_UNAVAIL, ...) on the last try.
    RpcError,
    /// The record's host name did not resolve.
    ResolveFailed,
    /// The last send failed locally (no route, ...).
    SendFailed,
}

impl ClientStatus {
    pub fn reached(self) -> bool {
        matches!(
            self,
            ClientStatus::Notified | ClientStatus::NotifiedRecordKept
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientReport {
    /// Record file name under `sm.bak/` (the name that is resolved).
    pub host: String,
    pub address: Option<IpAddr>,
    /// mon_name fields (column 6) of the record lines this notify covers.
    pub record_mon_names: Vec<String>,
    /// Names acknowledged by the client, in order (full name, then short name).
    pub acknowledged: Vec<String>,
    pub status: ClientStatus,
    pub detail: Option<String>,
    /// Datagrams sent to this client (rpcbind lookups and notifies).
    pub packets: u32,
    /// Milliseconds from the start of sending until the final acknowledgement.
    pub elapsed_ms: Option<u64>,
    pub record_removed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotifyReport {
    pub state_dir: PathBuf,
    /// `None` when there was nobody to notify (the state is then left alone, like sm-notify).
    pub state: Option<StateChange>,
    /// The kernel copy written, if `nsm_local_state` exists.
    pub kernel_state_file: Option<PathBuf>,
    pub local_addrs: Vec<SocketAddr>,
    pub clients: Vec<ClientReport>,
    pub notified: usize,
    pub failed: usize,
    pub malformed: Vec<MalformedLine>,
    pub skipped: Vec<SkippedEntry>,
    /// Replies that were not parsable RPC replies, or matched no outstanding XID.
    pub ignored_replies: u64,
    pub elapsed_ms: u64,
    pub warnings: Vec<String>,
}

impl NotifyReport {
    pub fn all_reached(&self) -> bool {
        self.failed == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Lookup,
    Notify,
    Done,
    Failed,
}

struct Target {
    host: String,
    records: Vec<MonitorRecord>,
    names: Vec<String>,
    name_idx: usize,
    addr: Option<IpAddr>,
    phase: Phase,
    port: u16,
    next_send: Instant,
    timeout: Duration,
    sends_in_phase: u32,
    packets: u32,
    problem: Option<(ClientStatus, String)>,
    done_at: Option<Instant>,
    record_removed: bool,
    acknowledged: Vec<String>,
    /// A request is out and its retry time has not come yet.
    awaiting: bool,
}

/// The names to send: `base`, then `base` cut at its first dot (sm-notify
/// `recv_notify_reply()`), unless `base` is an IP address.
pub fn name_variants(base: &str, short_names: bool) -> Vec<String> {
    let mut v = vec![base.to_owned()];
    if short_names && base.parse::<IpAddr>().is_err() {
        if let Some((short, _)) = base.split_once('.') {
            if !short.is_empty() {
                v.push(short.to_owned());
            }
        }
    }
    v
}

/// Why a record's host name gave no address (reported as the client's detail).
#[derive(Debug, Error)]
enum ResolveError {
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("resolver thread panicked")]
    ThreadPanicked,
}

fn resolve(host: &str, want_v4: bool, want_v6: bool) -> Result<IpAddr, ResolveError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs: Vec<IpAddr> = (host, 0u16)
        .to_socket_addrs()
        .map_err(|source| ResolveError::Lookup {
            host: host.to_owned(),
            source,
        })?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|a| (a.is_ipv4() && want_v4) || (a.is_ipv6() && want_v6))
        .or(addrs.first())
        .copied()
        .ok_or_else(|| ResolveError::NoAddress(host.to_owned()))
}

/// Resolves names in a few threads: literal addresses cost nothing, DNS names may block.
fn resolve_all(
    hosts: &[String],
    want_v4: bool,
    want_v6: bool,
) -> Vec<Result<IpAddr, ResolveError>> {
    let needs_dns = hosts
        .iter()
        .filter(|h| h.parse::<IpAddr>().is_err())
        .count();
    if needs_dns < 4 {
        return hosts.iter().map(|h| resolve(h, want_v4, want_v6)).collect();
    }
    let threads = needs_dns.min(16);
    let chunk = hosts.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .chunks(chunk)
            .map(|c| {
                s.spawn(move || {
                    c.iter()
                        .map(|h| resolve(h, want_v4, want_v6))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    (0..chunk)
                        .map(|_| Err(ResolveError::ThreadPanicked))
                        .collect()
                })
            })
            .collect()
    })
}

/// UDP ports listed in /etc/services, which `bindresvport` users avoid (sm-notify retries
/// when the chosen port is a known service, `smn_create_socket()`).
fn services_ports() -> Vec<u16> {
    let Ok(text) = std::fs::read_to_string("/etc/services") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split('#').next()?.split_whitespace().nth(1))
        .filter_map(|p| p.strip_suffix("/udp")?.parse().ok())
        .collect()
}

fn family_name(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn make_socket(local: SocketAddr) -> io::Result<UdpSocket> {
    let family = if local.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = socket::socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    match local {
        SocketAddr::V4(a) => socket::bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => {
            // Separate v4 and v6 sockets, so the v6 one must not claim the v4 port space.
            socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
            socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?;
        }
    }
    Ok(UdpSocket::from(fd))
}

/// Binds a UDP socket on `ip` with the port policy.
fn bind_socket(
    ip: IpAddr,
    choice: PortChoice,
    seed: u32,
    warnings: &mut Vec<String>,
) -> Result<UdpSocket, NotifyError> {
    let err = |op, e| NotifyError::Socket {
        op,
        source_addr: ip.to_string(),
        err: e,
    };
    let reserved = match choice {
        PortChoice::Fixed(p) => {
            return make_socket(SocketAddr::new(ip, p)).map_err(|e| err("bind", e))
        }
        PortChoice::Ephemeral => false,
        PortChoice::Reserved => true,
        PortChoice::Auto => nix::unistd::geteuid().is_root(),
    };
    if reserved {
        let avoid = services_ports();
        // Like bindresvport: a pseudo-random start in 600..1024, then sequential.
        let span = 1024 - 600;
        let mut last = io::Error::from(io::ErrorKind::AddrInUse);
        for i in 0..span {
            let port = 600 + ((seed as usize + i) % span) as u16;
            if avoid.contains(&port) {
                continue;
            }
            match make_socket(SocketAddr::new(ip, port)) {
                Ok(s) => return Ok(s),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        if choice == PortChoice::Reserved {
            return Err(NotifyError::NoReservedPort(ip.to_string(), last));
        }
        warnings.push(format!(
            "no reserved source port available ({last}); using an ephemeral port"
        ));
    }
    make_socket(SocketAddr::new(ip, 0)).map_err(|e| err("bind", e))
}

/// Token bucket for the packet rate.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        let burst = (rate / 20.0).clamp(1.0, 64.0);
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn next_token_in(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    idx: usize,
    phase: Phase,
    name_idx: usize,
}

/// Runs a notify round. Returns the report even when clients were not reached (check
/// [`NotifyReport::all_reached`]); errors are for the directory or the sockets.
pub fn run(cfg: &NotifyConfig) -> Result<NotifyReport, NotifyError> {
    let started = Instant::now();
    let dir = StatdDir::open(&cfg.state_dir)?;
    let mut warnings = Vec::new();
    let mut skipped = dir.retire_monitored()?;
    let listing = dir.list(RecordDir::SmBak)?;
    skipped.extend(listing.skipped);
    for m in &listing.malformed {
        tracing::warn!(file = %m.file.display(), line = m.line_no, reason = %m.reason, "malformed record kept");
    }
    for s in &skipped {
        tracing::warn!(path = %s.path.display(), reason = %s.reason, "entry skipped");
    }

    // One target per (host file, name sent); several lines of one file that would send the same
    // name are covered by one notify.
    let mut targets: Vec<Target> = Vec::new();
    let mut by_key: HashMap<(String, String), usize> = HashMap::new();
    for hf in &listing.hosts {
        for rec in &hf.records {
            let base = cfg.mon_name.clone().unwrap_or_else(|| rec.my_name.clone());
            let key = (hf.name.clone(), base.clone());
            if let Some(&i) = by_key.get(&key) {
                targets[i].records.push(rec.clone());
                continue;
            }
            by_key.insert(key, targets.len());
            targets.push(Target {
                host: hf.name.clone(),
                records: vec![rec.clone()],
                names: name_variants(&base, cfg.short_names),
                name_idx: 0,
                addr: None,
                phase: Phase::Lookup,
                port: 0,
                next_send: started,
                timeout: cfg.initial_timeout,
                sends_in_phase: 0,
                packets: 0,
                problem: None,
                done_at: None,
                record_removed: false,
                acknowledged: Vec::new(),
                awaiting: false,
            });
        }
    }

    let mut report = NotifyReport {
        state_dir: cfg.state_dir.clone(),
        state: None,
        kernel_state_file: None,
        local_addrs: Vec::new(),
        clients: Vec::new(),
        notified: 0,
        failed: 0,
        malformed: listing.malformed,
        skipped,
        ignored_replies: 0,
        elapsed_ms: 0,
        warnings: Vec::new(),
    };
    if targets.is_empty() {
        tracing::info!(
            "no clients recorded in {}; state number left alone",
            cfg.state_dir.display()
        );
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    let change = dir.bump_state(cfg.update_state)?;
    tracing::info!(previous = ?change.previous, state = change.state, "NSM state number");
    report.state = Some(change);
    let proc = ProcRoot::new(&cfg.proc_root);
    if proc.exists(knobs::NSM_LOCAL_STATE) {
        match proc.write(knobs::NSM_LOCAL_STATE, &change.state.to_string()) {
            Ok(()) => report.kernel_state_file = Some(proc.path(knobs::NSM_LOCAL_STATE)),
            // sm-notify logs and carries on (`nsm_update_kernel_state()`).
            Err(e) => warnings.push(format!("cannot update the kernel NSM state: {e}")),
        }
    }

    let (want_v4, want_v6) = match cfg.source_addr {
        Some(IpAddr::V4(_)) => (true, false),
        Some(IpAddr::V6(_)) => (false, true),
        None => (true, true),
    };
    let hosts: Vec<String> = targets.iter().map(|t| t.host.clone()).collect();
    for (t, r) in targets
        .iter_mut()
        .zip(resolve_all(&hosts, want_v4, want_v6))
    {
        match r {
            Ok(ip) => {
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                t.addr = Some(ip);
            }
            Err(e) => {
                t.phase = Phase::Failed;
                t.problem = Some((ClientStatus::ResolveFailed, e.to_string()));
            }
        }
    }

    let mut xids = XidGen::new();
    let seed = xids.next_xid();
    let need_v4 = targets.iter().any(|t| t.addr.is_some_and(|a| a.is_ipv4()));
    let need_v6 = targets.iter().any(|t| t.addr.is_some_and(|a| a.is_ipv6()));
    let mut sock_v4: Option<UdpSocket> = None;
    let mut sock_v6: Option<UdpSocket> = None;
    for t in targets.iter_mut() {
        if let (Some(src), Some(dst)) = (cfg.source_addr, t.addr) {
            if src.is_ipv4() != dst.is_ipv4() {
                t.phase = Phase::Failed;
                t.problem = Some((
                    ClientStatus::SendFailed,
                    NotifyError::FamilyMismatch {
                        src,
                        src_family: family_name(src),
                        host: t.host.clone(),
                        dst,
                    }
                    .to_string(),
                ));
            }
        }
    }
    if need_v4 && cfg.source_addr.is_none_or_v4() {
        let ip = cfg.source_addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        sock_v4 = Some(bind_socket(ip, cfg.source_port, seed, &mut warnings)?);
    }
    if need_v6 && cfg.source_addr.is_none_or_v6() {
        let ip = cfg.source_addr.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        sock_v6 = Some(bind_socket(
            ip,
            cfg.source_port,
            seed.wrapping_add(97),
            &mut warnings,
        )?);
    }
    for s in sock_v4.iter().chain(sock_v6.iter()) {
        if let Ok(a) = s.local_addr() {
            report.local_addrs.push(a);
        }
    }
    tracing::info!(clients = targets.len(), local = ?report.local_addrs, "notifying");

    let state = change.state;
    let deadline = started + cfg.deadline;
    let send_start = Instant::now();
    let mut bucket = Bucket::new(cfg.max_rate, send_start);
    let mut pending: HashMap<u32, Pending> = HashMap::new();
    let mut buf = vec![0u8; rpc::MAX_MSG_SIZE * 4];
    let mut cursor = 0usize;

    loop {
        // 1. Drain replies.
        for sock in sock_v4.iter().chain(sock_v6.iter()) {
            loop {
                let n = match sock.recv_from(&mut buf) {
                    Ok((n, _from)) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ICMP errors surface on some kernels as ECONNREFUSED; the retry handles it.
                    Err(e) => {
                        tracing::debug!(error = %e, "recv");
                        break;
                    }
                };
                let now = Instant::now();
                if !handle_reply(&buf[..n], now, cfg, &dir, &mut targets, &mut pending) {
                    report.ignored_replies += 1;
                }
            }
        }
        let now = Instant::now();
        let active = targets
            .iter()
            .filter(|t| matches!(t.phase, Phase::Lookup | Phase::Notify))
            .count();
        if active == 0 || now >= deadline {
            break;
        }

        // 2. Send what is due, within the rate.
        bucket.refill(now);
        let n = targets.len();
        let mut rate_limited = false;
        let mut in_flight = 0usize;
        for t in targets.iter_mut() {
            if t.awaiting && t.next_send <= now {
                t.awaiting = false; // timed out: due for a retry
            }
            in_flight += usize::from(t.awaiting);
        }
        for step in 0..n {
            let i = (cursor + step) % n;
            let t = &targets[i];
            if !matches!(t.phase, Phase::Lookup | Phase::Notify) || t.next_send > now {
                continue;
            }
            if in_flight >= cfg.max_in_flight.max(1) {
                // Replies (or retry times) wake us up again.
                cursor = i;
                break;
            }
            if !bucket.take() {
                cursor = i;
                rate_limited = true;
                break;
            }
            let sock = match t.addr {
                Some(IpAddr::V4(_)) => sock_v4.as_ref(),
                _ => sock_v6.as_ref(),
            };
            let Some(sock) = sock else {
                let t = &mut targets[i];
                t.phase = Phase::Failed;
                t.problem = Some((
                    ClientStatus::SendFailed,
                    "no socket for this address family".into(),
                ));
                continue;
            };
            send_one(
                &mut targets[i],
                i,
                sock,
                now,
                state,
                cfg,
                &mut xids,
                &mut pending,
            );
        }

        // 3. Sleep until a reply, the next due send, a token, or the deadline.
        let mut wake = deadline;
        for t in &targets {
            if matches!(t.phase, Phase::Lookup | Phase::Notify) && t.next_send < wake {
                wake = t.next_send;
            }
        }
        if rate_limited {
            wake = wake.min(now + bucket.next_token_in());
        }
        let wait = wake.saturating_duration_since(Instant::now());
        // Round up so we never wake just before the due time and spin.
        let ms = u16::try_from(
            wait.as_nanos()
                .div_ceil(1_000_000)
                .min(u128::from(u16::MAX)),
        )
        .unwrap_or(u16::MAX);
        let mut fds: Vec<PollFd<'_>> = sock_v4
            .iter()
            .chain(sock_v6.iter())
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        if let Err(e) = poll(&mut fds, PollTimeout::from(ms)) {
            if e != nix::errno::Errno::EINTR {
                return Err(NotifyError::Socket {
                    op: "poll",
                    source_addr: format!("{:?}", report.local_addrs),
                    err: e.into(),
                });
            }
        }
    }

    for t in targets {
        let status = match t.phase {
            Phase::Done if t.record_removed => ClientStatus::Notified,
            Phase::Done => ClientStatus::NotifiedRecordKept,
            _ => t
                .problem
                .as_ref()
                .map_or(ClientStatus::NoReply, |(s, _)| *s),
        };
        let detail = match (&t.problem, t.phase) {
            (Some((_, d)), _) => Some(d.clone()),
            (None, Phase::Lookup) => Some(format!(
                "no answer from rpcbind at {} before the deadline",
                t.addr.map_or("?".into(), |a| a.to_string())
            )),
            (None, Phase::Notify) => Some(format!(
                "no answer to SM_NOTIFY at port {} before the deadline",
                t.port
            )),
            _ => None,
        };
        if status.reached() {
            report.notified += 1;
        } else {
            report.failed += 1;
            tracing::warn!(host = %t.host, status = ?status, detail = detail.as_deref().unwrap_or(""), "client not notified; record kept in sm.bak");
        }
        report.clients.push(ClientReport {
            host: t.host,
            address: t.addr,
            record_mon_names: t.records.iter().map(|r| r.mon_name.clone()).collect(),
            acknowledged: t.acknowledged,
            status,
            detail,
            packets: t.packets,
            elapsed_ms: t
                .done_at
                .map(|d| d.duration_since(send_start).as_millis() as u64),
            record_removed: t.record_removed,
        });
    }
    report.warnings = warnings;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

trait SourceFamily {
    fn is_none_or_v4(&self) -> bool;
    fn is_none_or_v6(&self) -> bool;
}

impl SourceFamily for Option<IpAddr> {
    fn is_none_or_v4(&self) -> bool {
        !matches!(self, Some(a) if a.is_ipv6())
    }
    fn is_none_or_v6(&self) -> bool {
        !matches!(self, Some(a) if a.is_ipv4())
    }
}

#[allow(clippy::too_many_arguments)]
fn send_one(
    t: &mut Target,
    idx: usize,
    sock: &UdpSocket,
    now: Instant,
    state: i32,
    cfg: &NotifyConfig,
    xids: &mut XidGen,
    pending: &mut HashMap<u32, Pending>,
) {
    let Some(ip) = t.addr else { return };
    // After three unanswered notifies, ask rpcbind again: statd may have restarted on another
    // port (sm-notify resets the port once `retries >= 4`).
    if t.phase == Phase::Notify && t.sends_in_phase >= 3 {
        t.phase = Phase::Lookup;
        t.sends_in_phase = 0;
    }
    let xid = xids.next_xid();
    let (packet, dest) = match t.phase {
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
            (p, SocketAddr::new(ip, cfg.rpcbind_port))
        }
        Phase::Notify => {
            let args = StatChge {
                mon_name: t.names[t.name_idx].clone(),
                state,
            }
            .encode();
            (
                rpc::encode_call(xid, nsm::NSM_PROG, nsm::NSM_VERS, nsm::SM_NOTIFY, &args),
                SocketAddr::new(ip, t.port),
            )
        }
        Phase::Done | Phase::Failed => return,
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

/// Handles one datagram; returns false if it was ignored (unparsable or unknown XID).
fn handle_reply(
    data: &[u8],
    now: Instant,
    cfg: &NotifyConfig,
    dir: &StatdDir,
    targets: &mut [Target],
    pending: &mut HashMap<u32, Pending>,
) -> bool {
    let reply = match rpc::parse_reply(data) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "ignoring unparsable datagram");
            return false;
        }
    };
    let Some(p) = pending.remove(&reply.xid) else {
        tracing::debug!(xid = reply.xid, "ignoring reply with unknown XID");
        return false;
    };
    let t = &mut targets[p.idx];
    t.awaiting = false;
    if t.phase != p.phase || t.name_idx != p.name_idx {
        // A late answer to an earlier retransmission of a step already completed.
        return true;
    }
    let results = match reply.success_results() {
        Ok(r) => r,
        Err(why) => {
            t.problem = Some((ClientStatus::RpcError, why.to_string()));
            // statd may be gone or restarting: look its port up again on the next try.
            t.phase = Phase::Lookup;
            t.sends_in_phase = 0;
            return true;
        }
    };
    match p.phase {
        Phase::Lookup => {
            let port = match t.addr {
                Some(IpAddr::V4(_)) => nsm::decode_getport_result(results),
                _ => nsm::decode_getaddr_result(results),
            };
            match port {
                Ok(0) => {
                    t.problem = Some((
                        ClientStatus::NoStatd,
                        "rpcbind answered: no statd (program 100024 v1 UDP) registered".into(),
                    ));
                }
                Ok(port) => {
                    t.port = port;
                    t.phase = Phase::Notify;
                    t.sends_in_phase = 0;
                    t.next_send = now;
                    t.timeout = cfg.initial_timeout;
                }
                Err(e) => t.problem = Some((ClientStatus::RpcError, format!("rpcbind reply: {e}"))),
            }
        }
        Phase::Notify => {
            if let Err(e) = nsm::check_void_result(results) {
                t.problem = Some((ClientStatus::RpcError, format!("SM_NOTIFY reply: {e}")));
                return true;
            }
            t.acknowledged.push(t.names[t.name_idx].clone());
            t.name_idx += 1;
            if t.name_idx < t.names.len() {
                t.next_send = now;
                t.sends_in_phase = 0;
                t.timeout = cfg.initial_timeout;
                return true;
            }
            t.phase = Phase::Done;
            t.done_at = Some(now);
            t.problem = None;
            // Only now, after the final reply, is the record removed.
            let mut removed_all = true;
            for rec in &t.records {
                match dir.remove_record(RecordDir::SmBak, &t.host, rec) {
                    Ok(true) => {}
                    Ok(false) => removed_all = false,
                    Err(e) => {
                        removed_all = false;
                        t.problem = Some((ClientStatus::NotifiedRecordKept, e.to_string()));
                    }
                }
            }
            t.record_removed = removed_all;
            tracing::debug!(host = %t.host, "notified");
        }
        Phase::Done | Phase::Failed => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_name_variants() {
        assert_eq!(
            name_variants("nfs1.example.com", true),
            vec!["nfs1.example.com", "nfs1"]
        );
        assert_eq!(
            name_variants("nfs1.example.com", false),
            vec!["nfs1.example.com"]
        );
        assert_eq!(name_variants("nfs1", true), vec!["nfs1"]);
        assert_eq!(name_variants("10.0.0.5", true), vec!["10.0.0.5"]);
        assert_eq!(name_variants(".x", true), vec![".x"]);
    }

    #[test]
    fn bucket_limits_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100, t0);
        let mut n = 0;
        while b.take() {
            n += 1;
        }
        assert_eq!(n, 5, "burst is rate/20");
        b.refill(t0 + Duration::from_millis(100));
        let mut m = 0;
        while b.take() {
            m += 1;
        }
        assert_eq!(m, 5, "refill is capped at the burst");
        assert!(b.next_token_in() > Duration::ZERO);
    }
}
