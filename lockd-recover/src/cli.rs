//! Command-line interface: clap definitions, command runners and the one exit-code table.

use crate::ledger::{self, LedgerError, WaitOptions};
use crate::notify::{self, NotifyConfig, NotifyError, PortChoice};
use crate::procfs::{
    self, GraceError, GraceSettings, GraceWhich, KnobError, ProcRoot, ReleaseError, ReleaseMethod,
};
use crate::statd::{RecordDir, StatdDir, StatdError};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use thiserror::Error;

const EXIT_CODES: &str = "\
EXIT STATUS:

0: success.

1: incomplete: a client was not notified, a lock remains after release, or not every recorded lock was reclaimed before the timeout (the report says which).

2: usage error (bad option or value).

3: refused: a precondition does not hold (nfsd running for `grace set`, kernel >= 6.6 for signal-lockd, floating IP not up for `takeover` or still up for `handoff`, stale ledger).

4: kernel interface missing or the write was rejected (the message names the /proc file and what to load).

5: I/O error (statd directory, sockets).

6: malformed input that stops the command (not a statd directory, symlinks, corrupt ledger).";

const FAILOVER_ORDER: &str = "\
FAILOVER ORDER:

Old node (`handoff`): take the floating IP down, unexport (exportfs -u), then release the locks (unlock_ip, unlock_filesystem) and check /proc/locks, then unmount.

New node (`takeover`): set grace while nfsd is stopped (`grace set`), mount, start nfsd and exportfs, bring the floating IP up, and only then notify clients: a notify sent before the exports and IP are up makes reclaims fail (resource-agents PR #443). Then wait for the ledger's locks to come back and end grace early (`wait-reclaim`).";

/// Fast, checked NFS (NLM/NSM) lock recovery for HA failover.
///
/// lockd-recover replaces the sm-notify / `kill -9 lockd` / long-grace chain of HA NFS stacks:
/// it notifies every NFSv3 client concurrently from the floating IP, releases locks on the old
/// server and verifies they are gone, sets and ends grace, and keeps a ledger of held locks so
/// the new server can end grace as soon as every lock has been reclaimed.
#[derive(Debug, Parser)]
#[command(name = "lockd-recover", version, after_long_help = format!("{FAILOVER_ORDER}\n\n{EXIT_CODES}"))]
pub struct Cli {
    /// Print the report as JSON on stdout (diagnostics stay on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Root of the proc filesystem whose knobs are used (a directory tree with the same layout
    /// can stand in for tests).
    #[arg(long, global = true, value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send SM_NOTIFY to every client recorded in the statd directory (new server).
    ///
    /// Moves sm/ records to sm.bak/, bumps the NSM state number (odd, +2, also into
    /// /proc/sys/fs/nfs/nsm_local_state), then notifies all clients at once: rpcbind lookup of
    /// statd's port, SM_NOTIFY with the full and the short name, exponential back-off, a global
    /// deadline. A client's record is deleted only after its reply; clients not reached keep
    /// theirs in sm.bak/ and make the exit status 1.
    Notify(NotifyArgs),
    /// Release NLM locks on the old server and verify none remain (old server).
    ///
    /// Writes the floating IP to /proc/fs/nfsd/unlock_ip and/or the export path to
    /// /proc/fs/nfsd/unlock_filesystem, then checks /proc/locks until no POSIX lock on that
    /// filesystem remains (unlock_ip has been reported to match nothing: its result is never
    /// trusted alone). signal-lockd (SIGKILL to the lockd thread) is only done on kernels
    /// older than 6.6; newer kernels ignore that signal.
    Release(ReleaseArgs),
    /// Set or end the NLM and NFSv4 grace periods.
    #[command(subcommand)]
    Grace(GraceCmd),
    /// Keep a snapshot of the locks held on an exported filesystem (active server).
    ///
    /// Every INTERVAL, the POSIX locks on the filesystem holding --fs are read from
    /// /proc/locks and written, atomically replaced, to --state-dir (put it on the shared
    /// storage that fails over with the export). Stopping it at any moment leaves a complete
    /// snapshot.
    Record(RecordArgs),
    /// Wait until every lock in the ledger is held again, then end grace early (new server).
    ///
    /// Watches /proc/locks; once every recorded lock (same inode and range) is held again and
    /// --min-grace has passed, ends grace through /proc/fs/lockd/nlm_end_grace and
    /// /proc/fs/nfsd/v4_end_grace. On timeout grace is left alone and the missing locks are
    /// reported (exit 1).
    WaitReclaim(WaitReclaimArgs),
    /// New server: check the IP and nfsd are up, notify, then wait-reclaim.
    ///
    /// With no ledger to wait for and no client recorded in the statd directory, nobody can
    /// reclaim an NLM lock: lockd's grace is then ended after --min-grace (NFSv4 grace is left
    /// alone; --no-end-grace leaves both).
    Takeover(TakeoverArgs),
    /// Old server: check the IP is down, then release and verify.
    Handoff(HandoffArgs),
    /// Show a statd directory: state number, records, malformed lines.
    Show(ShowArgs),
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(format!("{s} is not a valid number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

#[derive(Debug, Args)]
pub struct NotifyOpts {
    /// Name sent as mon_name in SM_NOTIFY (use the floating IP's DNS name, the name clients
    /// mounted). Default: each record's my_name, as sm-notify does without -v.
    #[arg(long, value_name = "NAME")]
    pub mon_name: Option<String>,
    /// Local UDP port: 0 = any; default: a reserved port (< 1024) when root, like sm-notify.
    #[arg(long, value_name = "PORT")]
    pub source_port: Option<u16>,
    /// Do not bump the state number (sm-notify -n).
    #[arg(long)]
    pub no_update_state: bool,
    /// Do not repeat the notify with the name cut at its first dot.
    #[arg(long)]
    pub no_short_name: bool,
    /// Give up on unreached clients after SECONDS (they stay in sm.bak/ for the next run).
    #[arg(long, value_name = "SECONDS", default_value = "120", value_parser = parse_secs)]
    pub deadline: Duration,
    /// First retry after SECONDS; doubles per retry up to --max-retry-interval.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_secs)]
    pub retry_interval: Duration,
    /// Longest interval between retries to one client.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_secs)]
    pub max_retry_interval: Duration,
    /// Maximum datagrams per second over all clients.
    #[arg(long, value_name = "PPS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
    /// Maximum requests awaiting a reply, over all clients.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub window: u32,
    /// rpcbind port on the clients (only for tests with a non-standard rpcbind).
    #[arg(long, value_name = "PORT", default_value_t = 111, hide = true)]
    pub rpcbind_port: u16,
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// statd state directory (parent of sm/, sm.bak/ and state), as rpc.statd -P.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Send from this address (the floating IP), like sm-notify -v.
    #[arg(long, value_name = "IP")]
    pub source_addr: Option<IpAddr>,
    #[command(flatten)]
    pub opts: NotifyOpts,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["ip", "fs"])))]
pub struct ReleaseArgs {
    /// Floating IP whose NLM locks to release (unlock_ip).
    #[arg(long, value_name = "IP")]
    pub ip: Option<IpAddr>,
    /// Exported filesystem: released with unlock_filesystem, and checked in /proc/locks.
    #[arg(long, value_name = "PATH")]
    pub fs: Option<PathBuf>,
    /// Method; default: unlock-ip for --ip and unlock-fs for --fs (both when both are given).
    #[arg(long, value_enum)]
    pub method: Option<ReleaseMethod>,
    /// Release without checking /proc/locks (only meaningful with --ip alone).
    #[arg(long)]
    pub no_verify: bool,
    /// How long to wait for locks to disappear before failing.
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = parse_secs)]
    pub settle: Duration,
}

#[derive(Debug, Subcommand)]
pub enum GraceCmd {
    /// Set grace and lease times; only while nfsd is stopped (the kernel refuses otherwise).
    Set(GraceSetArgs),
    /// End grace now (nlm_end_grace, v4_end_grace).
    ///
    /// Do not end lockd grace while another notifier on this node still has clients to
    /// reclaim: grace is shared per network namespace.
    End(GraceEndArgs),
    /// Show the grace knobs.
    Status,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("times").required(true).multiple(true).args(["nlm", "v4", "lease"])))]
pub struct GraceSetArgs {
    /// lockd grace (nlm_grace_period, 0..240; rounded up to nlm_timeout by the kernel).
    #[arg(long, value_name = "SECONDS")]
    pub nlm: Option<u64>,
    /// NFSv4 grace (nfsv4gracetime, 10..3600).
    #[arg(long, value_name = "SECONDS")]
    pub v4: Option<u64>,
    /// NFSv4 lease (nfsv4leasetime, 10..3600).
    #[arg(long, value_name = "SECONDS")]
    pub lease: Option<u64>,
}

#[derive(Debug, Args)]
pub struct GraceEndArgs {
    #[arg(long, value_enum, default_value = "both")]
    pub which: GraceWhich,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Exported filesystem (any path on it).
    #[arg(long, value_name = "PATH")]
    pub fs: PathBuf,
    /// Directory for the ledger file (on the shared storage).
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_secs)]
    pub interval: Duration,
    /// Stop after COUNT snapshots (default: run until killed).
    #[arg(long, value_name = "COUNT")]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Give up after SECONDS (grace then runs out by itself).
    #[arg(long, value_name = "SECONDS", default_value = "90", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Never end grace sooner than SECONDS after the start of waiting, so clients that hold
    /// no recorded lock still get time to reclaim.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_secs)]
    pub min_grace: Duration,
    /// Which grace to end.
    #[arg(long, value_enum, default_value = "both")]
    pub end: GraceWhich,
    /// Only report; never end grace.
    #[arg(long)]
    pub no_end_grace: bool,
    /// Refuse a ledger older than SECONDS (the recorder was not running).
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = parse_secs)]
    pub max_age: Duration,
}

#[derive(Debug, Args)]
pub struct WaitReclaimArgs {
    /// Directory holding the ledger.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Exported filesystem on this node (default: the path stored in the ledger).
    #[arg(long, value_name = "PATH")]
    pub fs: Option<PathBuf>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct TakeoverArgs {
    /// statd state directory (shared, failed over with the service).
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The floating IP, already up on this node; notifies are sent from it.
    #[arg(long, value_name = "IP")]
    pub ip: IpAddr,
    /// Exported filesystem; with a ledger in --ledger-dir, wait for its locks.
    #[arg(long, value_name = "PATH")]
    pub fs: Option<PathBuf>,
    /// Directory of the ledger (default: --state-dir).
    #[arg(long, value_name = "DIR")]
    pub ledger_dir: Option<PathBuf>,
    #[command(flatten)]
    pub opts: NotifyOpts,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct HandoffArgs {
    /// The floating IP, already taken down on this node.
    #[arg(long, value_name = "IP")]
    pub ip: IpAddr,
    /// Exported filesystem (still mounted, already unexported).
    #[arg(long, value_name = "PATH")]
    pub fs: PathBuf,
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = parse_secs)]
    pub settle: Duration,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
}

// ------------------------------------------------------------------------------------------

/// Documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    Incomplete = 1,
    Usage = 2,
    Refused = 3,
    Kernel = 4,
    Io = 5,
    BadInput = 6,
}

#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Statd(#[from] StatdError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Grace(#[from] GraceError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Knob(#[from] KnobError),
    #[error("the floating IP {ip} is not configured on this node ({source}); bring it up before notifying, so clients reclaim against this node")]
    IpNotLocal {
        ip: IpAddr,
        #[source]
        source: io::Error,
    },
    #[error("the floating IP {0} is still configured on this node; take it down (and unexport) before releasing locks, or new locks may arrive after the release")]
    IpStillLocal(IpAddr),
    #[error("nfsd is not serving ({0}); start nfsd and exportfs before notifying: clients told too early fail to reclaim (resource-agents PR #443)")]
    NfsdNotServing(String),
    #[error("--ip alone cannot be verified in /proc/locks; add --fs PATH (the exported filesystem) or pass --no-verify")]
    UnverifiableRelease,
    #[error("cannot write the report to stdout: {0}")]
    Stdout(io::Error),
}

/// The one table from errors to exit codes.
pub fn exit_code(e: &AppError) -> Exit {
    fn knob(k: &KnobError) -> Exit {
        match k {
            KnobError::Locks(_) | KnobError::Unexpected { .. } => Exit::BadInput,
            _ => Exit::Kernel,
        }
    }
    fn statd(s: &StatdError) -> Exit {
        match s {
            StatdError::Io { .. } => Exit::Io,
            _ => Exit::BadInput,
        }
    }
    match e {
        AppError::Notify(NotifyError::Statd(s)) | AppError::Statd(s) => statd(s),
        AppError::Notify(_) => Exit::Io,
        AppError::Release(r) => match r {
            ReleaseError::Knob(k) => knob(k),
            ReleaseError::SignalOnNewKernel(..) | ReleaseError::SignalNeedsRealProc(_) => {
                Exit::Refused
            }
            ReleaseError::NoLockdThread(_) | ReleaseError::Signal { .. } => Exit::Kernel,
            ReleaseError::StatFs { .. } => Exit::Io,
            ReleaseError::MissingArgument { .. } => Exit::Usage,
            ReleaseError::LocksRemain { .. } => Exit::Incomplete,
        },
        AppError::Grace(g) => match g {
            GraceError::Knob(k) => knob(k),
            GraceError::NfsdRunning { .. } => Exit::Refused,
            GraceError::OutOfRange { .. } => Exit::Usage,
            GraceError::NoGraceKnob { .. } => Exit::Kernel,
        },
        AppError::Ledger(l) => match l {
            LedgerError::Knob(k) => knob(k),
            LedgerError::Io { .. } => Exit::Io,
            LedgerError::Corrupt { .. } => Exit::BadInput,
            LedgerError::Stale { .. } => Exit::Refused,
        },
        AppError::Knob(k) => knob(k),
        AppError::IpNotLocal { .. } | AppError::IpStillLocal(_) | AppError::NfsdNotServing(_) => {
            Exit::Refused
        }
        AppError::UnverifiableRelease => Exit::Usage,
        AppError::Stdout(_) => Exit::Io,
    }
}

struct Out {
    json: bool,
}

impl Out {
    /// Prints the JSON report or the human text. EPIPE (a closed pipe) is not an error.
    fn emit<T: Serialize>(
        &self,
        report: &T,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), AppError> {
        let stdout = io::stdout();
        let mut w = stdout.lock();
        let r = if self.json {
            serde_json::to_writer_pretty(&mut w, report)
                .map_err(io::Error::from)
                .and_then(|()| writeln!(w))
        } else {
            human(&mut w)
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(AppError::Stdout(e)),
            Ok(()) => Ok(()),
        }
    }
}

fn notify_config(
    state_dir: &Path,
    source: Option<IpAddr>,
    o: &NotifyOpts,
    proc_root: &Path,
) -> NotifyConfig {
    let mut c = NotifyConfig::new(state_dir);
    c.proc_root = proc_root.to_path_buf();
    c.source_addr = source;
    c.mon_name = o.mon_name.clone();
    c.source_port = match o.source_port {
        None => PortChoice::Auto,
        Some(0) => PortChoice::Ephemeral,
        Some(p) => PortChoice::Fixed(p),
    };
    c.update_state = !o.no_update_state;
    c.short_names = !o.no_short_name;
    c.deadline = o.deadline;
    c.initial_timeout = o.retry_interval.max(Duration::from_millis(10));
    c.max_timeout = o.max_retry_interval.max(c.initial_timeout);
    c.max_rate = o.rate;
    c.max_in_flight = o.window as usize;
    c.rpcbind_port = o.rpcbind_port;
    c
}

fn print_notify(out: &Out, r: &notify::NotifyReport) -> Result<Exit, AppError> {
    out.emit(r, |w| {
        match r.state {
            Some(s) => writeln!(
                w,
                "state {} -> {}",
                s.previous.map_or("none".into(), |p| p.to_string()),
                s.state
            )?,
            None => writeln!(w, "no clients recorded; state left alone")?,
        }
        for c in &r.clients {
            writeln!(
                w,
                "{:<24} {:<20} {}{}",
                c.host,
                format!("{:?}", c.status).to_lowercase(),
                c.acknowledged.join(","),
                c.detail
                    .as_deref()
                    .map_or(String::new(), |d| format!(" ({d})"))
            )?;
        }
        for m in &r.malformed {
            writeln!(
                w,
                "malformed (kept): {}:{}: {}",
                m.file.display(),
                m.line_no,
                m.reason
            )?;
        }
        for s in &r.skipped {
            writeln!(w, "skipped: {}: {}", s.path.display(), s.reason)?;
        }
        writeln!(
            w,
            "{} notified, {} not reached, {} ms",
            r.notified, r.failed, r.elapsed_ms
        )
    })?;
    for warn in &r.warnings {
        tracing::warn!("{warn}");
    }
    Ok(if r.all_reached() {
        Exit::Ok
    } else {
        Exit::Incomplete
    })
}

/// Whether `ip` is configured on this node: binding to it succeeds only then.
fn ip_is_local(ip: IpAddr) -> io::Result<()> {
    UdpSocket::bind(SocketAddr::new(ip, 0)).map(|_| ())
}

fn wait_opts(w: &WaitArgs) -> WaitOptions {
    WaitOptions {
        timeout: w.timeout,
        min_grace: w.min_grace,
        poll: Duration::from_millis(200),
        end_grace: if w.no_end_grace { None } else { Some(w.end) },
        max_age: w.max_age,
    }
}

fn print_wait(out: &Out, r: &ledger::WaitReport) -> Result<Exit, AppError> {
    out.emit(r, |w| {
        writeln!(
            w,
            "{} of {} recorded locks held again on {} (ledger from {}, {} s old)",
            r.reclaimed.len(),
            r.expected,
            r.fs.display(),
            r.ledger_node,
            r.ledger_age_ms / 1000
        )?;
        for m in &r.missing {
            writeln!(
                w,
                "not reclaimed: inode {} {} {}-{} (pid {} before)",
                m.ino,
                m.access,
                m.start,
                m.end.map_or("EOF".into(), |e| e.to_string()),
                m.pid
            )?;
        }
        match &r.grace_ended {
            Some(g) => writeln!(w, "grace ended after {} ms: {:?}", r.waited_ms, g.ended),
            None => writeln!(w, "grace not ended (waited {} ms)", r.waited_ms),
        }
    })?;
    Ok(if r.all_reclaimed {
        Exit::Ok
    } else {
        Exit::Incomplete
    })
}

#[derive(Serialize)]
struct TakeoverReport<'a> {
    notify: &'a notify::NotifyReport,
    reclaim: Option<&'a ledger::WaitReport>,
    reclaim_skipped: Option<String>,
    /// No ledger to wait for and no NSM client recorded: nobody can reclaim an NLM lock, so
    /// lockd's grace was ended after --min-grace (NFSv4 grace is left alone: v4 clients are not
    /// recorded by statd).
    nlm_grace_ended_without_clients: Option<procfs::GraceEndReport>,
}

pub fn run(cli: &Cli) -> Result<Exit, AppError> {
    let out = Out { json: cli.json };
    let proc = ProcRoot::new(&cli.proc_root);
    match &cli.command {
        Command::Notify(a) => {
            let cfg = notify_config(&a.state_dir, a.source_addr, &a.opts, &cli.proc_root);
            let r = notify::run(&cfg)?;
            print_notify(&out, &r)
        }
        Command::Release(a) => {
            let methods = match a.method {
                Some(m) => vec![m],
                None => {
                    let mut v = Vec::new();
                    if a.ip.is_some() {
                        v.push(ReleaseMethod::UnlockIp);
                    }
                    if a.fs.is_some() {
                        v.push(ReleaseMethod::UnlockFs);
                    }
                    v
                }
            };
            if a.fs.is_none() && !a.no_verify {
                return Err(AppError::UnverifiableRelease);
            }
            let r = procfs::release(&proc, a.ip, a.fs.as_deref(), &methods, a.settle)?;
            out.emit(&r, |w| {
                for (p, v) in &r.written {
                    writeln!(w, "wrote {:?} to {}", v.trim_end(), p.display())?;
                }
                if let Some(pid) = r.signalled_pid {
                    writeln!(w, "sent SIGKILL to lockd thread {pid}")?;
                }
                match &r.verified_fs {
                    Some(f) => writeln!(w, "verified: no lock left on {}", f.display()),
                    None => writeln!(w, "not verified (--no-verify)"),
                }
            })?;
            Ok(Exit::Ok)
        }
        Command::Grace(GraceCmd::Set(a)) => {
            let r = procfs::grace_set(
                &proc,
                &GraceSettings {
                    nlm_grace_period: a.nlm,
                    v4_grace: a.v4,
                    v4_lease: a.lease,
                },
            )?;
            for warn in &r.warnings {
                tracing::warn!("{warn}");
            }
            out.emit(&r, |w| {
                for (p, v) in &r.written {
                    writeln!(w, "wrote {} to {}", v.trim_end(), p.display())?;
                }
                Ok(())
            })?;
            Ok(Exit::Ok)
        }
        Command::Grace(GraceCmd::End(a)) => {
            let r = procfs::grace_end(&proc, a.which)?;
            out.emit(&r, |w| {
                for p in &r.ended {
                    writeln!(w, "ended grace: {}", p.display())?;
                }
                for p in &r.missing {
                    writeln!(w, "not present: {}", p.display())?;
                }
                Ok(())
            })?;
            Ok(Exit::Ok)
        }
        Command::Grace(GraceCmd::Status) => {
            let s = procfs::grace_status(&proc);
            out.emit(&s, |w| writeln!(w, "{s:#?}"))?;
            Ok(Exit::Ok)
        }
        Command::Record(a) => {
            let mut n = 0u64;
            let mut last: Option<Vec<ledger::LedgerLock>> = None;
            loop {
                let l = ledger::snapshot(&proc, &a.fs)?;
                ledger::write(&a.state_dir, &l)?;
                if last.as_ref() != Some(&l.locks) {
                    tracing::info!(locks = l.locks.len(), "ledger updated");
                    last = Some(l.locks.clone());
                }
                n += 1;
                if a.count.is_some_and(|c| n >= c) {
                    out.emit(&l, |w| {
                        writeln!(
                            w,
                            "{} locks recorded in {}",
                            l.locks.len(),
                            ledger::ledger_path(&a.state_dir).display()
                        )
                    })?;
                    return Ok(Exit::Ok);
                }
                std::thread::sleep(a.interval);
            }
        }
        Command::WaitReclaim(a) => {
            let fs = match &a.fs {
                Some(f) => f.clone(),
                None => ledger::read(&a.state_dir)?.fs,
            };
            let r = ledger::wait_reclaim(&proc, &a.state_dir, &fs, &wait_opts(&a.wait))?;
            print_wait(&out, &r)
        }
        Command::Takeover(a) => {
            ip_is_local(a.ip).map_err(|source| AppError::IpNotLocal { ip: a.ip, source })?;
            match proc.nfsd_threads() {
                Ok(n) if n > 0 => {}
                Ok(_) => {
                    return Err(AppError::NfsdNotServing(format!(
                        "{} is 0",
                        proc.path(procfs::NFSD_THREADS).display()
                    )))
                }
                Err(e) => return Err(AppError::NfsdNotServing(e.to_string())),
            }
            let cfg = notify_config(&a.state_dir, Some(a.ip), &a.opts, &cli.proc_root);
            let nr = notify::run(&cfg)?;
            let ledger_dir = a.ledger_dir.clone().unwrap_or_else(|| a.state_dir.clone());
            let (wr, skipped) = match &a.fs {
                None => (None, Some("no --fs given".to_string())),
                Some(_) if !ledger::ledger_path(&ledger_dir).exists() => (
                    None,
                    Some(format!(
                        "no ledger at {}",
                        ledger::ledger_path(&ledger_dir).display()
                    )),
                ),
                Some(fs) => (
                    Some(ledger::wait_reclaim(
                        &proc,
                        &ledger_dir,
                        fs,
                        &wait_opts(&a.wait),
                    )?),
                    None,
                ),
            };
            // Nobody recorded and nothing to wait for: no NLM lock can be reclaimed, so keeping
            // new NLM lock requests out for the whole grace period only delays clients.
            let no_clients = nr.clients.is_empty() && nr.malformed.is_empty();
            let nlm_ended = if wr.is_none() && no_clients && !a.wait.no_end_grace {
                std::thread::sleep(a.wait.min_grace);
                Some(procfs::grace_end(&proc, GraceWhich::Nlm)?)
            } else {
                None
            };
            let notify_exit = if nr.all_reached() {
                Exit::Ok
            } else {
                Exit::Incomplete
            };
            let wait_exit = wr.as_ref().map_or(Exit::Ok, |r| {
                if r.all_reclaimed {
                    Exit::Ok
                } else {
                    Exit::Incomplete
                }
            });
            let rep = TakeoverReport {
                notify: &nr,
                reclaim: wr.as_ref(),
                reclaim_skipped: skipped.clone(),
                nlm_grace_ended_without_clients: nlm_ended.clone(),
            };
            if cli.json {
                out.emit(&rep, |_| Ok(()))?;
            } else {
                print_notify(&out, &nr)?;
                match &wr {
                    Some(r) => {
                        print_wait(&out, r)?;
                    }
                    None => out.emit(&rep, |w| {
                        writeln!(
                            w,
                            "reclaim wait skipped: {}",
                            skipped.as_deref().unwrap_or("")
                        )?;
                        if let Some(g) = &nlm_ended {
                            writeln!(
                                w,
                                "no client recorded: lockd grace ended after {} s ({:?})",
                                a.wait.min_grace.as_secs(),
                                g.ended
                            )?;
                        }
                        Ok(())
                    })?,
                }
            }
            Ok(if notify_exit == Exit::Ok && wait_exit == Exit::Ok {
                Exit::Ok
            } else {
                Exit::Incomplete
            })
        }
        Command::Handoff(a) => {
            if ip_is_local(a.ip).is_ok() {
                return Err(AppError::IpStillLocal(a.ip));
            }
            let r = procfs::release(
                &proc,
                Some(a.ip),
                Some(&a.fs),
                &[ReleaseMethod::UnlockIp, ReleaseMethod::UnlockFs],
                a.settle,
            )?;
            out.emit(&r, |w| {
                for (p, v) in &r.written {
                    writeln!(w, "wrote {:?} to {}", v.trim_end(), p.display())?;
                }
                writeln!(
                    w,
                    "verified: no lock left on {}; safe to unmount and hand over",
                    a.fs.display()
                )
            })?;
            Ok(Exit::Ok)
        }
        Command::Show(a) => {
            let d = StatdDir::open(&a.state_dir)?;
            #[derive(Serialize)]
            struct Rec {
                dir: &'static str,
                host: String,
                record: crate::statd::MonitorRecord,
            }
            #[derive(Serialize)]
            struct ShowReport {
                state: Option<i32>,
                records: Vec<Rec>,
                malformed: Vec<crate::statd::MalformedLine>,
                skipped: Vec<crate::statd::SkippedEntry>,
            }
            let mut rep = ShowReport {
                state: d.read_state()?,
                records: Vec::new(),
                malformed: Vec::new(),
                skipped: Vec::new(),
            };
            for which in [RecordDir::Sm, RecordDir::SmBak] {
                let l = d.list(which)?;
                for h in l.hosts {
                    for r in h.records {
                        rep.records.push(Rec {
                            dir: which.name(),
                            host: h.name.clone(),
                            record: r,
                        });
                    }
                }
                rep.malformed.extend(l.malformed);
                rep.skipped.extend(l.skipped);
            }
            out.emit(&rep, |w| {
                writeln!(
                    w,
                    "state: {}",
                    rep.state.map_or("none".into(), |s| s.to_string())
                )?;
                for r in &rep.records {
                    writeln!(
                        w,
                        "{}/{}: mon_name {} my_name {}",
                        r.dir, r.host, r.record.mon_name, r.record.my_name
                    )?;
                }
                for m in &rep.malformed {
                    writeln!(
                        w,
                        "malformed: {}:{}: {}",
                        m.file.display(),
                        m.line_no,
                        m.reason
                    )?;
                }
                Ok(())
            })?;
            Ok(if rep.malformed.is_empty() {
                Exit::Ok
            } else {
                Exit::BadInput
            })
        }
    }
}

/// Entry point for the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("lockd_recover={default}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .init();
    match run(&cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            let code = exit_code(&e);
            eprintln!("lockd-recover: error: {e}");
            ExitCode::from(code as u8)
        }
    }
}

/// The man page (section 8), rendered from the clap definition: the top-level page from
/// clap_mangen, then one section per subcommand with its description and options.
pub fn render_man_page() -> Vec<u8> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    cmd.build();
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .render(&mut buf);
    for sub in cmd.get_subcommands() {
        man_subcommand(&mut buf, "lockd-recover", sub);
    }
    buf
}

fn roff_escape(s: &str) -> String {
    s.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn man_subcommand(buf: &mut Vec<u8>, prefix: &str, sub: &clap::Command) {
    use std::io::Write as _;
    if sub.get_name() == "help" {
        return;
    }
    let name = format!("{prefix} {}", sub.get_name());
    let _ = writeln!(buf, ".SH \"{}\"", roff_escape(&name.to_uppercase()));
    let about = sub
        .get_long_about()
        .or(sub.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    for para in about.split("\n\n") {
        let _ = writeln!(buf, ".PP\n{}", roff_escape(para));
    }
    for arg in sub.get_arguments() {
        if arg.is_hide_set()
            || matches!(arg.get_id().as_str(), "help" | "version")
            || arg.is_global_set()
        {
            continue;
        }
        let mut flag = String::new();
        if let Some(s) = arg.get_short() {
            flag.push_str(&format!("-{s}, "));
        }
        if let Some(l) = arg.get_long() {
            flag.push_str(&format!("--{l}"));
        }
        let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values())
            && !matches!(
                arg.get_action(),
                clap::ArgAction::SetTrue | clap::ArgAction::Count
            );
        let value = if takes_value {
            arg.get_value_names()
                .and_then(|v| v.first())
                .map(|v| format!(" <{v}>"))
                .unwrap_or_else(|| format!(" <{}>", arg.get_id().as_str().to_uppercase()))
        } else {
            String::new()
        };
        let mut help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let possible: Vec<String> = if takes_value {
            arg.get_possible_values()
                .iter()
                .map(|p| p.get_name().to_owned())
                .collect()
        } else {
            Vec::new()
        };
        if !possible.is_empty() {
            help.push_str(&format!(" [possible values: {}]", possible.join(", ")));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        if takes_value && !defaults.is_empty() {
            help.push_str(&format!(" [default: {}]", defaults.join(", ")));
        }
        let _ = writeln!(
            buf,
            ".TP\n\\fB{}\\fR{}\n{}",
            roff_escape(&flag),
            roff_escape(&value),
            roff_escape(&help)
        );
    }
    for s in sub.get_subcommands() {
        man_subcommand(buf, &name, s);
    }
}
