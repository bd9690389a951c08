//! What this host knows about a device, in mmpd's run directory: whether a local mmpd holds
//! it, and the claim `mmp-tool claim` recorded for `mmp-tool release`. Shared by `claim`,
//! `release`, `mount`, `format-area` and `status`.

use libmmp::host::run_dir::{self, HolderState};
use libmmp::protocol::claim::Claimed;
use std::path::{Path, PathBuf};

/// `--run-dir`, or $MMPD_RUN_DIR, or /run/mmpd.
pub fn run_dir_or_default(dir: Option<&Path>) -> PathBuf {
    dir.map_or_else(run_dir::run_dir_from_env, Path::to_path_buf)
}

/// `--node-name`, or the host name.
pub fn node_name_or_host(name: Option<&str>) -> String {
    name.map_or_else(libmmp::host::identity::nodename, str::to_string)
}

/// Refuse when an mmpd on this host holds the device: writing under it would make it fence.
/// `Some(message)` is a refusal.
pub fn local_mmpd(run_dir: &Path, device: &Path) -> Option<String> {
    match run_dir::lock_holder(run_dir, device) {
        Ok(Some(pid)) => Some(format!(
            "{}: held by mmpd on this host{}; stop that mmpd (systemctl stop mmpd@NAME, or SIGTERM), which releases it",
            device.display(),
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        )),
        _ => None,
    }
}

fn record_path(run_dir: &Path, device: &Path) -> Option<PathBuf> {
    run_dir::device_key(device)
        .ok()
        .map(|k| run_dir.join(format!("{k}.claim")))
}

/// Record a won claim for `release` (best effort: a claim is valid without it).
pub fn record_claim(run_dir: &Path, device: &Path, c: &Claimed) {
    let st = HolderState {
        pid: std::process::id(),
        device: device.display().to_string(),
        state: Some(run_dir::HolderPhase::Claimed),
        node_name: c.block.nodename(),
        seq: c.block.mmp_seq,
        since: c.block.mmp_time,
        updated: c.block.mmp_time,
        check_interval: c.block.mmp_check_interval,
        ..Default::default()
    };
    let Some(path) = record_path(run_dir, device) else {
        return;
    };
    if let Err(e) =
        std::fs::create_dir_all(run_dir).and_then(|()| std::fs::write(&path, st.encode()))
    {
        tracing::warn!("cannot record the claim in {}: {e}", path.display());
    }
}

pub fn read_claim_record(run_dir: &Path, device: &Path) -> Option<HolderState> {
    let text = std::fs::read_to_string(record_path(run_dir, device)?).ok()?;
    Some(HolderState::decode(&text))
}

pub fn remove_claim_record(run_dir: &Path, device: &Path) {
    if let Some(p) = record_path(run_dir, device) {
        let _ = std::fs::remove_file(p);
    }
}
