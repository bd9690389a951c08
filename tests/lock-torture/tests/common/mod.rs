//! Helpers shared by the integration tests: running the binary, root-only fixtures that always
//! clean up, and the skip-or-fail rule (skip normally, FAIL when CI=true).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lock-torture")
}

pub fn cmd() -> Command {
    let mut c = Command::new(bin());
    c.env_remove("LD_PRELOAD").env("RUST_LOG", "warn");
    c
}

/// A test that cannot run here: skip with a message, but fail under CI=true.
pub fn cannot_run(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and this test cannot run: {why}");
    }
    eprintln!("SKIP: {why}");
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Run to completion, killing the child if it outlives `timeout`.
pub fn run(mut c: Command, timeout: Duration) -> Output {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lock-torture");
    wait_output(child, timeout)
}

pub fn wait_output(mut child: Child, timeout: Duration) -> Output {
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            None => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "lock-torture did not finish within {timeout:?}; stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A filesystem this test mounted; unmounted (and its loop device detached) on drop, also when
/// the test fails.
pub struct Mounted {
    pub dir: tempfile::TempDir,
    loopdev: Option<String>,
    _image_dir: Option<tempfile::TempDir>,
}

impl Mounted {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh tmpfs mounted on a temporary directory (needs root).
    pub fn tmpfs() -> Result<Mounted, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let p = dir
            .path()
            .to_str()
            .ok_or("non-UTF-8 temp path")?
            .to_string();
        sh(
            "mount",
            &["-t", "tmpfs", "-o", "size=64m", "lock-torture-test", &p],
        )?;
        Ok(Mounted {
            dir,
            loopdev: None,
            _image_dir: None,
        })
    }

    /// An ext4 image made with mkfs.ext4, attached with `losetup -f --show` and mounted (needs
    /// root, e2fsprogs and loop devices).
    pub fn ext4_loop(size_mb: u64) -> Result<Mounted, String> {
        let image_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = image_dir.path().join("ext4.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(size_mb << 20))
            .map_err(|e| format!("create {}: {e}", image.display()))?;
        let img = image.to_str().ok_or("non-UTF-8 temp path")?.to_string();
        sh("mkfs.ext4", &["-q", "-F", &img])?;
        let dev = sh("losetup", &["-f", "--show", &img])?;
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => {
                let _ = sh("losetup", &["-d", &dev]);
                return Err(e.to_string());
            }
        };
        let m = Mounted {
            dir,
            loopdev: Some(dev.clone()),
            _image_dir: Some(image_dir),
        };
        // From here on Drop detaches the device even if the mount fails.
        let p = m
            .dir
            .path()
            .to_str()
            .ok_or("non-UTF-8 temp path")?
            .to_string();
        sh("mount", &["-t", "ext4", &dev, &p])?;
        Ok(m)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let p = self.dir.path().to_path_buf();
        // Only unmount what is mounted at our own directory.
        if is_mountpoint(&p) {
            for _ in 0..50 {
                match sh("umount", &[p.to_str().unwrap_or_default()]) {
                    Ok(_) => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        if let Some(dev) = self.loopdev.take() {
            let _ = sh("losetup", &["-d", &dev]);
        }
    }
}

fn is_mountpoint(p: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = p.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_ref()))
}

/// Build the LD_PRELOAD shim that makes every lock call succeed without locking.
pub fn build_nolock_shim(out_dir: &Path) -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shim/nolock.c");
    let so = out_dir.join("libnolock.so");
    sh(
        "cc",
        &[
            "-shared",
            "-fPIC",
            "-O2",
            "-Wall",
            "-o",
            so.to_str().ok_or("non-UTF-8 temp path")?,
            src.to_str().ok_or("non-UTF-8 source path")?,
            "-ldl",
        ],
    )?;
    Ok(so)
}
