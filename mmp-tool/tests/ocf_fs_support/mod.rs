//! What the `mmp-fs` agent tests share: the agent run directly (through an `mmp-fs` symlink to
//! the built mmp-tool; the mmpd it started is killed on drop), the agent installed for
//! Pacemaker's tools in a test-only provider directory (removed on drop), an ext4 MMP image on a
//! loop device with its mount point, and for holder=mmpd an xfs image and an MMP area seen by
//! one or more "hosts" (loop devices of their own over the same images).
#![allow(dead_code)] // each test binary uses a different subset

use libmmp::ocf::worker::PidFile;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use test_support::ocf::{code_and_text, OcfAgents};
use test_support::prelude::*;

pub const TOOL: &str = env!("CARGO_BIN_EXE_mmp-tool");

/// What every test of the agent needs: root, loop devices, e2fsprogs, mount and fuser.
pub fn require_agent_tools() -> bool {
    require_loop_devices() && require_tools(&["fuser"])
}

/// The agent as Pacemaker's executor runs it: `mmp-fs ACTION` with `OCF_RESKEY_*`.
pub struct Agent {
    dir: tempfile::TempDir,
    pub path: PathBuf,
    /// The agent's state directory ($MMP_HA_STATE_DIR): mmpd's pid file and log.
    pub state: PathBuf,
}

impl Agent {
    pub fn new() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mmp-fs");
        std::os::unix::fs::symlink(TOOL, &path).unwrap();
        let state = dir.path().join("state");
        Agent { dir, path, state }
    }

    /// The command for `action`, with the parameters, a 60 s timeout and our state directory.
    pub fn command(&self, action: &str, params: &[(&str, &str)]) -> Command {
        self.command_via(Command::new(&self.path), action, params)
    }

    /// [`Agent::command`] on a command that runs the agent (`base`: e.g. `nsenter ... AGENT`).
    pub fn command_via(&self, mut c: Command, action: &str, params: &[(&str, &str)]) -> Command {
        c.arg(action)
            .env("MMP_HA_STATE_DIR", &self.state)
            .env("OCF_RESKEY_CRM_meta_timeout", "60000")
            .env("OCF_RESOURCE_INSTANCE", "fs-test");
        for (k, v) in params {
            c.env(format!("OCF_RESKEY_{k}"), v);
        }
        c
    }

    /// Run `action`: the exit code and stdout + stderr.
    pub fn run(
        &self,
        action: &str,
        params: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> (i32, String) {
        let mut c = self.command(action, params);
        c.envs(env.iter().copied());
        code_and_text(&run(&mut c))
    }

    /// The pid files of the workers this agent started (mmpd's), whether they still run or not.
    pub fn pid_files(&self) -> Vec<PathBuf> {
        let entries = std::fs::read_dir(&self.state)
            .into_iter()
            .flatten()
            .flatten();
        entries
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pid"))
            .collect()
    }

    /// The pid of the mmpd this agent started, from its pid file.
    pub fn mmpd_pid(&self) -> u32 {
        let file = self.pid_files().pop().expect("mmpd's pid file");
        let text = std::fs::read_to_string(file).unwrap();
        text.split_whitespace().next().unwrap().parse().unwrap()
    }
}

/// The workers the agent started and the test left running (an assertion failed before the
/// stop) are killed by their pid file (pid and start time, so never another process).
impl Drop for Agent {
    fn drop(&mut self) {
        for path in self.pid_files() {
            let _ =
                PidFile { path }.stop(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
        }
    }
}

/// Whether `pid` is a live process.
pub fn alive(pid: u32) -> bool {
    libmmp::ocf::worker::start_time(pid).is_some()
}

impl Default for Agent {
    fn default() -> Self {
        Agent::new()
    }
}

/// The agent installed where Pacemaker looks, as `ocf:mmp-ha-test-PID-TAG:mmp-fs`; the
/// directory is removed on drop, also when the test fails.
pub struct Provider(OcfAgents);

impl Provider {
    pub fn install(tag: &str) -> Provider {
        Provider(OcfAgents::provider(tag, TOOL, &["mmp-fs"]))
    }

    /// The symlink's path.
    pub fn agent(&self) -> PathBuf {
        self.0.path("mmp-fs")
    }

    /// `crm_resource OP...` on mmp-fs: its exit code (the OCF code) and output.
    pub fn crm(&self, op: &[&str], params: &[(&str, &str)], env: &[(&str, &str)]) -> (i32, String) {
        self.0.crm("mmp-fs", op, params, env)
    }
}

/// An ext4 MMP image (update interval 1) on a loop device, with a mount point and mmpd's run
/// directory; whatever the agent mounted there is unmounted on drop.
pub struct Ext4Fixture {
    pub _guard: Mount,
    pub lp: Loop,
    pub img: Image,
    pub mnt: PathBuf,
    pub run_dir: PathBuf,
}

impl Ext4Fixture {
    pub fn new() -> Ext4Fixture {
        let img = Image::new();
        let lp = Loop::attach(&img.path);
        let mnt = img.file("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        Ext4Fixture {
            _guard: Mount::guard(&mnt),
            lp,
            mnt,
            run_dir: img.file("run"),
            img,
        }
    }

    pub fn device(&self) -> &str {
        self.lp.dev.to_str().unwrap()
    }

    pub fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("device", self.device().to_string()),
            ("directory", self.mnt.to_str().unwrap().to_string()),
            ("run_dir", self.run_dir.to_str().unwrap().to_string()),
        ]
    }

    pub fn mounted(&self) -> bool {
        test_support::mount::is_mountpoint(&self.mnt)
    }
}

impl Default for Ext4Fixture {
    fn default() -> Self {
        Ext4Fixture::new()
    }
}

/// `[(k, v)]` borrowed, for [`Agent::run`] and [`Provider::crm`].
pub fn borrow<'a>(params: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    params.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// mmpd as cargo builds it, beside mmp-tool (`cargo test --workspace` builds both).
pub fn mmpd() -> Option<PathBuf> {
    let p = Path::new(TOOL).parent()?.join("mmpd");
    p.is_file().then_some(p)
}

/// What a holder=mmpd test needs besides [`require_agent_tools`]: mkfs.xfs and mmpd.
pub fn require_mmpd_test() -> bool {
    require_agent_tools()
        && require_tools(&["mkfs.xfs"])
        && require(mmpd().is_some(), "mmpd is not built (cargo build -p mmpd)")
}

/// An xfs image and an MMP area image (made by `mmp-tool format-area`), and host `a`'s view of
/// them; [`MmpdFixture::host`] makes another host's.
pub struct MmpdFixture {
    pub a: MmpdHost,
    pub dir: tempfile::TempDir,
}

/// One host: its own loop devices over the two images, mount point and mmpd run directory;
/// whatever the agent mounted there is unmounted on drop.
pub struct MmpdHost {
    _guard: Mount,
    pub xfs: Loop,
    pub area: Loop,
    pub mnt: PathBuf,
    pub run_dir: PathBuf,
}

impl MmpdFixture {
    pub fn new() -> MmpdFixture {
        let dir = tempfile::tempdir().unwrap();
        let xfs_img = dir.path().join("xfs.img");
        test_support::image::sparse_file(&xfs_img, 320 << 20);
        run_ok(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&xfs_img));
        let area_img = dir.path().join("area.img");
        test_support::image::sparse_file(&area_img, 1 << 20);
        let a = MmpdFixture::host_in(dir.path(), "a");
        run_ok(
            Command::new(TOOL)
                .args(["format-area", "--run-dir"])
                .arg(&a.run_dir)
                .arg(&a.area.dev),
        );
        MmpdFixture { a, dir }
    }

    /// Host `label`'s view (mnt-LABEL, run-LABEL).
    pub fn host(&self, label: &str) -> MmpdHost {
        MmpdFixture::host_in(self.dir.path(), label)
    }

    fn host_in(dir: &Path, label: &str) -> MmpdHost {
        let mnt = dir.join(format!("mnt-{label}"));
        std::fs::create_dir(&mnt).unwrap();
        MmpdHost {
            _guard: Mount::guard(&mnt),
            xfs: Loop::attach(&dir.join("xfs.img")),
            area: Loop::attach(&dir.join("area.img")),
            mnt,
            run_dir: dir.join(format!("run-{label}")),
        }
    }
}

impl Default for MmpdFixture {
    fn default() -> Self {
        MmpdFixture::new()
    }
}

impl MmpdHost {
    /// The agent's parameters for this host (holder=mmpd, fence=exit).
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let s = |p: &Path| p.to_str().unwrap().to_string();
        vec![
            ("device", s(&self.xfs.dev)),
            ("directory", s(&self.mnt)),
            ("fstype", "xfs".into()),
            ("holder", "mmpd".into()),
            ("area_device", s(&self.area.dev)),
            ("fence", "exit".into()),
            ("run_dir", s(&self.run_dir)),
        ]
    }

    pub fn mounted(&self) -> bool {
        test_support::mount::is_mountpoint(&self.mnt)
    }
}
