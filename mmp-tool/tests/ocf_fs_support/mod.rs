//! What the `mmp-fs` agent tests share: the agent run directly (through an `mmp-fs` symlink to
//! the built mmp-tool), the agent installed for Pacemaker's tools in a test-only provider
//! directory (removed on drop), and an ext4 MMP image on a loop device with its mount point.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::process::Command;
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
