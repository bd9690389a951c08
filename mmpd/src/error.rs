//! mmpd's errors, and the one table from how mmpd ends to its exit status (printed in
//! `mmpd --help` and mmpd(8), EXIT STATUS, from [`ExitStatus::ALL`]).

use crate::config::ConfigError;
use crate::fence::WatchdogError;
use libmmp::host::run_dir::LockError;
use libmmp::io::device::OpenError;
use libmmp::protocol::claim::handoff::HandoffError;
use std::path::PathBuf;
use std::time::Duration;

/// How mmpd ends. The numbers are documented: never change one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    /// Released (or `--check-config` found nothing wrong).
    Success,
    Fenced,
    Error,
    Refused,
    Busy,
}

impl ExitStatus {
    /// Every status, in the order of the table.
    pub const ALL: [ExitStatus; 5] = [
        ExitStatus::Success,
        ExitStatus::Fenced,
        ExitStatus::Error,
        ExitStatus::Refused,
        ExitStatus::Busy,
    ];

    /// The table: the exit code and its description, as printed in the help and man page
    /// (continuation lines indented to the description).
    fn entry(self) -> (u8, &'static str) {
        match self {
            ExitStatus::Success => (
                0,
                "released: every device was set back to CLEAN after SIGTERM/SIGINT",
            ),
            ExitStatus::Fenced => (
                1,
                "fenced: another writer appeared or MMP writes failed (or a release found a foreign block)",
            ),
            ExitStatus::Error => (
                2,
                "error: usage, configuration, device (not found, not ext4, MMP not enabled, I/O error),\n     \
                 or a watchdog device that is not one (not a character device, or its timeout cannot be\n     \
                 set or read)",
            ),
            ExitStatus::Refused => (
                3,
                "claim refused: in use on another node, fsck running, unknown sequence, bad checksum, or\n     \
                 another node won the claim",
            ),
            ExitStatus::Busy => (
                4,
                "another mmpd on this host already holds one of the devices",
            ),
        }
    }

    pub fn code(self) -> u8 {
        self.entry().0
    }

    /// The EXIT STATUS section of `mmpd --help`.
    pub fn help() -> String {
        let mut s = String::from("EXIT STATUS:\n");
        for st in ExitStatus::ALL {
            let (code, text) = st.entry();
            s.push_str(&format!("  {code}  {text}\n"));
        }
        s
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(s: ExitStatus) -> Self {
        std::process::ExitCode::from(s.code())
    }
}

/// Why mmpd cannot start, or stops with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The run directory's lock for a device (held by another mmpd: [`ExitStatus::Busy`]).
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Reading the filesystem or its MMP block.
    #[error(transparent)]
    Fs(#[from] libmmp::Error),
    /// The device's sector size does not allow writing the MMP block alone.
    #[error("{}: {source}", path.display())]
    WriteSpan {
        path: PathBuf,
        #[source]
        source: libmmp::fs::WriteSpanError,
    },
    #[error(transparent)]
    Watchdog(#[from] WatchdogError),
    #[error(
        "the watchdog's timeout is {} s, longer than the configured {} s that the published check interval covers",
        found.as_secs(),
        configured.as_secs()
    )]
    WatchdogTimeoutTooLong {
        found: Duration,
        configured: Duration,
    },
    #[error("{}: claim failed: {source}", path.display())]
    Claim {
        path: PathBuf,
        #[source]
        source: HandoffError,
    },
    #[error("eventfd: {0}")]
    Eventfd(#[source] std::io::Error),
    #[error("sigprocmask: {0}")]
    SignalMask(#[source] nix::errno::Errno),
    #[error("signalfd: {0}")]
    Signalfd(#[source] nix::errno::Errno),
    #[error("cannot start a claim thread: {0}")]
    ClaimThread(#[source] std::io::Error),
}

impl DaemonError {
    /// The one place that decides the exit status of an error.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            DaemonError::Lock(LockError::Busy { .. }) => ExitStatus::Busy,
            DaemonError::Claim { source, .. } if source.is_refusal() => ExitStatus::Refused,
            DaemonError::Config(_)
            | DaemonError::Lock(_)
            | DaemonError::Open(_)
            | DaemonError::Fs(_)
            | DaemonError::WriteSpan { .. }
            | DaemonError::Watchdog(_)
            | DaemonError::WatchdogTimeoutTooLong { .. }
            | DaemonError::Claim { .. }
            | DaemonError::Eventfd(_)
            | DaemonError::SignalMask(_)
            | DaemonError::Signalfd(_)
            | DaemonError::ClaimThread(_) => ExitStatus::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented numbers (mmpd(8)); scripts and unit files rely on them.
    #[test]
    fn exit_codes_keep_their_numbers() {
        let codes: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4]);
    }
}
