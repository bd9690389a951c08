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
//!
//! The steps live in their own files: `plan` (records to targets, name variants, name
//! resolution), `socket` (source sockets and the port policy), `send` (the poll loop and
//! the requests), `reply` (what each answer does), `report` (the per-client outcome).

mod plan;
mod reply;
mod report;
mod send;
mod socket;
#[cfg(test)]
mod tests;

pub use plan::name_variants;

use crate::knobs::{ProcRoot, NSM_LOCAL_STATE};
use crate::nsm;
use crate::statd::{MalformedLine, SkippedEntry, StatdDir, StatdError, StateChange};
use serde::Serialize;
use std::io;
use std::net::{IpAddr, SocketAddr};
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

/// Runs a notify round. Returns the report even when clients were not reached (check
/// [`NotifyReport::all_reached`]); errors are for the directory or the sockets.
pub fn run(cfg: &NotifyConfig) -> Result<NotifyReport, NotifyError> {
    let started = Instant::now();
    let dir = StatdDir::open(&cfg.state_dir)?;
    let mut warnings = Vec::new();
    let (listing, skipped) = plan::load_records(&dir)?;
    let mut targets = plan::targets(&listing.hosts, cfg, started);
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
    let change = bump_state(&dir, cfg, &mut report, &mut warnings)?;
    plan::resolve_targets(&mut targets, cfg.source_addr);
    let mut exchange = send::Exchange::new(cfg, &dir, targets, &mut warnings)?;
    report.local_addrs = exchange.local_addrs();
    tracing::info!(clients = exchange.targets.len(), local = ?report.local_addrs, "notifying");
    let send_start = Instant::now();
    report.ignored_replies = exchange.run(change.state, started + cfg.deadline, send_start)?;
    for t in exchange.targets {
        report::add_client(&mut report, t, send_start);
    }
    report.warnings = warnings;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Step 3: bumps the state number and mirrors it into the kernel's `nsm_local_state`.
fn bump_state(
    dir: &StatdDir,
    cfg: &NotifyConfig,
    report: &mut NotifyReport,
    warnings: &mut Vec<String>,
) -> Result<StateChange, NotifyError> {
    let change = dir.bump_state(cfg.update_state)?;
    tracing::info!(previous = ?change.previous, state = change.state, "NSM state number");
    report.state = Some(change);
    let proc = ProcRoot::new(&cfg.proc_root);
    if proc.exists(NSM_LOCAL_STATE) {
        match proc.write(NSM_LOCAL_STATE, &change.state.to_string()) {
            Ok(()) => report.kernel_state_file = Some(proc.path(NSM_LOCAL_STATE)),
            // sm-notify logs and carries on (`nsm_update_kernel_state()`).
            Err(e) => warnings.push(format!("cannot update the kernel NSM state: {e}")),
        }
    }
    Ok(change)
}
