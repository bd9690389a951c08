//! What is on a device, according to libblkid: so "this is xfs, not ext4" is a clear answer.

use std::path::Path;

/// libblkid's view of a device.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// `TYPE`: ext2, ext3, ext4, xfs, btrfs, swap, LVM2_member, ...; `None` if nothing known.
    pub fs_type: Option<String>,
    pub uuid: Option<String>,
    pub label: Option<String>,
    /// libblkid found more than one signature (e.g. a stale xfs signature under ext4).
    pub ambivalent: bool,
}

impl Identity {
    /// What libblkid sees, in a few words for a message: the type, or "several conflicting
    /// signatures" when it found more than one; `None` when it recognises nothing.
    pub fn describe(&self) -> Option<String> {
        match (&self.fs_type, self.ambivalent) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => Some("several conflicting signatures".to_string()),
            (None, false) => None,
        }
    }
}

/// Probe `path` with libblkid's safe probe (superblocks chain). Read-only. Errors are folded
/// into an empty identity: probing only improves messages, it never decides safety.
pub fn identify(path: &Path) -> Identity {
    let Ok(prober) = blkid::prober::Prober::new_from_filename(path) else {
        return Identity::default();
    };
    if prober.enable_superblocks(true).is_err() {
        return Identity::default();
    }
    match prober.do_safe_probe() {
        Ok(blkid::prober::ProbeState::Success) => Identity {
            fs_type: prober.lookup_value("TYPE").ok(),
            uuid: prober.lookup_value("UUID").ok(),
            label: prober.lookup_value("LABEL").ok().filter(|l| !l.is_empty()),
            ambivalent: false,
        },
        Ok(blkid::prober::ProbeState::Ambivalent) => Identity {
            ambivalent: true,
            ..Identity::default()
        },
        _ => Identity::default(),
    }
}
