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

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn have(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(cmd).is_file()
}

/// Returns why namespace tests cannot run here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    for c in [
        "ip",
        "unshare",
        "nsenter",
        "rpcbind",
        "rpc.statd",
        "sm-notify",
        "rpcinfo",
    ] {
        if !have(c) {
            return Some(format!(
                "{c} not installed (Debian packages: iproute2, util-linux, rpcbind, nfs-common)"
            ));
        }
    }
    None
}

/// Skips (returns None) when the lab cannot run, except under CI=true where that is a failure.
pub fn lab_or_skip(test: &str) -> Option<Lab> {
    if let Some(why) = missing_prerequisite() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: namespace test cannot run under CI=true: {why}");
        }
        eprintln!("SKIP {test}: {why}");
        return None;
    }
    match Lab::new() {
        Ok(l) => Some(l),
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: cannot set up the namespace lab under CI=true: {e}");
            }
            eprintln!("SKIP {test}: cannot set up the namespace lab: {e}");
            None
        }
    }
}

pub struct Lab {
    pub name: String,
    pub dir: tempfile::TempDir,
    holder: Option<Child>,
    /// (label, child) in start order; killed in reverse.
    procs: Vec<(String, Child)>,
    ns_created: bool,
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out)
}

impl Lab {
    fn new() -> Result<Self, String> {
        let name = format!(
            "lrt-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut lab = Lab {
            name: name.clone(),
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            holder: None,
            procs: Vec::new(),
            ns_created: false,
        };
        run(Command::new("ip").args(["netns", "add", &name]))?;
        lab.ns_created = true;
        run(Command::new("ip").args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"]))?;
        let holder = Command::new("ip")
            .args([
                "netns",
                "exec",
                &name,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
            ])
            .arg("mount -t tmpfs tmpfs /run && mkdir -p /run/rpcbind && exec sleep 3600")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the namespace holder: {e}"))?;
        let pid = holder.id();
        lab.holder = Some(holder);
        // The holder execs its way to `sleep` only after the tmpfs is mounted.
        let t0 = Instant::now();
        loop {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("namespace holder did not come up".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(lab)
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

    fn spawn(&mut self, label: &str, mut c: Command) -> Result<(), String> {
        let log = std::fs::File::create(self.log_path(label)).map_err(|e| e.to_string())?;
        let child = c
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {label}: {e}"))?;
        self.procs.push((label.to_owned(), child));
        Ok(())
    }

    pub fn log_path(&self, label: &str) -> PathBuf {
        self.dir.path().join(format!("{label}.log"))
    }

    pub fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.log_path(label)).unwrap_or_default()
    }

    fn wait_for(&self, what: &str, mut ok: impl FnMut() -> bool) -> Result<(), String> {
        let t0 = Instant::now();
        while !ok() {
            if t0.elapsed() > Duration::from_secs(10) {
                return Err(format!("{what} did not come up within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn rpcinfo(&self) -> String {
        self.cmd("rpcinfo")
            .args(["-p", "127.0.0.1"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    pub fn start_rpcbind(&mut self) -> Result<(), String> {
        let mut c = self.cmd("rpcbind");
        c.args(["-f", "-w"]);
        self.spawn("rpcbind", c)?;
        self.wait_for("rpcbind", || self.rpcinfo().contains("portmapper"))
    }

    /// Starts rpc.statd on `state_dir` (created with sm/ and sm.bak/), logging debug output
    /// and running an HA callout that appends "sm-notify MON_NAME SENDER_IP STATE" lines to
    /// `callout.log` for every SM_NOTIFY it receives.
    pub fn start_statd(&mut self, state_dir: &Path) -> Result<(), String> {
        for d in ["sm", "sm.bak"] {
            std::fs::create_dir_all(state_dir.join(d)).map_err(|e| e.to_string())?;
        }
        let callout = self.dir.path().join("callout.sh");
        std::fs::write(
            &callout,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\n",
                self.callout_log().display()
            ),
        )
        .map_err(|e| e.to_string())?;
        std::fs::set_permissions(
            &callout,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(|e| e.to_string())?;
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
        if self.ns_created {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}
