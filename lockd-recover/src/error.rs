//! The binary's one error type and the one table from errors to documented exit codes (printed
//! in `--help` and in the man page's EXIT STATUS section).

use lockd_recover::grace::GraceError;
use lockd_recover::kmsg::Tracking;
use lockd_recover::knobs::KnobError;
use lockd_recover::ledger::LedgerError;
use lockd_recover::notify::NotifyError;
use lockd_recover::release::ReleaseError;
use lockd_recover::scope::ScopeError;
use lockd_recover::statd::StatdError;
use lockd_recover::tracker::TrackerError;
use lockd_recover::v4state::V4StateError;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use thiserror::Error;

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

impl Exit {
    pub const ALL: [Exit; 7] = [
        Exit::Ok,
        Exit::Incomplete,
        Exit::Usage,
        Exit::Refused,
        Exit::Kernel,
        Exit::Io,
        Exit::BadInput,
    ];

    /// What the code means, as documented.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "success.",
            Exit::Incomplete => "incomplete: a client was not notified, a lock remains after release, or not every recorded lock was reclaimed before the timeout (the report says which).",
            Exit::Usage => "usage error (bad option or value).",
            Exit::Refused => "refused: a precondition does not hold (nfsd running for `grace set` or `start-nfsd`, the NFSv4 tracker on the root disk or not opened by a running nfsdcld, kernel >= 6.6 for signal-lockd, floating IP not up for `takeover` or still up for `handoff` or `record --final`, stale ledger).",
            Exit::Kernel => "kernel interface missing or the write was rejected (the message names the /proc file and what to load).",
            Exit::Io => "I/O error (statd directory, sockets).",
            Exit::BadInput => "malformed input that stops the command (not a statd directory, symlinks, corrupt or newer ledger, a missing, corrupt or unknown NFSv4 tracker database).",
        }
    }

    /// The table as `--help` prints it.
    pub fn help_text() -> String {
        let mut s = String::from("EXIT STATUS:");
        for e in Exit::ALL {
            s.push_str(&format!("\n\n{}: {}", e as u8, e.meaning()));
        }
        s
    }

    /// Worse of two outcomes of one command (a combined command is incomplete if a step is).
    pub fn and(self, other: Exit) -> Exit {
        if self == Exit::Ok {
            other
        } else {
            self
        }
    }
}

#[derive(Debug, Error)]
pub enum Error {
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
    #[error(transparent)]
    Tracker(#[from] TrackerError),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error("nfsd is already running ({threads} threads in {}): its NFSv4 scope, grace and lease are fixed until it stops; stop it (rpc.nfsd 0) and start it again with start-nfsd", path.display())]
    NfsdAlreadyRunning { threads: u64, path: PathBuf },
    #[error("cannot run {}: {source}", program.display())]
    RpcNfsd {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} failed ({status}); the kernel log says why", program.display())]
    RpcNfsdFailed {
        program: PathBuf,
        status: ExitStatus,
    },
    #[error("rpc.nfsd returned but {} is 0: nfsd did not start", threads.display())]
    NfsdDidNotStart { threads: PathBuf },
    #[error("nfsd chose {found:?} client tracking, not nfsdcld ({lines:?}): none of the tracker's clients could reclaim, so nfsd was stopped again. Is nfsdcld running with the shared storage (and rpc_pipefs mounted)?")]
    WrongTracker { found: Tracking, lines: Vec<String> },
    #[error("the floating IP {ip} is not configured on this node ({source}); bring it up before notifying, so clients reclaim against this node")]
    IpNotLocal {
        ip: IpAddr,
        #[source]
        source: io::Error,
    },
    #[error("the floating IP {0} is still configured on this node; take it down (and unexport) before releasing locks, or new locks may arrive after the release")]
    IpStillLocal(IpAddr),
    #[error("the floating IP {0} is still configured on this node; take it down before the final ledger record, or locks granted after it would be missing from it")]
    IpUpAtFinalRecord(IpAddr),
    #[error("nfsd is not serving ({} is 0); start nfsd and exportfs before notifying: clients told too early fail to reclaim (resource-agents PR #443)", threads.display())]
    NfsdStopped { threads: PathBuf },
    #[error("nfsd is not serving ({0}); start nfsd and exportfs before notifying: clients told too early fail to reclaim (resource-agents PR #443)")]
    NfsdUnknown(#[source] KnobError),
    #[error("--ip alone cannot be verified in /proc/locks; add --fs PATH (the exported filesystem) or pass --no-verify")]
    UnverifiableRelease,
    #[error("record: {fs} --fs but {dirs} --state-dir; give one --state-dir per --fs, in the same order (each filesystem's ledger goes to its own directory)")]
    RecordPairs { fs: usize, dirs: usize },
    #[error("record: --state-dir {} is given twice; each --fs needs a directory of its own, or one ledger would overwrite the other", .0.display())]
    RecordSharedDir(PathBuf),
    #[error("cannot write the report to stdout: {0}")]
    Stdout(io::Error),
}

impl Error {
    /// The one table from errors to exit codes.
    pub fn exit_code(&self) -> Exit {
        match self {
            Error::Notify(NotifyError::Statd(s)) | Error::Statd(s) => statd_exit(s),
            Error::Notify(_) => Exit::Io,
            Error::Release(r) => match r {
                ReleaseError::Knob(k) => knob_exit(k),
                ReleaseError::SignalOnNewKernel(..) | ReleaseError::SignalNeedsRealProc(_) => {
                    Exit::Refused
                }
                ReleaseError::NoLockdThread(_) | ReleaseError::Signal { .. } => Exit::Kernel,
                ReleaseError::StatFs { .. } => Exit::Io,
                ReleaseError::MissingArgument { .. } => Exit::Usage,
                ReleaseError::LocksRemain { .. } => Exit::Incomplete,
            },
            Error::Grace(g) => match g {
                GraceError::Knob(k) => knob_exit(k),
                GraceError::NfsdRunning { .. } => Exit::Refused,
                GraceError::OutOfRange { .. } => Exit::Usage,
                GraceError::NoGraceKnob { .. } => Exit::Kernel,
            },
            Error::Ledger(l) => match l {
                LedgerError::Knob(k) => knob_exit(k),
                LedgerError::V4(V4StateError::Io { .. }) => Exit::Io,
                LedgerError::V4(V4StateError::Parse { .. }) => Exit::BadInput,
                LedgerError::Io { .. } => Exit::Io,
                LedgerError::Corrupt { .. } => Exit::BadInput,
                LedgerError::Stale { .. } => Exit::Refused,
                LedgerError::EndGrace { .. } => Exit::Kernel,
            },
            Error::Knob(k) => knob_exit(k),
            Error::Tracker(t) => match t {
                TrackerError::Missing { .. }
                | TrackerError::Corrupt { .. }
                | TrackerError::UnknownSchema { .. }
                | TrackerError::BadGrace { .. } => Exit::BadInput,
                TrackerError::OnRootDisk { .. }
                | TrackerError::NotOnShared { .. }
                | TrackerError::NfsdcldNotRunning { .. }
                | TrackerError::NfsdcldOtherStorage { .. } => Exit::Refused,
                TrackerError::Stat { .. } | TrackerError::Query { .. } => Exit::Io,
            },
            Error::Scope(ScopeError::Invalid(_)) => Exit::Usage,
            Error::Scope(_) | Error::RpcNfsdFailed { .. } | Error::NfsdDidNotStart { .. } => {
                Exit::Kernel
            }
            Error::RpcNfsd { .. } => Exit::Io,
            Error::NfsdAlreadyRunning { .. } | Error::WrongTracker { .. } => Exit::Refused,
            Error::IpNotLocal { .. }
            | Error::IpStillLocal(_)
            | Error::IpUpAtFinalRecord(_)
            | Error::NfsdStopped { .. }
            | Error::NfsdUnknown(_) => Exit::Refused,
            Error::UnverifiableRelease | Error::RecordPairs { .. } | Error::RecordSharedDir(_) => {
                Exit::Usage
            }
            Error::Stdout(_) => Exit::Io,
        }
    }
}

fn knob_exit(k: &KnobError) -> Exit {
    match k {
        KnobError::Locks(_) | KnobError::Unexpected { .. } => Exit::BadInput,
        _ => Exit::Kernel,
    }
}

fn statd_exit(s: &StatdError) -> Exit {
    match s {
        StatdError::Io { .. } => Exit::Io,
        _ => Exit::BadInput,
    }
}
