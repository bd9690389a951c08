//! Helpers for tests against real peers: image files, loop devices, kernel mounts, daemons.
//! Everything created is removed on drop (loop devices detached, mounts unmounted, processes
//! killed by pid). Shared with mmp-tool's tests through `#[path]`.
#![allow(dead_code)]

use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::mmp::MmpBlock;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn on_path(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

/// Skip (or fail under CI=true) when `what` is missing.
fn require(ok: bool, test: &str, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: cannot run: {what} (CI=true: this test must run)");
    }
    eprintln!("SKIPPED {test}: {what}");
    false
}

/// mkfs.ext4 is needed for every image.
pub fn can_make_images(test: &str) -> bool {
    require(
        on_path("mkfs.ext4"),
        test,
        "mkfs.ext4 not installed (e2fsprogs)",
    )
}

/// Root, loop devices, mount and e2fsprogs.
pub fn can_use_loop_devices(test: &str) -> bool {
    can_make_images(test)
        && require(
            nix::unistd::geteuid().is_root(),
            test,
            "needs root (loop devices, mount)",
        )
        && require(
            Path::new("/dev/loop-control").exists(),
            test,
            "no /dev/loop-control (loop driver)",
        )
        && require(
            on_path("losetup") && on_path("mount"),
            test,
            "losetup/mount not installed",
        )
}

/// Loop devices, mount, and `fsfreeze` (util-linux) to make a filesystem's writes hang.
pub fn can_freeze(test: &str) -> bool {
    can_use_loop_devices(test)
        && require(
            on_path("fsfreeze"),
            test,
            "fsfreeze not installed (util-linux)",
        )
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    out
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A 64 MiB ext4 image with MMP, update interval 1 (check interval 5: waits of 11 s).
pub struct Image {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Image {
    pub fn new() -> Self {
        Self::with_options(&["-b", "4096"])
    }

    pub fn with_options(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shared.img");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(64 << 20).unwrap();
        run_ok(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-O", "mmp", "-E", "mmp_update_interval=1"])
                .args(extra)
                .arg(&path),
        );
        Image { dir, path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A loop device over a file, detached on drop.
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    pub fn attach(file: &Path) -> Self {
        let dev = run_ok(Command::new("losetup").args(["-f", "--show"]).arg(file));
        Loop {
            dev: PathBuf::from(dev),
        }
    }

    /// `loop3` for `/dev/loop3`: the name in kernel messages.
    pub fn name(&self) -> String {
        self.dev.file_name().unwrap().to_string_lossy().into_owned()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        // `losetup -d` of a device that is still briefly busy (udev's blkid probe after a
        // umount) only sets autoclear: the detach happens later. Wait for it, so the next step
        // (or test) does not find the image still attached.
        if let Some(name) = self.dev.file_name() {
            let backing = std::path::Path::new("/sys/block")
                .join(name)
                .join("loop/backing_file");
            for _ in 0..100 {
                if !backing.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

/// A kernel mount, unmounted on drop.
pub struct Mounted {
    pub dir: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// `mount -t ext4 DEV DIR`: the mount on success, or mount's stderr and how long it took.
pub fn kernel_mount(dev: &Path, dir: &Path) -> Result<Mounted, (String, Duration)> {
    std::fs::create_dir_all(dir).unwrap();
    let t = Instant::now();
    let out = run(Command::new("mount").args(["-t", "ext4"]).arg(dev).arg(dir));
    if out.status.success() {
        Ok(Mounted {
            dir: dir.to_path_buf(),
        })
    } else {
        Err((
            String::from_utf8_lossy(&out.stderr).into_owned(),
            t.elapsed(),
        ))
    }
}

/// Kernel log lines mentioning `needle` (`dmesg`).
pub fn kernel_log_has(needle: &str, also: &str) -> bool {
    let out = run(&mut Command::new("dmesg"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.contains(needle) && l.contains(also))
}

/// The MMP block as it is now.
pub fn read_block(dev: &Path) -> MmpBlock {
    let fs = MmpFs::open(Device::open(dev, Access::ReadOnly).unwrap()).unwrap();
    fs.read_mmp_raw().unwrap().0
}

/// Another node's write: a block with a foreign sequence and node name, through `dev`.
pub fn write_foreign(dev: &Path, seq: u32, node: &str) {
    let fs = MmpFs::open(Device::open(dev, Access::ReadWrite).unwrap()).unwrap();
    fs.write_mmp_synced(&MmpBlock::new(seq, 0, node, "intruder", 5))
        .unwrap();
}

/// A process started by a test, killed by pid on drop if still running. Its stderr goes to
/// a file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub status: Option<std::process::ExitStatus>,
}

impl Proc {
    pub fn spawn(program: &Path, args: &[&str], log: PathBuf, env: &[(&str, &str)]) -> Self {
        let err = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(err.try_clone().unwrap())
            .stderr(err)
            .env("RUST_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Proc {
            child,
            log,
            status: None,
        }
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(self.pid(), sig);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit code if it has exited.
    pub fn try_code(&mut self) -> Option<i32> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status.map(|s| s.code().unwrap_or(-1))
    }

    /// Wait for the exit, at most `limit`.
    pub fn wait_code(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(c) = self.try_code() {
                return Some(c);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Wait until the log contains `needle` (or the process exits), at most `limit`.
    pub fn wait_log(&mut self, needle: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return true;
            }
            if self.try_code().is_some() {
                return self.log().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_code().is_none() {
            self.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Wait until `f` is true, at most `limit`.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
