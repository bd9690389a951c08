//! Who this host is: the node name written into MMP blocks, and the boot it is in.
//!
//! The one place every binary (mmp-tool, mmpd, lockd-recover, lock-torture) reads the host name.

use std::io;

/// `/proc/sys/kernel/random/boot_id`: a random UUID the kernel draws at each boot.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// What a node name stands in for when the host name cannot be read (gethostname(2) does not
/// fail on Linux, but a name must be written all the same).
pub const UNKNOWN_NODENAME: &str = "(unknown)";

/// Reading this host's identity failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("reading the boot id from {BOOT_ID_PATH}: {0}")]
    ReadBootId(#[source] io::Error),
    #[error("{BOOT_ID_PATH} holds {0:?}, not a UUID")]
    BadBootId(String),
}

/// This host's name (`uname -n`), as the kernel writes `init_utsname()->nodename` into
/// `mmp_nodename` and e2fsprogs' `ext2fs_mmp_start` writes `gethostname()`.
pub fn nodename() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| UNKNOWN_NODENAME.to_string())
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`, 36 characters): it changes when the host
/// reboots, so a record tagged with it tells a reset holder from a live one.
pub fn boot_id() -> Result<String, IdentityError> {
    let raw = std::fs::read_to_string(BOOT_ID_PATH).map_err(IdentityError::ReadBootId)?;
    parse_boot_id(&raw)
}

fn parse_boot_id(raw: &str) -> Result<String, IdentityError> {
    let id = raw.trim();
    let is_uuid = id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if is_uuid {
        Ok(id.to_string())
    } else {
        Err(IdentityError::BadBootId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_name_is_the_host_name() {
        let n = nodename();
        assert!(!n.is_empty());
        // The UTS namespace's name, which /proc also shows.
        let proc = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(n, proc.trim_end());
    }

    #[test]
    fn boot_ids_are_uuids() {
        let id = boot_id().unwrap();
        assert_eq!(id, boot_id().unwrap(), "stable within a boot");
        assert!(parse_boot_id("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n").is_ok());
        assert!(matches!(
            parse_boot_id("not a uuid"),
            Err(IdentityError::BadBootId(_))
        ));
        assert!(parse_boot_id("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fz").is_err());
    }
}
