//! Command-line definitions (clap). The subcommands run in `cmd/`; exit codes are in
//! `error.rs`.

use crate::error::Exit;
use clap::{Args, Parser, Subcommand};
use lockd_recover::grace::GraceWhich;
use lockd_recover::release::ReleaseMethod;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

const FAILOVER_ORDER: &str = "\
FAILOVER ORDER:

Old node (`handoff`): take the floating IP down, unexport (exportfs -u), then release the locks (unlock_ip, unlock_filesystem) and check /proc/locks, then unmount.

New node (`takeover`): set grace while nfsd is stopped (`grace set`), mount, start nfsd and exportfs, bring the floating IP up, and only then notify clients: a notify sent before the exports and IP are up makes reclaims fail (resource-agents PR #443). Then wait for the ledger's locks to come back and end grace early (`wait-reclaim`).";
/// The text after `--help`: the failover order, then the exit-code table.
fn after_long_help() -> String {
    format!("{FAILOVER_ORDER}\n\n{}", Exit::help_text())
}

/// Fast, checked NFS (NLM/NSM) lock recovery for HA failover.
///
/// lockd-recover replaces the sm-notify / `kill -9 lockd` / long-grace chain of HA NFS stacks:
/// it notifies every NFSv3 client concurrently from the floating IP, releases locks on the old
/// server and verifies they are gone, sets and ends grace, and keeps a ledger of held locks so
/// the new server can end grace as soon as every lock has been reclaimed.
#[derive(Debug, Parser)]
#[command(name = "lockd-recover", version, after_long_help = after_long_help())]
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
    ///
    /// One recorder can keep several filesystems (an NFS service with many exports): repeat
    /// --fs, with one --state-dir per --fs in the same order. The kernel's tables are read once
    /// per INTERVAL for all of them, and each filesystem's ledger goes to its own directory.
    /// With --json, one filesystem prints its ledger, several print an array of them.
    ///
    /// --final takes the old server's last record on a planned move: after the floating IP is
    /// down (no lock can be granted after it) and before the release. It is marked with the
    /// filesystem's read-write mount (ext4 UUID, mount count, last e2fsck time, read from the
    /// disk), and the new server trusts it whatever its age on the very next read-write mount
    /// (see wait-reclaim --max-age). Without a readable mark (not ext4 on a block device) it is
    /// a normal record, with a warning.
    Record(RecordArgs),
    /// Wait until every lock in the ledger is held again, then end grace early (new server).
    ///
    /// Watches /proc/locks; once every recorded lock (same inode and range) is held again and
    /// --min-grace has passed, ends grace through /proc/fs/lockd/nlm_end_grace and
    /// /proc/fs/nfsd/v4_end_grace. On timeout grace is left alone and the missing locks are
    /// reported (exit 1).
    ///
    /// NFSv4: when the ledger recorded v4 clients or v4 grace is running, locks coming back
    /// end only lockd's grace (a v4 client may still be reclaiming opens and delegations).
    /// With nfsdcld the kernel ends v4 grace itself once every client sent RECLAIM_COMPLETE;
    /// this waits for that (v4_end_grace reads Y) and writes v4_end_grace only at --timeout,
    /// naming the clients that never reconnected or (with --tracker-dir) never completed
    /// (exit 1).
    WaitReclaim(WaitReclaimArgs),
    /// New server: check the IP and nfsd are up, notify, then wait-reclaim.
    ///
    /// With no ledger to wait for and no client recorded in the statd directory, nobody can
    /// reclaim an NLM lock: lockd's grace is then ended after --min-grace (NFSv4 grace is left
    /// alone; --no-end-grace leaves both).
    Takeover(TakeoverArgs),
    /// Old server: check the IP is down, then release and verify.
    Handoff(HandoffArgs),
    /// Show a statd directory (state number, records, malformed lines) and the NFSv4 clients.
    ///
    /// The NFSv4 clients connected to this node's nfsd (/proc/fs/nfsd/clients: name, address,
    /// minor version, lock stateids with their files), and those in the ledger of
    /// --state-dir when there is one (what the recording server saw). Byte ranges of locks are
    /// in /proc/locks and in the ledger, not per stateid.
    Show(ShowArgs),
    /// Check nfsdcld's NFSv4 client tracker before nfsd starts (read-only).
    ///
    /// NFSv4 clients may reclaim after a failover only if nfsdcld's sqlite database came over
    /// with the shared filesystem and nfsdcld opened it there before nfsd started (nfsd waits
    /// about 1 s for nfsdcld, then silently uses another tracker). Checks: main.sqlite exists
    /// in --storage-dir, which is not on the root filesystem and is on the one holding
    /// --shared; its schema is nfsdcld's version 4; the grace row is sane; a running nfsdcld
    /// has this very file open. Lists the clients the next grace period will let reclaim, and
    /// warns loudly when there are none: the kernel then skips v4 grace and every reclaim
    /// fails. Never writes to the database.
    Tracker(TrackerArgs),
    /// Start nfsd as the service's NFSv4 server scope (new server, after the tracker).
    ///
    /// nfsd takes its NFSv4 server scope from the host name of the process that starts its
    /// threads; a v4.1+ client that sees another scope after a failover gives up reclaiming
    /// and loses its locks. Debian 12's rpc.nfsd (2.6.2) has no --scope, so this runs
    /// `rpc.nfsd [ARGS] THREADS` in a new UTS namespace whose host name is --scope (the same
    /// on every node; the floating IP's name is a good choice). Before that: refuses when nfsd
    /// already runs, sets the grace and lease times given (the kernel takes them only while
    /// nfsd is stopped), and with --tracker-dir runs the `tracker` checks. After: reads the
    /// kernel log for the tracker nfsd chose, and with --tracker-dir stops nfsd again unless
    /// it is nfsdcld. Change the thread count only through this command: every write to
    /// /proc/fs/nfsd/threads copies the writer's host name into the scope.
    StartNfsd(StartNfsdArgs),
}

/// A `--...` value in seconds that is not one.
#[derive(Debug, thiserror::Error)]
pub enum SecondsError {
    #[error("{0:?} is not a number of seconds")]
    NotANumber(String),
    #[error("{0} is not a valid number of seconds")]
    OutOfRange(String),
}

fn parse_secs(s: &str) -> Result<Duration, SecondsError> {
    let v: f64 = s
        .parse()
        .map_err(|_| SecondsError::NotANumber(s.to_owned()))?;
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(SecondsError::OutOfRange(s.to_owned()));
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
    /// Exported filesystem (any path on it); repeat for several.
    #[arg(long, value_name = "PATH", required = true)]
    pub fs: Vec<PathBuf>,
    /// Directory for the ledger file (on the shared storage that fails over with the --fs of
    /// the same position).
    #[arg(long, value_name = "DIR", required = true)]
    pub state_dir: Vec<PathBuf>,
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_secs)]
    pub interval: Duration,
    /// Stop after COUNT snapshots (default: run until killed).
    #[arg(long, value_name = "COUNT")]
    pub count: Option<u64>,
    /// One final record, then exit (old server, floating IP down, record loop stopped: its
    /// next record would replace this one).
    #[arg(long = "final", requires = "ip", conflicts_with = "count")]
    pub final_record: bool,
    /// With --final: the floating IP, which must already be down on this node.
    #[arg(long, value_name = "IP", requires = "final_record")]
    pub ip: Option<IpAddr>,
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
    /// Refuse a ledger older than SECONDS (the recorder was not running). A final ledger
    /// (`record --final`, the nfs-locks agent's stop) counts whatever its age when this is
    /// the filesystem's first read-write mount since it was taken (same ext4 UUID and last
    /// e2fsck, mount count one more): no server can have granted a lock in between.
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = parse_secs)]
    pub max_age: Duration,
    /// nfsdcld's storage directory: at the deadline, name the NFSv4 clients that have not
    /// sent RECLAIM_COMPLETE (read-only).
    #[arg(long, value_name = "DIR")]
    pub tracker_dir: Option<PathBuf>,
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
    /// Stop nfsd (0 threads) first, always. Without it, nfsd is stopped only when an NFSv4
    /// client holds a lock stateid on --fs (/proc/fs/nfsd/clients): unlock_filesystem leaves
    /// v4 locks in place on kernels without the admin-revoke series (Linux 6.1 among them),
    /// and a clean stop drops every v4 state; the clients reclaim on the next server.
    #[arg(long)]
    pub stop_nfsd: bool,
}

#[derive(Debug, Args)]
pub struct TrackerArgs {
    /// nfsdcld's storage directory (nfsdcld -s, nfs.conf [nfsdcld] storagedir), on the shared
    /// filesystem.
    #[arg(long, value_name = "DIR", default_value = lockd_recover::tracker::DEFAULT_STORAGE_DIR)]
    pub storage_dir: PathBuf,
    /// Any path on the shared filesystem (the export): the storage must be on the same one.
    #[arg(long, value_name = "PATH")]
    pub shared: Option<PathBuf>,
    /// Do not require a running nfsdcld with the database open (for a look at a copy).
    #[arg(long)]
    pub no_nfsdcld_check: bool,
}

#[derive(Debug, Args)]
pub struct StartNfsdArgs {
    /// The NFSv4 server scope: the same name on every node serving this export.
    #[arg(long, value_name = "NAME")]
    pub scope: String,
    /// nfsd threads.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=8192))]
    pub threads: u64,
    /// lockd grace (nlm_grace_period, 0..240), set before the start.
    #[arg(long, value_name = "SECONDS")]
    pub nlm_grace: Option<u64>,
    /// NFSv4 grace (nfsv4gracetime, 10..3600), set before the start.
    #[arg(long, value_name = "SECONDS")]
    pub v4_grace: Option<u64>,
    /// NFSv4 lease (nfsv4leasetime, 10..3600), set before the start.
    #[arg(long, value_name = "SECONDS")]
    pub lease: Option<u64>,
    /// nfsdcld's storage directory: check the tracker before the start, and require nfsd to
    /// use nfsdcld after it.
    #[arg(long, value_name = "DIR")]
    pub tracker_dir: Option<PathBuf>,
    /// Any path on the shared filesystem (with --tracker-dir: the storage must be on it).
    #[arg(long, value_name = "PATH", requires = "tracker_dir")]
    pub shared: Option<PathBuf>,
    /// How long to wait for nfsd's tracker line in the kernel log.
    #[arg(long, value_name = "SECONDS", default_value = "3", value_parser = parse_secs)]
    pub confirm_timeout: Duration,
    /// The rpc.nfsd program (default: rpc.nfsd from PATH or the sbin directories).
    #[arg(long, value_name = "PROGRAM")]
    pub rpc_nfsd: Option<PathBuf>,
    /// The kernel log device (tests give a file).
    #[arg(long, value_name = "PATH", default_value = "/dev/kmsg", hide = true)]
    pub kmsg: PathBuf,
    /// More rpc.nfsd options, after `--` (e.g. -- -N 3 -V 4.2); the thread count comes last.
    #[arg(last = true, value_name = "RPC_NFSD_ARGS")]
    pub rpc_nfsd_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    /// The pages in man/ are generated from these clap definitions by the one generator in
    /// tests/support: lockd-recover.8 (with the exit-code table, which `--help` prints too, as
    /// its EXIT STATUS section) and one page per subcommand. `UPDATE_MAN=1 cargo test -p
    /// lockd-recover man_page` rewrites them.
    #[test]
    fn man_page_is_current() {
        let table: Vec<(u8, &str)> = Exit::ALL.iter().map(|&e| (e as u8, e.meaning())).collect();
        // In the man page the table has its own section, so the top page's extra text is only
        // the failover order.
        let cmd = Cli::command().after_long_help(FAILOVER_ORDER);
        let man_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
        test_support::man::assert_current(cmd, "8", &man_dir, true, &table);
    }
}
