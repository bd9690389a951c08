//! Long-running processes an agent starts and later stops (mmpd for `mmp-fs holder=mmpd`, the
//! ledger recorder of `nfs-locks`), tracked by a pid file in the agent's state directory.
//!
//! The pid file holds the pid and the process's start time (field 22 of `/proc/PID/stat`), so
//! a pid reused by an unrelated process after a crash or reboot is never taken for the worker
//! (and never signalled). The worker runs in its own process group, so Pacemaker killing a
//! timed-out agent's group does not kill a worker that was already started; the next `start`
//! finds it through the pid file, and `stop` stops it by pid.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A worker's pid file.
#[derive(Debug, Clone)]
pub struct PidFile {
    pub path: PathBuf,
}

/// A process recorded in a pid file and still alive (same pid, same start time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    pub pid: u32,
    pub start_time: u64,
}

/// The start time of a live `pid` in clock ticks since boot (`/proc/PID/stat` field 22);
/// None if there is no such process or it has exited (a zombie waiting for its parent).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(rest.next()?, "Z" | "X") {
        return None;
    }
    rest.nth(18)?.parse().ok()
}

impl PidFile {
    pub fn new(dir: &Path, name: &str) -> PidFile {
        PidFile {
            path: dir.join(format!("{name}.pid")),
        }
    }

    /// The recorded worker, if it is still the same process.
    pub fn running(&self) -> Option<Running> {
        let text = fs::read_to_string(&self.path).ok()?;
        let mut it = text.split_whitespace();
        let pid: u32 = it.next()?.parse().ok()?;
        let start: u64 = it.next()?.parse().ok()?;
        (start_time(pid)? == start).then_some(Running {
            pid,
            start_time: start,
        })
    }

    /// Start `cmd` detached (own process group, stdin from /dev/null, output appended to
    /// `log`) and record it. The file is written through a rename, so a reader sees a whole
    /// record or none.
    pub fn spawn(&self, cmd: &mut Command, log: &Path) -> io::Result<Running> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let pid = child.id();
        // Not waited for here: the worker outlives the agent and is reaped by init.
        drop(child);
        let start = start_time(pid)
            .ok_or_else(|| io::Error::other(format!("worker pid {pid} exited at once")))?;
        let tmp = self.path.with_extension("pid.tmp");
        fs::write(&tmp, format!("{pid} {start}\n"))?;
        fs::rename(&tmp, &self.path)?;
        Ok(Running {
            pid,
            start_time: start,
        })
    }

    /// Send `signal` to the recorded worker and wait up to `wait` for it to exit. Ok(true):
    /// it is gone (or was not running); Ok(false): still running after `wait`.
    pub fn stop(&self, signal: Signal, wait: Duration) -> io::Result<bool> {
        let Some(r) = self.running() else {
            let _ = fs::remove_file(&self.path);
            return Ok(true);
        };
        kill(Pid::from_raw(r.pid as i32), signal).map_err(io::Error::from)?;
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.running().is_none() {
                let _ = fs::remove_file(&self.path);
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_track_and_stop_a_worker() {
        let dir = tempfile::tempdir().unwrap();
        let pf = PidFile::new(dir.path(), "w");
        assert_eq!(pf.running(), None);
        let r = pf
            .spawn(Command::new("sleep").arg("30"), &dir.path().join("w.log"))
            .unwrap();
        assert_eq!(pf.running(), Some(r));
        assert!(pf.stop(Signal::SIGTERM, Duration::from_secs(5)).unwrap());
        assert_eq!(pf.running(), None);
        assert!(!pf.path.exists());
    }

    #[test]
    fn a_reused_pid_is_not_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        let pf = PidFile::new(dir.path(), "w");
        // Our own pid with a wrong start time: alive, but not the recorded process.
        let me = std::process::id();
        let t = start_time(me).unwrap();
        fs::write(&pf.path, format!("{me} {}\n", t + 1)).unwrap();
        assert_eq!(pf.running(), None);
        assert!(pf.stop(Signal::SIGTERM, Duration::from_millis(10)).unwrap());
    }
}
