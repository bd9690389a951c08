//! Processes started by a test: killed by pid on drop if still running, so a failing test
//! leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A process started by a test, its stdout and stderr in a log file; killed by pid on drop if
/// still running. It runs with `RUST_LOG=debug` and without systemd's notify variables.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub status: Option<ExitStatus>,
}

impl Proc {
    /// mmpd (`program`) as one "host" of a test: node name `node`, its own run directory, the
    /// exit fence, `extra` options, holding `dev`; its output in `log`.
    pub fn mmpd(
        program: &Path,
        run_dir: &Path,
        node: &str,
        dev: &Path,
        extra: &[&str],
        log: PathBuf,
    ) -> Self {
        let run = run_dir.to_str().expect("a UTF-8 run directory");
        let mut args = vec!["--run-dir", run, "--node-name", node, "--fence", "exit"];
        args.extend_from_slice(extra);
        args.push(dev.to_str().expect("a UTF-8 device path"));
        Proc::spawn(program, &args, log, &[])
    }

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
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
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

/// Run `c` with stdout and stderr captured, killing it if it outlives `timeout`.
pub fn run_with_timeout(mut c: Command, timeout: Duration) -> Output {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {c:?}: {e}"));
    wait_output(child, timeout)
}

/// The output of a child started with piped stdout/stderr; killed (and the test failed) if it
/// outlives `timeout`.
pub fn wait_output(mut child: Child, timeout: Duration) -> Output {
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            None => {
                let pid = child.id();
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "process {pid} did not finish within {timeout:?}; stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
