//! The systemd side: the notifications mmpd sends (READY=1 only after the claim, STATUS= with
//! the sequence, WATCHDOG=1 only while healthy, STOPPING=1), received on a datagram socket
//! standing in for systemd's NOTIFY_SOCKET, and the unit template checked by systemd-analyze.

use test_support::prelude::*;

use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MMPD: &str = env!("CARGO_BIN_EXE_mmpd");

/// Every datagram received, with when it arrived.
fn drain(sock: &UnixDatagram, into: &mut Vec<(Duration, String)>, t0: Instant) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        into.push((
            t0.elapsed(),
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        ));
    }
}

/// A datagram socket standing in for systemd's NOTIFY_SOCKET (non-blocking reads), beside the
/// image.
fn notify_socket(img: &Image) -> (PathBuf, UnixDatagram) {
    let path = img.file("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_nonblocking(true).unwrap();
    (path, sock)
}

#[test]
fn file_notifications_follow_the_claim_and_the_health() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let (sock_path, sock) = notify_socket(&img);
    let run = img.file("run");
    let t0 = Instant::now();
    // systemd sets WATCHDOG_PID to the main pid: exec from a shell that knows it.
    let mut d = Proc::spawn(
        Path::new("/bin/sh"),
        &[
            "-c",
            "WATCHDOG_PID=$$ exec \"$0\" \"$@\"",
            MMPD,
            "--run-dir",
            run.to_str().unwrap(),
            "--fence",
            "command",
            "--fence-command",
            "sleep 3",
            img.path.to_str().unwrap(),
        ],
        img.file("mmpd.log"),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let mut msgs = Vec::new();
    let ready = wait_for(Duration::from_secs(25), || {
        drain(&sock, &mut msgs, t0);
        msgs.iter().any(|(_, m)| m.contains("READY=1"))
    });
    assert!(ready, "no READY=1: {msgs:?}\n{}", d.log());
    let (ready_at, ready_msg) = msgs
        .iter()
        .find(|(_, m)| m.contains("READY=1"))
        .cloned()
        .unwrap();
    // Only after the claim (9 s for a clean block), and it says what is held.
    assert!(ready_at >= Duration::from_secs(9), "{ready_at:?}");
    assert!(
        ready_msg.contains("STATUS=") && ready_msg.contains("holding seq 0x"),
        "{ready_msg}"
    );
    assert!(
        msgs.iter()
            .any(|(t, m)| *t < ready_at && m.contains("STATUS=claiming")),
        "{msgs:?}"
    );
    // WATCHDOG=1 every WatchdogSec/2 = 1 s while healthy.
    std::thread::sleep(Duration::from_millis(3500));
    drain(&sock, &mut msgs, t0);
    let pets = msgs
        .iter()
        .filter(|(t, m)| *t > ready_at && m.contains("WATCHDOG=1"))
        .count();
    assert!((2..=5).contains(&pets), "{pets} pets in 3.5 s: {msgs:?}");
    // A fence stops the pets (systemd would then kill and restart nothing: Restart=no).
    write_foreign(&img.path, 0x0BAD_0005, "intruder");
    assert!(d.wait_log("FENCING", Duration::from_secs(5)), "{}", d.log());
    drain(&sock, &mut msgs, t0);
    let fenced_at = t0.elapsed();
    std::thread::sleep(Duration::from_millis(2000));
    drain(&sock, &mut msgs, t0);
    assert!(
        !msgs
            .iter()
            .any(|(t, m)| *t > fenced_at && m.contains("WATCHDOG=1")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|(_, m)| m.contains("STATUS=FENCED")),
        "{msgs:?}"
    );
    // The fence command (sleep 3) finishes, then mmpd exits 1.
    assert_eq!(d.wait_code(Duration::from_secs(10)), Some(1), "{}", d.log());
}

#[test]
fn file_stopping_is_sent_on_sigterm() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let (sock_path, sock) = notify_socket(&img);
    let t0 = Instant::now();
    let mut d = Proc::spawn(
        Path::new(MMPD),
        &[
            "--run-dir",
            img.file("run").to_str().unwrap(),
            img.path.to_str().unwrap(),
        ],
        img.file("mmpd.log"),
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    // SIGTERM during the claim: STOPPING=1, nothing left written (CLEAN restored), exit 0.
    std::thread::sleep(Duration::from_secs(3));
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_code(Duration::from_secs(10)), Some(0), "{}", d.log());
    let mut msgs = Vec::new();
    drain(&sock, &mut msgs, t0);
    assert!(
        msgs.iter().any(|(_, m)| m.contains("STOPPING=1")),
        "{msgs:?}"
    );
    assert!(!msgs.iter().any(|(_, m)| m.contains("READY=1")), "{msgs:?}");
    assert_eq!(
        read_block(&img.path).mmp_seq,
        libmmp::ondisk::mmp::EXT4_MMP_SEQ_CLEAN
    );
}

#[test]
fn unit_template_passes_systemd_analyze_and_its_command_line_parses() {
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("mmpd@.service"))
        .unwrap();
    for needle in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(needle), "mmpd@.service lacks {needle}");
    }
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let args: Vec<String> = exec
        .split_whitespace()
        .map(|a| a.replace("%i", "shared"))
        .collect();
    assert_eq!(args[0], "/usr/sbin/mmpd");
    use clap::Parser;
    let cli = mmpd::cli::Cli::try_parse_from(&args).expect("ExecStart parses");
    assert_eq!(
        cli.config.as_deref(),
        Some(Path::new("/etc/mmpd/shared.toml"))
    );

    // The systemd-analyze part (Debian package systemd).
    if !require_tools(&["systemd-analyze"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mmpd@.service"),
        unit.replace("/usr/sbin/mmpd", MMPD),
    )
    .unwrap();
    std::os::unix::fs::symlink("mmpd@.service", dir.path().join("mmpd@t.service")).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("mmpd@t.service"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("mmpd@"), "systemd-analyze complains: {text}");
}

/// A service manager that reads nothing: its notify queue is full before mmpd starts. mmpd's
/// notifications are then dropped (and logged), never waited for, so it beats and fences as
/// usual. With a blocking send (the sd-notify crate's) the READY=1 after the claim stopped
/// the main loop: no heartbeat after the claim and no fence (found by tests/soak.rs, whose
/// harness first read the socket only until READY).
#[test]
fn file_a_full_notify_socket_never_stops_the_heartbeat_or_the_fence() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let (sock_path, _sock) = notify_socket(&img);
    let filler = UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    let mut queued = 0;
    while filler.send_to(b"STATUS=filler\n", &sock_path).is_ok() {
        queued += 1;
        assert!(queued < 100_000, "the queue never filled");
    }
    let mut d = Proc::spawn(
        Path::new(MMPD),
        &[
            "--run-dir",
            img.file("run").to_str().unwrap(),
            "--fence",
            "command",
            "--fence-command",
            "sleep 3",
            img.path.to_str().unwrap(),
        ],
        img.file("mmpd.log"),
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    assert!(
        d.wait_log("claimed: holding the device", Duration::from_secs(25)),
        "{}",
        d.log()
    );
    // Beats go on past READY=1 and several STATUS= lines (one every 5 s), all dropped.
    let first = read_block(&img.path).mmp_seq;
    std::thread::sleep(Duration::from_secs(7));
    let later = read_block(&img.path).mmp_seq;
    assert_ne!(first, later, "no heartbeat after the claim\n{}", d.log());
    assert!(
        d.log().contains("notify socket is full"),
        "the drop is not logged\n{}",
        d.log()
    );
    write_foreign(&img.path, 0x0BAD_0005, "intruder");
    assert!(d.wait_log("FENCING", Duration::from_secs(5)), "{}", d.log());
    assert_eq!(d.wait_code(Duration::from_secs(10)), Some(1), "{}", d.log());
}
