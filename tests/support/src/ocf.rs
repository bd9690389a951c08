//! OCF resource agents under test, linked to a built binary the way the package installs them
//! (the binary dispatches on the link's name): in a temporary directory for running them
//! directly, or in a test-only provider directory `/usr/lib/ocf/resource.d/mmp-ha-test-PID-TAG`
//! for Pacemaker's tools (`crm_resource`, whose agent path is fixed at build time) and
//! `ocf-tester` (which runs some actions as `nobody`: the directory is world-readable). The
//! provider directory is removed on drop, also when an assertion fails; nothing else under
//! /usr/lib/ocf is touched.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Pacemaker looks for OCF agents (`PCMK__OCF_RA_PATH`).
pub const OCF_RA_DIR: &str = "/usr/lib/ocf/resource.d";

/// Agents linked to one binary.
pub struct OcfAgents {
    /// The provider name, when installed where Pacemaker looks.
    pub provider: Option<String>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl OcfAgents {
    /// `agents` linked to `binary` in a temporary directory.
    pub fn temp(binary: &str, agents: &[&str]) -> OcfAgents {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        link(&dir, binary, agents);
        OcfAgents {
            provider: None,
            dir,
            _tmp: Some(t),
        }
    }

    /// `agents` linked to `binary` as the provider `mmp-ha-test-PID-TAG`.
    pub fn provider(tag: &str, binary: &str, agents: &[&str]) -> OcfAgents {
        let name = format!("mmp-ha-test-{}-{tag}", std::process::id());
        let dir = Path::new(OCF_RA_DIR).join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let a = OcfAgents {
            provider: Some(name),
            dir,
            _tmp: None,
        };
        link(&a.dir, binary, agents);
        a
    }

    /// The agent's path (the link).
    pub fn path(&self, agent: &str) -> PathBuf {
        self.dir.join(agent)
    }

    /// `crm_resource OP... --class ocf --provider P --agent AGENT --option k=v ...`: its exit
    /// code (crm_resource exits with the agent's OCF code) and stdout + stderr. `env` reaches
    /// the agent (crm_resource passes its environment on).
    pub fn crm(
        &self,
        agent: &str,
        op: &[&str],
        params: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> (i32, String) {
        let provider = self
            .provider
            .as_deref()
            .expect("crm needs OcfAgents::provider");
        let mut c = Command::new("crm_resource");
        c.args(op)
            .args(["--class", "ocf", "--provider", provider, "--agent", agent]);
        for (k, v) in params {
            c.arg("--option").arg(format!("{k}={v}"));
        }
        c.envs(env.iter().copied());
        code_and_text(&crate::cmd::run(&mut c))
    }
}

impl Drop for OcfAgents {
    fn drop(&mut self) {
        if self.provider.is_some() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn link(dir: &Path, binary: &str, agents: &[&str]) {
    for a in agents {
        symlink(binary, dir.join(a)).unwrap();
    }
}

/// An agent's (or crm_resource's) exit code and its stdout + stderr, for assertions.
pub fn code_and_text(o: &Output) -> (i32, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}
