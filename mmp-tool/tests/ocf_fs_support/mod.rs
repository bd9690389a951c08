//! What the `mmp-fs` agent tests share: the agent run directly (through an `mmp-fs` symlink to
//! the built mmp-tool), the agent installed for Pacemaker's tools in a test-only provider
//! directory (removed on drop), and an ext4 MMP image on a loop device with its mount point.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use test_support::prelude::*;

pub const TOOL: &str = env!("CARGO_BIN_EXE_mmp-tool");

/// What every test of the agent needs: root, loop devices, e2fsprogs, mount and fuser.
pub fn require_agent_tools() -> bool {
    require_loop_devices() && require_tools(&["fuser"])
}

fn describe_output(o: &Output) -> (i32, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
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
        let mut c = Command::new(&self.path);
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
        describe_output(&run(&mut c))
    }
}

impl Default for Agent {
    fn default() -> Self {
        Agent::new()
    }
}

/// The agent installed where Pacemaker looks, as `ocf:mmp-ha-test-PID-TAG:mmp-fs`; the
/// directory is removed on drop, also when the test fails.
pub struct Provider {
    pub name: String,
    dir: PathBuf,
}

impl Provider {
    pub fn install(tag: &str) -> Provider {
        let name = format!("mmp-ha-test-{}-{tag}", std::process::id());
        let dir = Path::new("/usr/lib/ocf/resource.d").join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let p = Provider { name, dir };
        std::os::unix::fs::symlink(TOOL, p.agent()).unwrap();
        p
    }

    /// The symlink's path.
    pub fn agent(&self) -> PathBuf {
        self.dir.join("mmp-fs")
    }

    /// `crm_resource OP... --class ocf --provider P --agent mmp-fs --option k=v ...`: its exit
    /// code (the OCF code) and output. `env` is passed on to the agent (crm_resource keeps its
    /// environment).
    pub fn crm(&self, op: &[&str], params: &[(&str, &str)], env: &[(&str, &str)]) -> (i32, String) {
        let mut c = Command::new("crm_resource");
        c.args(op).args([
            "--class",
            "ocf",
            "--provider",
            &self.name,
            "--agent",
            "mmp-fs",
        ]);
        for (k, v) in params {
            c.arg("--option").arg(format!("{k}={v}"));
        }
        c.envs(env.iter().copied());
        describe_output(&run(&mut c))
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
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
