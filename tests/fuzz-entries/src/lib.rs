//! The body of every fuzz target, one function per target, named as the target.
//!
//! `fuzz/fuzz_targets/<name>.rs` is one line calling [`<name>`](TARGETS); the replay test
//! (`tests/replay.rs`) calls the same function on every file of `fuzz/corpus/<name>/` and
//! `fuzz/regressions/<name>/`, on stable Rust and without libFuzzer, so CI keeps a fixed crash
//! fixed. A new target adds its function here and a line to [`TARGETS`].
//!
//! Each function must never panic on any input, except through the assertions that state the
//! property under test (a round trip, an error naming its parameter).

mod image;
mod lockd;
mod mmpd_files;
mod ocf;
mod ondisk;

pub use image::{edit_image, fs_image};
pub use lockd::{
    lockd_kmsg, lockd_ledger, lockd_nfsd_clients, lockd_proc_locks, lockd_rpc_reply,
    lockd_statd_record, lockd_tracker_db,
};
pub use mmpd_files::{
    lock_torture_duration, lock_torture_protocol, lock_torture_record, mmpd_config,
    mmpd_holder_state, mountinfo, ocf_env, sysfs_uevent,
};
pub use ocf::ocf_fence_history;
pub use ondisk::{group_desc, handoff_record, mmp_block, superblock};

/// A fuzz target's entry point.
pub type Entry = fn(&[u8]);

/// Every target, by the name of its binary in `fuzz/Cargo.toml` and its corpus directory.
pub const TARGETS: &[(&str, Entry)] = &[
    ("mmp_block", mmp_block),
    ("superblock", superblock),
    ("group_desc", group_desc),
    ("fs_image", fs_image),
    ("edit_image", edit_image),
    ("lock_torture_protocol", lock_torture_protocol),
    ("lock_torture_record", lock_torture_record),
    ("lock_torture_duration", lock_torture_duration),
    ("lockd_rpc_reply", lockd_rpc_reply),
    ("lockd_statd_record", lockd_statd_record),
    ("lockd_proc_locks", lockd_proc_locks),
    ("lockd_ledger", lockd_ledger),
    ("mmpd_holder_state", mmpd_holder_state),
    ("mmpd_config", mmpd_config),
    ("ocf_env", ocf_env),
    ("mountinfo", mountinfo),
    ("sysfs_uevent", sysfs_uevent),
    ("ocf_fence_history", ocf_fence_history),
    ("lockd_nfsd_clients", lockd_nfsd_clients),
    ("lockd_kmsg", lockd_kmsg),
    ("lockd_tracker_db", lockd_tracker_db),
    ("handoff_record", handoff_record),
];

/// The entry point of target `name`.
pub fn entry(name: &str) -> Option<Entry> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
