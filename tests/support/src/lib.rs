//! Test scaffolding shared by the integration tests of every crate in the workspace (a
//! dev-dependency only; nothing here ships).
//!
//! Each helper exists once: loop devices ([`loopdev`]), mounts and freezes ([`mount`]), ext4
//! images made by mkfs ([`image`]), network namespaces ([`netns`]), the rpcbind + rpc.statd
//! peer ([`statd`]), processes started by a test ([`spawn`]), running commands ([`cmd`]), the
//! skip-or-fail rule ([`require`]), a disk that fails or stalls on command ([`faultdisk`]), the
//! driver's side of mmpd's test watchdog ([`watchdog`]), the MMP block as another node sees it ([`mmp`]), the
//! man-page check ([`man`]) and OCF agents linked for ocf-tester and crm_resource ([`ocf`]).
//!
//! Everything a test creates is removed on drop, also when an assertion fails: loop devices
//! are detached, mounts unmounted, processes killed by pid, namespaces deleted.

pub mod cmd;
pub mod faultdisk;
pub mod image;
pub mod loopdev;
pub mod man;
pub mod mmp;
pub mod mount;
pub mod netns;
pub mod ocf;
pub mod pacemaker;
pub mod require;
pub mod spawn;
pub mod statd;
pub mod watchdog;

use std::process::ExitStatus;

/// A setup step that failed. Tests usually `expect` these; the few that can go on without
/// the fixture (skip, or fail under CI=true) name the step in their message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd} failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} did not happen within {secs} s")]
    Timeout { what: String, secs: u64 },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// What most integration tests use, for one `use test_support::prelude::*;`.
pub mod prelude {
    pub use crate::cmd::{describe, kernel_log_has, run, run_ok, sh, text};
    pub use crate::faultdisk::{Fault, FaultDisk, WriteRecord};
    pub use crate::image::{mkfs, mkfs_ext4, Image};
    pub use crate::loopdev::Loop;
    pub use crate::mmp::{read_block, write_foreign};
    pub use crate::mount::{kernel_mount, Frozen, Mount};
    pub use crate::require::{
        cannot_run, have, in_ci, is_root, require, require_e2fsprogs, require_fuse,
        require_loop_devices, require_root, require_tools,
    };
    pub use crate::spawn::{run_with_timeout, wait_for, wait_output, Proc};
    pub use crate::watchdog::WatchdogSim;
}
