//! Kernel mounts and frozen filesystems, undone on drop.

use crate::image::mkfs_ext4;
use crate::loopdev::Loop;
use crate::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A mount that failed: mount's message and how long the kernel took to refuse (an MMP
/// refusal comes only after the kernel's wait).
#[derive(Debug, thiserror::Error)]
#[error("mount {dev} on {dir} failed after {elapsed:?}: {stderr}")]
pub struct MountFailed {
    pub dev: PathBuf,
    pub dir: PathBuf,
    pub stderr: String,
    pub elapsed: Duration,
}

/// A mount; unmounted on drop (with the loop device and directories it owns, if any).
pub struct Mount {
    pub dir: PathBuf,
    // Dropped after the unmount in `Drop::drop`, in this order: the device, then its image.
    _loop: Option<Loop>,
    _owned: Vec<tempfile::TempDir>,
}

impl Mount {
    /// `mount ARGS DEV DIR` (DIR is created).
    pub fn new(dev: &Path, dir: &Path, args: &[&str]) -> Result<Mount, MountFailed> {
        std::fs::create_dir_all(dir).unwrap();
        let t = Instant::now();
        let out = crate::cmd::run(Command::new("mount").args(args).arg(dev).arg(dir));
        if !out.status.success() {
            return Err(MountFailed {
                dev: dev.to_path_buf(),
                dir: dir.to_path_buf(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                elapsed: t.elapsed(),
            });
        }
        Ok(Mount::guard(dir))
    }

    /// Unmount on drop whatever is mounted at `dir` (mounted by a program under test).
    pub fn guard(dir: &Path) -> Mount {
        Mount {
            dir: dir.to_path_buf(),
            _loop: None,
            _owned: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A fresh tmpfs mounted on a temporary directory (needs root).
    pub fn tmpfs() -> Result<Mount, Error> {
        let dir = tempfile::tempdir().map_err(Error::io("tempdir"))?;
        crate::cmd::try_run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64m", "mmp-test"])
                .arg(dir.path()),
        )?;
        let mut m = Mount::guard(dir.path());
        m._owned.push(dir);
        Ok(m)
    }

    /// A fresh ext4 image of `size_mb` MiB on a loop device, mounted on a temporary
    /// directory (needs root, e2fsprogs and loop devices).
    pub fn ext4_loop(size_mb: u64) -> Result<Mount, Error> {
        let image_dir = tempfile::tempdir().map_err(Error::io("tempdir"))?;
        let image = image_dir.path().join("ext4.img");
        mkfs_ext4(&image, size_mb << 20, &[]);
        let lp = Loop::attach(&image);
        let dir = tempfile::tempdir().map_err(Error::io("tempdir"))?;
        // From here on Drop detaches the device even if the mount fails.
        let mut m = Mount::guard(dir.path());
        m._owned.extend([dir, image_dir]);
        let mut mount = Command::new("mount");
        mount.args(["-t", "ext4"]).arg(&lp.dev).arg(&m.dir);
        m._loop = Some(lp);
        crate::cmd::try_run(&mut mount)?;
        Ok(m)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Only unmount what is mounted at our own directory; a filesystem that is briefly
        // busy (a process of the test still exiting) gets a few more tries.
        for _ in 0..50 {
            if !is_mountpoint(&self.dir) {
                break;
            }
            let ok = Command::new("umount")
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// `mount -t ext4 DEV DIR`: the mount, or why the kernel refused and after how long.
pub fn kernel_mount(dev: &Path, dir: &Path) -> Result<Mount, MountFailed> {
    Mount::new(dev, dir, &["-t", "ext4"])
}

/// Whether `p` is a mount point in this mount namespace (/proc/self/mountinfo field 5).
pub fn is_mountpoint(p: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = p.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_ref()))
}

/// `fsfreeze -f DIR`: every write to the filesystem blocks until the thaw on drop (drop it
/// before the processes it blocks are killed, or they stay in D state).
pub struct Frozen(PathBuf);

impl Frozen {
    pub fn new(mnt: &Path) -> Frozen {
        crate::cmd::run_ok(Command::new("fsfreeze").arg("-f").arg(mnt));
        Frozen(mnt.to_path_buf())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.0).status();
    }
}
