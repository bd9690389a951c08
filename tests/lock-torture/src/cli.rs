//! The command line (clap derive). The man page is generated from these definitions.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration::parse_duration;
use crate::failover::ProbeMode;
use crate::lock::LockKind;

/// Everything held and exclusive, every test passed.
pub const EXIT_OK: u8 = 0;
/// A violation: a test failed, a lock was not exclusive, a lock was lost, or a lock or I/O
/// call failed.
pub const EXIT_VIOLATION: u8 = 1;
/// Usage or setup error: bad options, unusable directory, a helper could not start.
pub const EXIT_USAGE: u8 = 2;

const EXIT_HELP: &str = "Exit status:
  0  every test passed / every lock was exclusive and held throughout
  1  a violation was found: a test failed, two owners held conflicting locks, a lock was lost, or a lock or I/O call failed (ENOLCK, EIO, ...)
  2  usage or setup error: bad options, the directory is missing or not writable, the initial locks could not be taken, or a helper process could not start

Reports go to stdout (human text, or JSON with --json); diagnostics go to stderr (more with -v, or RUST_LOG=debug).";

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Prove that file locks are exclusive, and that they survive failover.
#[derive(Debug, Parser)]
#[command(
    name = "lock-torture",
    version,
    about = "Prove that file locks (POSIX, OFD, flock) are exclusive and survive NFS server failover",
    long_about = "Prove that file locks (POSIX record locks, open file description locks and flock) \
are exclusive on a filesystem - local ext4 or tmpfs, or an NFS mount - and that held locks survive \
an NFS server failover.\n\n\
Modes:\n  \
semantics    the Connectathon lock tests (tlock.c 1-8, 10-12) plus OFD, flock, upgrade/downgrade and EDEADLK\n  \
torture      many processes contend for overlapping ranges; every holder proves with data that it was alone\n  \
failover     hold locks and keep writing through them while the server fails over; report what survived\n  \
coordinator  with `worker` on other hosts: the same tests between NFS clients of one export\n\n\
Examples:\n  \
lock-torture semantics --dir /mnt/nfs\n  \
lock-torture torture --dir /mnt/nfs --procs 8 --duration 30s --json\n  \
lock-torture failover --dir /mnt/nfs --locks 4 --status-file /run/lt.status   # until SIGTERM",
    after_help = EXIT_HELP
)]
pub struct Cli {
    /// More diagnostics on stderr (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the lock semantics suite (Connectathon tests, OFD, flock, upgrade, EDEADLK).
    #[command(
        long_about = "Run the lock semantics suite in DIR against a second local process.\n\n\
Tests (ids for --only): cthon-1..cthon-8, cthon-10..cthon-12 (Connectathon tlock.c: regions of an \
unlocked file, whole-file and byte-range conflicts, the largest offset, blocking hand-off with \
data, lock/unlock rate, split and merge, close releases POSIX locks, a killed process releases its \
locks), ofd-1, ofd-2 (OFD locks are per open file description, released on its last close), \
flock-1..flock-3, rw-posix, rw-ofd (read/write upgrade and downgrade) and edeadlk.\n\n\
Each test prints PASS/FAIL/SKIP with the errno values it saw (EAGAIN/EACCES for a denied lock is \
expected).",
        after_help = EXIT_HELP
    )]
    Semantics(SemanticsArgs),

    /// Many processes contend for overlapping byte ranges; each holder verifies exclusivity with data.
    #[command(
        long_about = "Run PROCS processes (each with THREADS threads for OFD and flock) that lock random, \
overlapping runs of 32-byte records in one file for DURATION. A write-lock holder increments every \
record of its range, stamps it with its id, writes it and re-reads it before unlocking; a read-lock \
holder reads twice and compares. At the end the record counts must add up to the increments \
performed. A lock implementation that lets two owners in at once is thereby detected, not assumed.\n\n\
Reports operations per second, lock and unlock latency percentiles, conflicts seen (non-blocking \
attempts that found the range taken) and errors by errno.",
        after_help = EXIT_HELP
    )]
    Torture(TortureArgs),

    /// Hold locks and write through them while the server fails over; report what survived.
    #[command(
        long_about = "Take LOCKS write locks in DIR and hold them until DURATION ends or SIGINT/SIGTERM \
arrives. A holder process writes a timestamp into every locked range and fsyncs it each INTERVAL \
(like `flock -x 7; while date | dd conv=fsync >&7; do sleep 1; done`). A probe process, a \
different lock owner, checks each PROBE_INTERVAL whether a conflicting lock would be granted \
(F_GETLK/F_OFD_GETLK, or a real attempt with --probe setlk; always setlk for flock).\n\n\
The report gives the locks still held, the locks lost (found free, held by another process, or \
dropped because the holder died), ENOLCK/EIO and other write errors, the longest write+fsync and \
the longest gap between successful write rounds, and whether another owner was granted a \
conflicting lock. If the holder dies it is restarted and retakes its locks (unless --no-restart).\n\n\
With --probe-only no locks are taken: run it on a second client against the ranges the \
first client's `failover` holds, to see whether another client is granted a conflicting lock \
during the failover (use --probe setlk for a real attempt).\n\n\
With --status-file the current holder and probe pids and lock states are written there about \
once per interval, for scripts that drive a failover lab.",
        after_help = EXIT_HELP
    )]
    Failover(FailoverArgs),

    /// Multi-host: listen for workers on other clients and run the tests between hosts.
    #[command(
        long_about = "Listen on LISTEN for WORKERS `lock-torture worker` processes, typically on other NFS \
clients of the same export, each with its own mount of the shared directory. Then run the \
semantics suite with the first worker as the second lock owner (the cross-host Connectathon \
tests, as Linux-HA mlock did), and a torture run in which the coordinator's and every worker's \
processes contend for the same file at once.\n\n\
Example, two clients of one export:\n  \
client A: lock-torture coordinator --listen 0.0.0.0:5000 --dir /mnt/export --workers 1\n  \
client B: lock-torture worker --connect clientA:5000 --dir /mnt/export",
        after_help = EXIT_HELP
    )]
    Coordinator(CoordinatorArgs),

    /// Multi-host: connect to a coordinator and take locks on its behalf in DIR.
    #[command(after_help = EXIT_HELP)]
    Worker(WorkerArgs),

    #[command(name = "__peer", hide = true)]
    Peer {
        #[arg(long)]
        dir: PathBuf,
    },

    #[command(name = "__torture-worker", hide = true)]
    TortureWorker {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        index: u32,
        #[arg(long)]
        params: String,
    },

    #[command(name = "__holder", hide = true)]
    Holder {
        #[arg(long)]
        params: String,
    },

    #[command(name = "__probe", hide = true)]
    Probe {
        #[arg(long)]
        params: String,
    },
}

#[derive(Debug, Args)]
pub struct SemanticsArgs {
    /// Directory on the filesystem to test (test files are created and removed there).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// Run only these tests (comma-separated ids, e.g. cthon-7,ofd-2).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub only: Vec<String>,

    /// Lock/unlock cycles in the rate test (cthon-8).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub rate_cycles: u32,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Torture parameters shared by `torture` and `coordinator`.
#[derive(Debug, Args, Clone)]
pub struct TortureOpts {
    /// Lock API to torture.
    #[arg(long, value_enum, default_value_t = LockKind::Posix)]
    pub kind: LockKind,

    /// Processes contending (per host).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub procs: u32,

    /// Threads per process, each with its own open file description (ofd and flock only).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: u32,

    /// How long to run, e.g. 30s, 2m, 500ms.
    #[arg(long, default_value = "5s", value_parser = duration_arg, value_name = "DURATION")]
    pub duration: Duration,

    /// Name of the shared file inside the directory (created, and removed after a clean run).
    #[arg(long, default_value = "lock-torture.dat", value_name = "NAME")]
    pub file: String,

    /// Size of the shared file in 32-byte records: fewer records, more contention.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub records: u32,

    /// Longest range one operation locks, in records.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_records: u32,

    /// Percentage of operations that take read locks instead of write locks.
    #[arg(long, default_value_t = 20, value_name = "PCT")]
    pub read_percent: u32,

    /// Hold each lock this many microseconds between writing and re-reading (widens the window
    /// in which a broken lock lets another holder in).
    #[arg(long, default_value_t = 0, value_name = "US")]
    pub hold_us: u64,

    /// Random seed for the ranges (0: from the clock).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub seed: u64,
}

impl TortureOpts {
    pub fn params(&self) -> crate::torture::TortureParams {
        crate::torture::TortureParams {
            kind: self.kind,
            procs: self.procs,
            threads: self.threads,
            duration_ms: self.duration.as_millis() as u64,
            file: self.file.clone(),
            records: self.records,
            max_records: self.max_records,
            read_percent: self.read_percent,
            hold_us: self.hold_us,
            id_base: 0,
            seed: self.seed,
        }
    }
}

#[derive(Debug, Args)]
pub struct TortureArgs {
    /// Directory on the filesystem to test.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    #[command(flatten)]
    pub opts: TortureOpts,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// Directory on the filesystem to test (the lock file is created there).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// Lock file name inside DIR (flock: NAME.0, NAME.1, ... one file per lock).
    #[arg(long, default_value = "lock-torture-failover.dat", value_name = "NAME")]
    pub file: String,

    /// Lock API to hold.
    #[arg(long, value_enum, default_value_t = LockKind::Posix)]
    pub kind: LockKind,

    /// Number of locks to hold (disjoint ranges of one file; separate files for flock).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub locks: u32,

    /// Bytes per locked range.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub lock_len: u64,

    /// Stop after this long (e.g. 10m). Without it, run until SIGINT or SIGTERM.
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Time between write+fsync rounds through the held locks.
    #[arg(long, default_value = "1s", value_parser = duration_arg, value_name = "DURATION")]
    pub interval: Duration,

    /// Time between probe rounds.
    #[arg(long, default_value = "1s", value_parser = duration_arg, value_name = "DURATION")]
    pub probe_interval: Duration,

    /// How the probe checks the held ranges (flock always uses setlk).
    #[arg(long, value_enum, default_value_t = ProbeMode::Getlk)]
    pub probe: ProbeMode,

    /// Do not restart the holder process if it dies.
    #[arg(long)]
    pub no_restart: bool,

    /// Take no locks: only probe the ranges that another `failover` (usually on another NFS
    /// client of the same export) holds, and report every time a conflicting lock would be or
    /// was granted. Use the same --file, --kind, --locks and --lock-len as the holder.
    #[arg(long)]
    pub probe_only: bool,

    /// Keep a JSON status (pids, lock states) in this file while running.
    #[arg(long, value_name = "PATH")]
    pub status_file: Option<PathBuf>,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// This host's directory on the shared filesystem.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// Address to listen on for workers, e.g. 0.0.0.0:5000 (port 0: any free port).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: String,

    /// Number of workers to wait for.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub workers: u32,

    /// How long to wait for the workers to connect.
    #[arg(long, default_value = "60s", value_parser = duration_arg, value_name = "DURATION")]
    pub accept_timeout: Duration,

    /// Write the address actually listened on to this file (useful with port 0).
    #[arg(long, value_name = "PATH")]
    pub addr_file: Option<PathBuf>,

    /// Skip the cross-host semantics suite.
    #[arg(long)]
    pub no_semantics: bool,

    /// Skip the cross-host torture run.
    #[arg(long)]
    pub no_torture: bool,

    /// Run torture processes only on the workers, not on the coordinator's mount.
    #[arg(long)]
    pub no_local: bool,

    /// Lock/unlock cycles in the rate test (cthon-8).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub rate_cycles: u32,

    #[command(flatten)]
    pub torture: TortureOpts,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The coordinator's address, e.g. clienta:5000.
    #[arg(long, value_name = "ADDR:PORT")]
    pub connect: String,

    /// This host's directory on the shared filesystem (the coordinator's files appear here).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// Keep retrying the connection this long (start workers before the coordinator).
    #[arg(long, default_value = "30s", value_parser = duration_arg, value_name = "DURATION")]
    pub retry_for: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_durations_and_kinds() {
        let cli = Cli::try_parse_from([
            "lock-torture",
            "torture",
            "--dir",
            "/tmp",
            "--kind",
            "ofd",
            "--threads",
            "4",
            "--duration",
            "250ms",
        ])
        .unwrap();
        let Cmd::Torture(a) = cli.cmd else {
            panic!("wrong subcommand")
        };
        assert_eq!(a.opts.kind, LockKind::Ofd);
        assert_eq!(a.opts.duration, Duration::from_millis(250));
        assert_eq!(a.opts.params().duration_ms, 250);

        let err = Cli::try_parse_from([
            "lock-torture",
            "torture",
            "--dir",
            "/tmp",
            "--duration",
            "soon",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
        assert!(err.use_stderr());
    }
}
