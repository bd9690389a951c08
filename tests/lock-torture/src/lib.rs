//! lock-torture: proves that POSIX record locks, OFD locks and flock are exclusive on a given
//! filesystem (local or NFS), across processes, threads and hosts, and that held locks survive
//! a server failover.
//!
//! The binary (`src/main.rs`) only maps [`app::run`]'s outcome to an exit code; everything else
//! lives here so it can be tested.

pub mod app;
pub mod cli;
pub mod duration;
pub mod failover;
pub mod fsinfo;
pub mod lock;
pub mod multihost;
pub mod peer;
pub mod protocol;
pub mod record;
pub mod semantics;
pub mod stats;
mod sys;
pub mod torture;
