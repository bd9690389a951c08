//! A network namespace with real Debian rpcbind and rpc.statd, as NSM peers for tests.
//!
//! Layout: a holder process (`sleep`) is started with
//! `ip netns exec NS unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /run; ...'`,
//! so it owns the network namespace (lo up; all of 127.0.0.0/8 answers) and a private mount
//! namespace whose /run is a fresh tmpfs. rpcbind, rpc.statd, sm-notify and lockd-recover are
//! then run with `nsenter -t HOLDER -m -n`. The private /run is what lets this coexist with a
//! host rpcbind: rpcbind's AF_LOCAL socket /run/rpcbind.sock and its warm-start files in
//! /run/rpcbind are filesystem paths, which a network namespace alone does not separate
//! (statd registers through that socket, so it would reach the host rpcbind). Everything is
//! killed by pid and the namespace deleted in `Drop`, also when a test fails.

use crate::netns::Netns;
use crate::require::{cannot_run, have, is_root};
use crate::Error;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why namespace tests cannot run here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("not running as root".into());
    }
    let tools = [
        "ip",
        "unshare",
        "nsenter",
        "rpcbind",
        "rpc.statd",
        "sm-notify",
        "rpcinfo",
    ];
    let missing: Vec<&str> = tools.into_iter().filter(|t| !have(t)).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{missing:?} not installed (Debian packages: iproute2, util-linux, rpcbind, nfs-common)"
        )
    })
}

/// The lab, or None after [`cannot_run`] (skip; a failure under CI=true).
pub fn lab_or_skip() -> Option<Lab> {
    if let Some(why) = missing_prerequisite() {
        cannot_run(&why);
        return None;
    }
    match Lab::new() {
        Ok(l) => Some(l),
        Err(e) => {
            cannot_run(&format!("cannot set up the namespace lab: {e}"));
            None
        }
    }
}

pub struct Lab {
    pub dir: tempfile::TempDir,
    holder: Option<Child>,
    /// (label, child) in start order; killed in reverse.
    procs: Vec<(String, Child)>,
    // Dropped last: the namespace goes after every process in it.
    netns: Netns,
}

impl Lab {
    fn new() -> Result<Self, Error> {
        let mut lab = Lab {
            dir: tempfile::tempdir().map_err(Error::io("tempdir"))?,
            holder: None,
            procs: Vec::new(),
            netns: Netns::new("lrt")?,
        };
        let holder = lab
            .netns
            .exec("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs tmpfs /run && mkdir -p /run/rpcbind && exec sleep 3600")
            .stdin(Stdio::null())
            .spawn()
            .map_err(Error::io("cannot start the namespace holder"))?;
        let pid = holder.id();
        lab.holder = Some(holder);
        // The holder execs its way to `sleep` only after the tmpfs is mounted.
        lab.wait_for("namespace holder", || {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "sleep")
        })?;
        Ok(lab)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        self.netns.name()
    }

    pub fn holder_pid(&self) -> u32 {
        self.holder.as_ref().map_or(0, Child::id)
    }

    /// A command that runs inside the namespace (network and mount).
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder_pid().to_string())
            .args(["-m", "-n", "--"])
            .arg(program);
        c
    }

    fn spawn(&mut self, label: &str, mut c: Command) -> Result<(), Error> {
        let what = format!("log of {label}");
        let log = std::fs::File::create(self.log_path(label)).map_err(Error::io(&what))?;
        let child = c
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(Error::io(&what))?)
            .stderr(log)
            .spawn()
            .map_err(Error::io(format!("cannot start {label}")))?;
        self.procs.push((label.to_owned(), child));
        Ok(())
    }

    pub fn log_path(&self, label: &str) -> PathBuf {
        self.dir.path().join(format!("{label}.log"))
    }

    pub fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.log_path(label)).unwrap_or_default()
    }

    fn wait_for(&self, what: &str, ok: impl FnMut() -> bool) -> Result<(), Error> {
        if crate::spawn::wait_for(Duration::from_secs(10), ok) {
            Ok(())
        } else {
            Err(Error::Timeout {
                what: format!("{what} coming up"),
                secs: 10,
            })
        }
    }

    fn rpcinfo(&self) -> String {
        self.cmd("rpcinfo")
            .args(["-p", "127.0.0.1"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    pub fn start_rpcbind(&mut self) -> Result<(), Error> {
        let mut c = self.cmd("rpcbind");
        c.args(["-f", "-w"]);
        self.spawn("rpcbind", c)?;
        self.wait_for("rpcbind", || self.rpcinfo().contains("portmapper"))
    }

    /// Starts rpc.statd on `state_dir` (created with sm/ and sm.bak/), logging debug output
    /// and running an HA callout that appends "sm-notify MON_NAME SENDER_IP STATE" lines to
    /// `callout.log` for every SM_NOTIFY it receives.
    pub fn start_statd(&mut self, state_dir: &Path) -> Result<(), Error> {
        for d in ["sm", "sm.bak"] {
            let p = state_dir.join(d);
            std::fs::create_dir_all(&p).map_err(Error::io(p.display().to_string()))?;
        }
        let callout = self.dir.path().join("callout.sh");
        let script = format!(
            "#!/bin/sh\necho \"$@\" >> {}\n",
            self.callout_log().display()
        );
        std::fs::write(&callout, script).map_err(Error::io("write callout.sh"))?;
        std::fs::set_permissions(
            &callout,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(Error::io("chmod callout.sh"))?;
        let mut c = self.cmd("rpc.statd");
        c.args(["-F", "-d", "-L", "-P"])
            .arg(state_dir)
            .arg("-H")
            .arg(&callout);
        self.spawn("statd", c)?;
        self.wait_for("rpc.statd", || self.rpcinfo().contains("status"))
    }

    pub fn callout_log(&self) -> PathBuf {
        self.dir.path().join("callout.log")
    }

    /// Lines "sm-notify MON_NAME SENDER_IP STATE" seen by the peer statd so far.
    pub fn notifies(&self) -> Vec<(String, String, i32)> {
        std::fs::read_to_string(self.callout_log())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4 && f[0] == "sm-notify").then(|| {
                    (
                        f[1].to_owned(),
                        f[2].to_owned(),
                        f[3].parse().unwrap_or(i32::MIN),
                    )
                })
            })
            .collect()
    }

    /// Waits until the callout log holds at least `n` notifications (statd runs the callout
    /// asynchronously after replying).
    pub fn wait_notifies(&self, n: usize) -> Vec<(String, String, i32)> {
        self.wait_notifies_until(|v| v.len() >= n)
    }

    /// Waits until the callout log names at least `n` different mon_names: a retransmission
    /// (a reply slower than the retry interval on a loaded machine) logs a name twice.
    pub fn wait_distinct_notifies(&self, n: usize) -> Vec<(String, String, i32)> {
        self.wait_notifies_until(|v| {
            v.iter()
                .map(|(m, _, _)| m.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                >= n
        })
    }

    fn wait_notifies_until(
        &self,
        done: impl Fn(&[(String, String, i32)]) -> bool,
    ) -> Vec<(String, String, i32)> {
        let t0 = Instant::now();
        loop {
            let v = self.notifies();
            if done(&v) || t0.elapsed() > Duration::from_secs(20) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in self.procs.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut h) = self.holder.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}
