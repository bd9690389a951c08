//! The mmpd soak (issue 17): ONE mmpd holding many loop devices (direct I/O) for a long time
//! while a competing load writes and reads another file on the same disk. Root only (skips
//! otherwise; fails under CI=true).
//!
//! Environment: `SOAK_DEVICES` (default 20), `SOAK_SECS` (held time after READY, default 45),
//! `SOAK_LOAD` (the competing I/O, default on; `0`, `off` or `false` turn it off). CI runs the
//! defaults; `scripts/soak.sh --devices 200 --minutes 30` runs the long one (release build).
//!
//! Devices: 4 MiB ext4 images (`-O mmp,^has_journal -E mmp_update_interval=1`), each on its
//! own loop device with `--direct-io=on`, all in one temporary directory with the load's file.
//! mmpd runs at `--interval 1 --fail-intervals 5` with the `command` fence, whose command only
//! appends the device and reason to a file. READY comes from a NOTIFY_SOCKET as under systemd,
//! and the test keeps reading that socket as systemd does: mmpd sends a STATUS= line every 5 s
//! with a blocking send from its main loop, so a socket nobody reads fills up (10 datagrams,
//! `net.unix.max_dgram_qlen`) and then stops mmpd's main loop, heartbeats and fence checks
//! included. The first 200-device run found this (every device stopped at about 60 s, mmpd in
//! `unix_wait_for_peer`, no fence); the gap assertion prints mmpd's threads and their wchan.
//!
//! Asserted:
//! - mmpd is alive at the end and never fenced: the fence command never ran, no `FENCING` in
//!   its log; then SIGTERM releases every device (exit 0, every block CLEAN).
//! - no device's block is seen unchanged for [`GAP_BOUND`] = interval x fail-intervals = 5 s or
//!   longer by another node's reader (soak/observer.rs: "unchanged" is a lower bound of the real
//!   gap, so a slow observer cannot fail the test). 5 s is the check interval mmpd publishes in
//!   the block, its promise that it never goes that long without writing; the kernel's reader
//!   (and `mmp-tool check`) calls a block dead only after 2 x 5 + 1 = 11 s, so the bound is
//!   under half of that. Blocks unchanged for over two intervals (a beat certainly missing)
//!   are counted and reported as "missed beats", not asserted: they are what the soak measures.
//! - every read saw our node name and a valid checksum.
//! - VmRSS at the end is at most [`rss_limit`] of VmRSS at READY: +10 % or +2 MiB, whichever
//!   is larger (room for allocator noise, e.g. an I/O thread started after READY with its
//!   stack and malloc arena; a leak of 8 bytes per beat would add 2.9 MiB in 30 minutes at 200
//!   devices).
//!
//! At the end it prints a summary and one line `SOAK_SUMMARY {json}`.

mod soak {
    pub mod load;
    pub mod observer;
}

use soak::load::{self, Load};
use soak::observer::{self, Gaps};
use test_support::prelude::*;

use libmmp::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MMPD: &str = env!("CARGO_BIN_EXE_mmpd");
const NODE: &str = "soak";
const INTERVAL: Duration = Duration::from_secs(1);
const FAIL_INTERVALS: u32 = 5;
/// The asserted bound on a gap (see the module comment).
const GAP_BOUND: Duration = Duration::from_secs(5);
/// A beat certainly missing: a block seen unchanged for longer than two intervals.
const MISSED_BEAT: Duration = Duration::from_secs(2);
/// 200 claims run in parallel (9 s each for a clean block); allow for a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(180);
const SAMPLE_EVERY: Duration = Duration::from_secs(60);

struct Settings {
    devices: usize,
    secs: u64,
    load: bool,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        let load = std::env::var("SOAK_LOAD").unwrap_or_default();
        Settings {
            devices: env_or("SOAK_DEVICES", 20),
            secs: env_or("SOAK_SECS", 45),
            load: !matches!(load.as_str(), "0" | "off" | "false"),
        }
    }
}

/// Everything the soak made. Fields drop in this order: mmpd is killed (if still running),
/// then the loop devices are detached, then the directory with the images is removed.
struct Rig {
    mmpd: Proc,
    notify: UnixDatagram,
    devs: Vec<PathBuf>,
    _loops: Vec<Loop>,
    dir: tempfile::TempDir,
}

impl Rig {
    fn new(n: usize) -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let loops: Vec<Loop> = (0..n).map(|i| device(dir.path(), i)).collect();
        let devs: Vec<PathBuf> = loops.iter().map(|l| l.dev.clone()).collect();
        let sock = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&sock).expect("bind the notify socket");
        notify.set_nonblocking(true).unwrap();
        let mmpd = start_mmpd(dir.path(), &devs, &sock);
        Rig {
            mmpd,
            notify,
            devs,
            _loops: loops,
            dir,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Read what mmpd sent to NOTIFY_SOCKET, as systemd does: a datagram socket nobody reads
    /// fills up, and then mmpd's send blocks (see the module comment).
    fn drain_notify(&self, into: &mut String) {
        let mut buf = [0u8; 65536];
        while let Ok(n) = self.notify.recv(&mut buf) {
            into.push_str(&String::from_utf8_lossy(&buf[..n]));
            into.push('\n');
        }
    }

    /// Wait for READY=1; panics with the log if mmpd exits or takes too long.
    fn wait_ready(&mut self) {
        let mut seen = String::new();
        let ready = wait_for(READY_WITHIN, || {
            self.drain_notify(&mut seen);
            seen.contains("READY=1") || self.mmpd.try_code().is_some()
        });
        let log = self.mmpd.log();
        assert!(ready && seen.contains("READY=1"), "no READY=1:\n{log}");
    }
}

/// Image `i` (4 MiB ext4 with MMP, interval 1) on a loop device with direct I/O.
fn device(dir: &Path, i: usize) -> Loop {
    let img = dir.join(format!("d{i:04}.img"));
    let opts = ["-O", "mmp,^has_journal", "-E", "mmp_update_interval=1"];
    mkfs_ext4(&img, 4 << 20, &opts);
    Loop::attach_with(&img, &["--direct-io=on"])
}

fn start_mmpd(dir: &Path, devs: &[PathBuf], sock: &Path) -> Proc {
    let marker = dir.join("fenced");
    let cmd = format!(
        "echo \"$MMPD_DEVICE $MMPD_REASON\" >> '{}'",
        marker.display()
    );
    let (interval, fail) = (INTERVAL.as_secs().to_string(), FAIL_INTERVALS.to_string());
    let run = dir.join("run").display().to_string();
    let mut args = vec![
        "--run-dir",
        &run,
        "--node-name",
        NODE,
        "--interval",
        &interval,
    ];
    args.extend(["--fail-intervals", &fail, "--fence", "command"]);
    args.extend(["--fence-command", &cmd]);
    args.extend(devs.iter().map(|d| d.to_str().expect("UTF-8 device path")));
    let env = [
        ("NOTIFY_SOCKET", sock.to_str().unwrap()),
        ("RUST_LOG", "info"),
    ];
    Proc::spawn(Path::new(MMPD), &args, dir.join("mmpd.log"), &env)
}

/// mmpd's resident size and CPU time at one moment.
#[derive(Clone, Copy, serde::Serialize)]
struct Sample {
    at_s: f64,
    rss_kib: u64,
    cpu_s: f64,
}

/// utime + stime (fields 14 and 15 of /proc/PID/stat, after the command in parentheses).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Clock ticks per second of /proc/PID/stat (USER_HZ).
fn clock_ticks() -> f64 {
    let out = run(Command::new("getconf").arg("CLK_TCK"));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0)
}

fn sample(pid: i32, t0: Instant, hz: f64) -> Sample {
    Sample {
        at_s: t0.elapsed().as_secs_f64(),
        rss_kib: rss_kib(pid),
        cpu_s: cpu_ticks(pid) as f64 / hz,
    }
}

/// Hold for `secs`: mmpd must stay up; a sample at the start, every minute and at the end.
fn hold(rig: &mut Rig, secs: u64) -> Vec<Sample> {
    let pid = rig.mmpd.child.id() as i32;
    let (t0, hz) = (Instant::now(), clock_ticks());
    let end = t0 + Duration::from_secs(secs);
    let mut samples = vec![sample(pid, t0, hz)];
    let mut next = t0 + SAMPLE_EVERY;
    while Instant::now() < end {
        std::thread::sleep(end.saturating_duration_since(Instant::now()).min(INTERVAL));
        rig.drain_notify(&mut String::new());
        let code = rig.mmpd.try_code();
        assert_eq!(code, None, "mmpd exited:\n{}", rig.mmpd.log());
        if Instant::now() >= next {
            samples.push(sample(pid, t0, hz));
            next += SAMPLE_EVERY;
        }
    }
    samples.push(sample(pid, t0, hz));
    samples
}

/// Sets the flag when dropped, so the threads of a scope stop also when the test panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The held time with the observer and (if on) the load running beside it.
fn soak(rig: &mut Rig, s: &Settings, load: &Load) -> (Vec<Sample>, Gaps) {
    let stop = AtomicBool::new(false);
    let (devs, file) = (rig.devs.clone(), rig.file("load.bin"));
    std::thread::scope(|sc| {
        let _stop = StopOnDrop(&stop);
        let obs = sc.spawn(|| observer::observe(&devs, NODE, &stop));
        if s.load {
            sc.spawn(|| load::write(&file, &stop, load));
            sc.spawn(|| load::read(&file, &stop, load));
        }
        let samples = hold(rig, s.secs);
        stop.store(true, Ordering::Relaxed);
        (samples, obs.join().expect("observer"))
    })
}

/// Never fenced: the fence command never ran and the log never says FENCING.
fn assert_never_fenced(rig: &Rig) {
    let fenced = std::fs::read_to_string(rig.file("fenced")).unwrap_or_default();
    let log = rig.mmpd.log();
    assert!(fenced.is_empty(), "fence command ran: {fenced}\n{log}");
    assert!(!log.contains("FENCING"), "{log}");
}

/// SIGTERM: exit 0 and every block CLEAN.
fn release(rig: &mut Rig) {
    rig.mmpd.signal(Signal::SIGTERM);
    let code = rig.mmpd.wait_code(Duration::from_secs(60));
    assert_eq!(code, Some(0), "release:\n{}", rig.mmpd.log());
    for d in &rig.devs {
        assert_eq!(read_block(d).mmp_seq, EXT4_MMP_SEQ_CLEAN, "{}", d.display());
    }
}

/// RSS allowed at the end: +10 % or +2 MiB over READY, whichever is larger.
fn rss_limit(ready_kib: u64) -> u64 {
    ready_kib + (ready_kib / 10).max(2048)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The figures of one soak, printed and emitted as the `SOAK_SUMMARY` JSON line.
#[derive(serde::Serialize)]
struct Summary {
    devices: usize,
    held_s: f64,
    load: bool,
    gap_bound_s: f64,
    max_unchanged_s: f64,
    worst_device: String,
    unchanged_p50_p99_p999_s: [f64; 3],
    between_p50_p99_p999_max_s: [f64; 4],
    gaps: u64,
    missed_beats: u64,
    devices_with_missed_beat: usize,
    observer_reads: u64,
    bad_reads: u64,
    observer_max_pass_s: f64,
    rss_kib_ready: u64,
    rss_kib_end: u64,
    rss_kib_max: u64,
    cpu_s_per_min: f64,
    load_written_bytes: u64,
    load_read_bytes: u64,
    heartbeat_failed: usize,
    io_not_returned: usize,
    samples: Vec<Sample>,
}

impl Summary {
    fn new(log: &str, s: &Settings, samples: &[Sample], gaps: &Gaps, load: &Load) -> Self {
        let (first, last) = (samples[0], samples[samples.len() - 1]);
        let (worst_device, worst) = gaps.worst();
        let minutes = (last.at_s - first.at_s) / 60.0;
        Summary {
            devices: s.devices,
            held_s: last.at_s,
            load: s.load,
            gap_bound_s: secs(GAP_BOUND),
            max_unchanged_s: secs(worst),
            worst_device,
            unchanged_p50_p99_p999_s: [0.5, 0.99, 0.999].map(|q| secs(gaps.unchanged.quantile(q))),
            between_p50_p99_p999_max_s: [0.5, 0.99, 0.999, 1.0]
                .map(|q| secs(gaps.between.quantile(q))),
            gaps: gaps.unchanged.count(),
            missed_beats: gaps.unchanged.longer_than(MISSED_BEAT),
            devices_with_missed_beat: gaps.devices_over(MISSED_BEAT).len(),
            observer_reads: gaps.reads,
            bad_reads: gaps.bad,
            observer_max_pass_s: secs(gaps.max_pass),
            rss_kib_ready: first.rss_kib,
            rss_kib_end: last.rss_kib,
            rss_kib_max: samples.iter().map(|x| x.rss_kib).max().unwrap_or(0),
            cpu_s_per_min: (last.cpu_s - first.cpu_s) / minutes.max(1e-9),
            load_written_bytes: load.written.load(Ordering::Relaxed),
            load_read_bytes: load.read.load(Ordering::Relaxed),
            heartbeat_failed: log.matches("MMP heartbeat failed").count(),
            io_not_returned: log.matches("I/O has not returned").count(),
            samples: samples.to_vec(),
        }
    }

    fn print(&self) {
        let m = self;
        eprintln!(
            "soak: {} devices held {:.0} s, competing load {}",
            m.devices, m.held_s, m.load
        );
        let (u, b) = (m.unchanged_p50_p99_p999_s, m.between_p50_p99_p999_max_s);
        eprintln!(
            "soak: block unchanged at most {:.3} s ({}); p50 {:.2} s, p99 {:.2} s, p99.9 {:.2} s \
             over {} gaps; {} missed beats (unchanged > {MISSED_BEAT:?}) on {} devices",
            m.max_unchanged_s,
            m.worst_device,
            u[0],
            u[1],
            u[2],
            m.gaps,
            m.missed_beats,
            m.devices_with_missed_beat
        );
        eprintln!(
            "soak: between first sightings p50 {:.2} s, p99 {:.2} s, p99.9 {:.2} s, max {:.2} s",
            b[0], b[1], b[2], b[3]
        );
        eprintln!(
            "soak: VmRSS KiB ready {} end {} max {}; CPU {:.3} s per minute; \
             heartbeat failed {}, I/O not returned {}",
            m.rss_kib_ready,
            m.rss_kib_end,
            m.rss_kib_max,
            m.cpu_s_per_min,
            m.heartbeat_failed,
            m.io_not_returned
        );
        eprintln!(
            "soak: load wrote {} MiB, read {} MiB; observer {} reads, {} bad, longest pass {:.3} s",
            m.load_written_bytes >> 20,
            m.load_read_bytes >> 20,
            m.observer_reads,
            m.bad_reads,
            m.observer_max_pass_s
        );
        println!("SOAK_SUMMARY {}", serde_json::to_string(self).unwrap());
    }
}

/// Each thread of `pid`: name, state and where it waits in the kernel (for a stuck mmpd).
fn threads(pid: i32) -> String {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    let field = |t: &Path, f: &str| std::fs::read_to_string(t.join(f)).unwrap_or_default();
    tasks
        .flatten()
        .map(|t| {
            let (t, stat) = (t.path(), field(&t.path(), "stat"));
            let state = stat.rsplit(") ").next().unwrap_or("").split(' ').next();
            let comm = field(&t, "comm");
            format!(
                "{} {} {}\n",
                comm.trim(),
                state.unwrap_or("?"),
                field(&t, "wchan")
            )
        })
        .collect()
}

fn assert_gaps(gaps: &Gaps, pid: i32) {
    let over = gaps.devices_over(GAP_BOUND);
    let (n, stack) = (over.len(), threads(pid));
    let first: Vec<_> = over.iter().take(5).collect();
    assert!(over.is_empty(), "{n} devices with gaps over {GAP_BOUND:?}, e.g. {first:?}; mmpd's threads (name, state, wchan):\n{stack}");
    let bad = &gaps.bad_examples;
    assert_eq!(gaps.bad, 0, "bad reads, e.g. {bad:?}");
}

fn assert_rss_flat(samples: &[Sample]) {
    let (ready, end) = (samples[0].rss_kib, samples[samples.len() - 1].rss_kib);
    let limit = rss_limit(ready);
    assert!(
        end <= limit,
        "VmRSS grew from {ready} KiB to {end} KiB (limit {limit})"
    );
}

#[test]
fn loop_soak_one_mmpd_holds_many_devices_under_competing_io() {
    if !require_loop_devices() {
        return;
    }
    let s = Settings::from_env();
    let mut rig = Rig::new(s.devices);
    rig.wait_ready();
    let load = Load::default();
    let (samples, gaps) = soak(&mut rig, &s, &load);
    Summary::new(&rig.mmpd.log(), &s, &samples, &gaps, &load).print();
    assert_never_fenced(&rig);
    assert_gaps(&gaps, rig.mmpd.child.id() as i32);
    assert_rss_flat(&samples);
    release(&mut rig);
}
