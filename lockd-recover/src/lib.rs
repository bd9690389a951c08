//! lockd-recover: NFS (NLM/NSM) lock recovery after an HA failover.
//!
//! - [`xdr`], [`rpc`]: ONC RPC v2 over UDP with AUTH_NONE, bounds-checked replies.
//! - [`nsm`]: rpcbind GETPORT/GETADDR and NSM SM_NOTIFY bodies.
//! - [`statd`]: the statd directory (`state`, `sm/`, `sm.bak/`) in nfs-utils' formats.
//! - [`notify`]: concurrent SM_NOTIFY to every recorded client.
//! - [`knobs`]: the kernel's proc files, under a configurable proc root.
//! - [`release`], [`grace`]: lock release on the old server, grace set/end on the new one.
//! - [`locks`], [`ledger`], [`mount_mark`]: `/proc/locks` parsing, the lock ledger, and the mount
//!   a final ledger was taken on.
//! - [`scope`], [`kmsg`]: the NFSv4 server scope nfsd starts with, and what its start logged.
//! - [`v4state`]: NFSv4 clients and lock stateids from /proc/fs/nfsd/clients.
//! - [`v4grace`]: waiting for the kernel to end NFSv4 grace, ending it at a deadline.
//! - [`tracker`]: nfsdcld's NFSv4 client database, checked read-only before nfsd starts.

#[cfg(any(test, feature = "testing"))]
pub mod fake_proc;
pub mod grace;
pub mod kmsg;
pub mod knobs;
pub mod ledger;
pub mod locks;
pub mod mount_mark;
pub mod notify;
pub mod nsm;
pub mod release;
pub mod rpc;
pub mod scope;
pub mod statd;
pub mod tracker;
pub mod v4grace;
pub mod v4state;
pub mod xdr;
