//! A real corosync + Pacemaker cluster of one live node, for tests of what our agents read from
//! Pacemaker (its fencing history, its CIB). `node1` runs here; `node2` is configured but never
//! joins, so Pacemaker fences it as soon as a device can (startup fencing), and records that.
//!
//! Everything runs in fresh namespaces made by `unshare --net --mount --uts --pid`: corosync
//! talks on that namespace's loopback only (127.0.0.1 and 127.0.0.2), Pacemaker's state
//! (/var/lib/pacemaker, /etc/corosync, /run, /dev/shm) is on tmpfs mounts seen only inside, and
//! /usr/sbin is an overlay so test fence agents can be installed there (fenced looks for
//! `fence_*` agents in /usr/sbin) without touching the host. Killing the namespace's init (on
//! drop) stops every daemon. Commands run inside with [`Cluster::cmd`] (`nsenter --all`).

use crate::cmd::try_run;
use crate::spawn::wait_for;
use crate::Error;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The script the namespace's init runs: mounts, corosync.conf, corosync, pacemakerd.
const BOOT: &str = r#"set -e
dir=$1
hostname node1
ip link set lo up
ip addr add 127.0.0.2/8 dev lo
for d in /etc/corosync /var/lib/pacemaker /var/lib/corosync /var/log/pacemaker /dev/shm /run; do
  mount -t tmpfs tmpfs "$d"
done
mkdir -p /var/lib/pacemaker/cib /var/lib/pacemaker/pengine /var/lib/pacemaker/blackbox /run/crm
chown -R hacluster:haclient /var/lib/pacemaker /var/log/pacemaker /run/crm
mkdir -p "$dir/overlay"
mount -t tmpfs tmpfs "$dir/overlay"
mkdir -p "$dir/overlay/upper" "$dir/overlay/work"
mount -t overlay overlay \
  -o "lowerdir=/usr/sbin,upperdir=$dir/overlay/upper,workdir=$dir/overlay/work" /usr/sbin
cat > /etc/corosync/corosync.conf <<'EOF'
totem {
  version: 2
  cluster_name: mmptest
  transport: knet
  crypto_cipher: none
  crypto_hash: none
  token: 1000
}
nodelist {
  node {
    ring0_addr: 127.0.0.1
    name: node1
    nodeid: 1
  }
  node {
    ring0_addr: 127.0.0.2
    name: node2
    nodeid: 2
  }
}
quorum {
  provider: corosync_votequorum
  two_node: 1
  wait_for_all: 0
}
logging {
  to_stderr: yes
  to_syslog: no
}
EOF
corosync -f > "$dir/corosync.log" 2>&1 &
sleep 1
pacemakerd -f > "$dir/pacemakerd.log" 2>&1 &
touch "$dir/booted"
while :; do sleep 3600; done
"#;

/// A fence agent after fence-agents' FenceAgentAPI (key=value lines on stdin): it logs every
/// request to $dir/fence-requests.log and reports success, like a power switch that worked.
const AGENT: &str = r#"#!/bin/sh
opts=$(cat)
echo "$opts" >> @DIR@/fence-requests.log
case "$opts" in
*action=metadata*) cat <<'EOF'
<?xml version="1.0" ?>
<resource-agent name="@NAME@" shortdesc="test power switch of mmp-ha's tests">
<parameters>
<parameter name="port" unique="0"><getopt mixed="-n"/><content type="string"/><shortdesc lang="en">port</shortdesc></parameter>
</parameters>
<actions><action name="on"/><action name="off"/><action name="reboot"/><action name="monitor"/>
<action name="metadata"/><action name="list"/><action name="status"/></actions>
</resource-agent>
EOF
;;
esac
exit 0
"#;

/// The running cluster; stopped and forgotten on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    unshare: Child,
    init: i32,
}

impl Cluster {
    /// Boot corosync and Pacemaker and wait until node1 is the DC (about 15 s here).
    pub fn start() -> Result<Cluster, Error> {
        let dir = tempfile::tempdir().map_err(Error::io("tempdir"))?;
        let unshare = Command::new("unshare")
            .args([
                "--net",
                "--mount",
                "--uts",
                "--pid",
                "--fork",
                "--mount-proc",
            ])
            .args(["--propagation", "private", "sh", "-c", BOOT, "boot"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::Spawn {
                cmd: "unshare".into(),
                source,
            })?;
        let mut c = Cluster {
            dir,
            unshare,
            init: 0,
        };
        c.init = c.find_init()?;
        if !wait_for(Duration::from_secs(90), || c.is_up()) {
            return Err(Error::Timeout {
                what: format!("Pacemaker electing node1 as DC ({})", c.logs()),
                secs: 90,
            });
        }
        Ok(c)
    }

    /// The namespace's init: unshare's only child, once the boot script has run.
    fn find_init(&self) -> Result<i32, Error> {
        let pid = self.unshare.id();
        let children = format!("/proc/{pid}/task/{pid}/children");
        let mut init = None;
        wait_for(Duration::from_secs(20), || {
            init = std::fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok());
            init.is_some() && self.dir.path().join("booted").exists()
        });
        init.ok_or(Error::Timeout {
            what: "the Pacemaker namespace booting".into(),
            secs: 20,
        })
    }

    fn is_up(&self) -> bool {
        self.sh("crm_mon -1 2>/dev/null")
            .map(|s| s.contains("Current DC: node1"))
            .unwrap_or(false)
    }

    /// A command that runs inside the cluster's namespaces (`nsenter --all`).
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.init.to_string(), "--all"]).arg(program);
        c
    }

    /// `sh -c SCRIPT` inside; its stdout.
    pub fn sh(&self, script: &str) -> Result<String, Error> {
        try_run(self.cmd("sh").args(["-c", script]))
    }

    /// Install a test fence agent named `agent` (a `fence_*` name, also an untrusted one such
    /// as `fence_sbd`: it is only a name here) and configure a stonith resource `id` of it
    /// that fences `node2`.
    pub fn add_fence_device(&self, id: &str, agent: &str) -> Result<(), Error> {
        let text = AGENT
            .replace("@DIR@", &self.dir.path().display().to_string())
            .replace("@NAME@", agent);
        let src = self.dir.path().join(agent);
        std::fs::write(&src, text).map_err(Error::io("write the fence agent"))?;
        self.sh(&format!(
            "install -m 0755 {} /usr/sbin/{agent}",
            src.display()
        ))?;
        let xml = format!(
            r#"<primitive id="{id}" class="stonith" type="{agent}"><instance_attributes id="{id}-ia"><nvpair id="{id}-hl" name="pcmk_host_list" value="node2"/></instance_attributes></primitive>"#
        );
        try_run(
            self.cmd("cibadmin")
                .args(["--create", "-o", "resources", "--xml-text"])
                .arg(xml),
        )?;
        let listed = wait_for(Duration::from_secs(30), || {
            self.sh("stonith_admin --list node2 --output-as=xml")
                .is_ok_and(|x| x.contains(&format!(">{id}<")))
        });
        listed.then_some(()).ok_or(Error::Timeout {
            what: format!("the fencer registering device {id} ({})", self.logs()),
            secs: 30,
        })
    }

    /// Remove stonith resource `id` from the CIB and wait until the fencer no longer lists it
    /// for node2.
    pub fn remove_fence_device(&self, id: &str) -> Result<(), Error> {
        let xml = format!(r#"<primitive id="{id}"/>"#);
        try_run(
            self.cmd("cibadmin")
                .args(["--delete", "-o", "resources", "--xml-text"])
                .arg(xml),
        )?;
        let gone = wait_for(Duration::from_secs(30), || {
            self.sh("stonith_admin --list node2 --output-as=xml")
                .is_ok_and(|x| !x.contains(&format!(">{id}<")))
        });
        gone.then_some(()).ok_or(Error::Timeout {
            what: format!("the fencer dropping device {id}"),
            secs: 30,
        })
    }

    /// `stonith_admin --reboot node2`: fence it now with the configured device(s).
    pub fn reboot_node2(&self) -> Result<(), Error> {
        self.sh("stonith_admin --reboot node2 --timeout 30")
            .map(|_| ())
    }

    /// Wait until Pacemaker has fenced node2 with a device (its startup fencing, once a device
    /// exists).
    pub fn wait_fenced_by_device(&self, limit: Duration) -> Result<(), Error> {
        let done = wait_for(limit, || {
            self.sh("stonith_admin --history node2 --verbose --output-as=xml")
                .map(|x| x.contains(r#"status="success" delegate="node1""#))
                .unwrap_or(false)
        });
        done.then_some(()).ok_or(Error::Timeout {
            what: format!("a device fencing node2 ({})", self.logs()),
            secs: limit.as_secs(),
        })
    }

    /// `stonith_admin --confirm node2`: a person says node2 is down.
    pub fn confirm_by_hand(&self) -> Result<(), Error> {
        self.sh("stonith_admin --confirm node2").map(|_| ())
    }

    /// The fence agent's request log (what Pacemaker asked the test device).
    pub fn fence_requests(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fence-requests.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn logs(&self) -> String {
        let tail = |f: &str| -> String {
            let p: PathBuf = self.dir.path().join(f);
            let s = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(5)..].join(" | ")
        };
        format!(
            "corosync: {}; pacemakerd: {}",
            tail("corosync.log"),
            tail("pacemakerd.log")
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGKILL to a pid namespace's init kills every process in it; the tmpfs and overlay
        // mounts go with its mount namespace.
        if self.init > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.init),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}
