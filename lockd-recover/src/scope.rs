//! The NFSv4 server scope, which must be the same on every node that serves the export.
//!
//! nfsd copies the host name of the process that starts its threads into the server scope
//! and owner it sends in EXCHANGE_ID (`nfsd_svc()`: `strscpy(nn->nfsd_name,
//! utsname()->nodename, ...)`, `fs/nfsd/nfssvc.c`, since Linux 5.7). A v4.1+ client that sees
//! another scope after a failover sets SERVER_SCOPE_MISMATCH and reclaims without grace
//! (`nfs4_reclaim_lease()`, `fs/nfs/nfs4state.c`), so its locks are lost. nfs-utils >= 2.6.3
//! has `rpc.nfsd --scope`; Debian 12's rpc.nfsd 2.6.2 does not, so the scope is set the way
//! that option does it: the starting process enters a new UTS namespace and sets its host name
//! there (nfs-utils `utils/nfsd/nfsd.c`, resource-agents `heartbeat/nfsserver`
//! `nfs_server_scope`). Only that process and its children see the name.

use nix::sched::{unshare, CloneFlags};
use thiserror::Error;

/// `__NEW_UTS_LEN` (include/uapi/linux/utsname.h), the size of `nfsd_name` too.
pub const MAX_SCOPE_LEN: usize = 64;

#[derive(Debug, Error)]
pub enum ScopeError {
    #[error("scope {0:?} is not a valid host name: 1 to {MAX_SCOPE_LEN} bytes of letters, digits, '.', '-' or '_'")]
    Invalid(String),
    #[error("cannot enter a new UTS namespace (unshare CLONE_NEWUTS, needs CAP_SYS_ADMIN): {0}")]
    Unshare(#[source] nix::Error),
    #[error("cannot set the host name {scope:?} in the new UTS namespace: {source}")]
    SetHostname {
        scope: String,
        #[source]
        source: nix::Error,
    },
}

/// A scope must be a host name: the kernel copies it byte for byte, and clients compare it.
pub fn validate(scope: &str) -> Result<(), ScopeError> {
    let ok = !scope.is_empty()
        && scope.len() <= MAX_SCOPE_LEN
        && scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ScopeError::Invalid(scope.to_owned()))
    }
}

/// Moves this process (and the children it starts from now on) into a UTS namespace of its
/// own whose host name is `scope`. The rest of the system keeps its host name.
pub fn enter(scope: &str) -> Result<(), ScopeError> {
    validate(scope)?;
    unshare(CloneFlags::CLONE_NEWUTS).map_err(ScopeError::Unshare)?;
    nix::unistd::sethostname(scope).map_err(|source| ScopeError::SetHostname {
        scope: scope.to_owned(),
        source,
    })
}

/// This process's host name (its UTS namespace's).
pub fn current() -> String {
    libmmp::host::identity::nodename()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_host_names() {
        for ok in ["nfs-vip", "198.18.0.10", "nfs_1.example.org"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "x/y", "ü", &"x".repeat(65)] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }
}
