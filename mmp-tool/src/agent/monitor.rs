//! monitor (a probe when the interval is 0): mounted here or not; at OCF_CHECK_LEVEL 10 the MMP
//! block is ours and alive; at 20 a status file in the mount point is written and read back.
//!
//! NOT_RUNNING only when the device is surely not mounted on the directory here (also when the
//! device does not exist on this node: a probe there must not fail).

use super::mmpd;
use super::mounts::{self, MountState};
use super::params::{Config, Holder};
use super::validate::device_error;
use super::{generic, Res};
use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ocf::{Env, Outcome, Status};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub fn monitor(cfg: &Config, env: &Env) -> Res {
    match mounts::state(cfg)? {
        MountState::Here => {}
        other => return not_mounted(cfg, other),
    }
    if env.check_level >= 10 {
        match &cfg.holder {
            Holder::Ext4 => kmmpd_writes(cfg)?,
            Holder::Mmpd(m) => mmpd::check_holding(cfg, m).map_err(generic)?,
        }
    }
    if env.check_level >= 20 {
        status_file(cfg, &env.instance)?;
    }
    Ok(())
}

/// Not mounted here. With holder=mmpd, an mmpd still holding the area means a start or stop
/// was cut short: not "stopped", so Pacemaker runs a stop, which ends it.
fn not_mounted(cfg: &Config, state: MountState) -> Res {
    if let MountState::Other(why) = &state {
        tracing::info!("not mounted here: {why}");
    }
    if let Holder::Mmpd(m) = &cfg.holder {
        if mmpd::running(m) {
            return Err(generic(format!(
                "mmpd holds {} but {} is not mounted on {} (an interrupted start or stop): stop the resource",
                m.area.display(),
                cfg.device.display(),
                cfg.directory.display()
            )));
        }
    }
    Err(Outcome {
        status: Status::NotRunning,
        reason: None,
    })
}

/// holder=ext4: kmmpd on this node writes the block: it names this node, and its sequence
/// moves within two update intervals (plus a second for a busy kmmpd).
fn kmmpd_writes(cfg: &Config) -> Res {
    let fs = MmpFs::open_path(&cfg.device, Access::ReadOnly).map_err(device_error)?;
    let first = read(&fs)?;
    let interval = Duration::from_secs(u64::from(fs.superblock().s_mmp_update_interval.max(1)));
    let until = Instant::now() + 2 * interval + Duration::from_secs(1);
    std::thread::sleep(interval);
    loop {
        let now = read(&fs)?;
        if now.mmp_seq != first.mmp_seq {
            return ours(cfg, &now);
        }
        if Instant::now() >= until {
            return Err(generic(format!(
                "{}: the MMP sequence {:#010x} did not change for {} s although it is mounted here: kmmpd is not writing it (I/O errors? see the kernel log)",
                cfg.device.display(),
                first.mmp_seq,
                (2 * interval + Duration::from_secs(1)).as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn read(fs: &MmpFs<Device>) -> Res<libmmp::ondisk::mmp::MmpBlock> {
    fs.read_mmp_raw().map(|(b, _)| b).map_err(device_error)
}

/// The block names this node, as kmmpd writes it (the host name).
fn ours(cfg: &Config, blk: &libmmp::ondisk::mmp::MmpBlock) -> Res {
    let me = libmmp::host::identity::nodename();
    if blk.nodename() == me {
        return Ok(());
    }
    Err(generic(format!(
        "{}: mounted here, but its MMP block is written by node '{}' (device '{}'), not by this node '{me}': another node has it too; stop it here at once",
        cfg.device.display(),
        blk.nodename(),
        blk.bdevname()
    )))
}

/// Depth 20: write `.mmp-fs_status/NODE` in the mount point, sync it, drop it from the page
/// cache and read it back (as Filesystem's `.Filesystem_status/` check does).
fn status_file(cfg: &Config, instance: &str) -> Res {
    let dir = cfg.directory.join(".mmp-fs_status");
    let path = dir.join(libmmp::host::identity::nodename());
    let text = format!("{instance} {}\n", libmmp::protocol::clock::wall_now());
    let fail = |what: &str, e: std::io::Error| {
        generic(format!(
            "status file {}: {what} failed: {e}",
            path.display()
        ))
    };
    std::fs::create_dir_all(&dir).map_err(|e| fail("mkdir", e))?;
    let mut f = std::fs::File::create(&path).map_err(|e| fail("create", e))?;
    f.write_all(text.as_bytes()).map_err(|e| fail("write", e))?;
    f.sync_all().map_err(|e| fail("fsync", e))?;
    drop(f);
    let mut f = std::fs::File::open(&path).map_err(|e| fail("open", e))?;
    let _ = nix::fcntl::posix_fadvise(
        f.as_raw_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    let mut back = String::new();
    f.read_to_string(&mut back).map_err(|e| fail("read", e))?;
    if back != text {
        return Err(generic(format!(
            "status file {}: read back {back:?}, wrote {text:?}",
            path.display()
        )));
    }
    Ok(())
}
