//! The mmpd that ships has no test watchdog (issue 12, defect 3a). This builds the binary
//! exactly as the package does (`cargo build --release -p mmpd`, in a target directory of its
//! own so that no feature enabled for the tests can leak into it) and runs it with
//! `MMPD_TEST_FAKE_WATCHDOG=1` and `--fence watchdog` on a regular file: it must refuse to start,
//! say why, and leave the MMP block without a fence tag. The test build of mmpd (`testing`
//! feature, through mmpd's own dev-dependency) still accepts the fake and publishes its tag:
//! the control that shows the setup would see a tag if one were written.

use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::fence_tag::{FenceKind, FENCE_TAG_MAGIC};
use libmmp::ondisk::mmp::{MmpBlock, EXT4_MMP_SEQ_CLEAN};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use test_support::prelude::*;

/// The test build (`testing` feature: has the fake).
const TEST_MMPD: &str = env!("CARGO_BIN_EXE_mmpd");
/// Exit status for usage, configuration and device errors (mmpd(8), EXIT STATUS).
const EXIT_ERROR: i32 = 2;

/// Build mmpd as the package does and return the binary.
fn shipped_mmpd() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shipped");
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "mmpd",
            "--target-dir",
        ])
        .arg(&target_dir)
        .output()
        .expect("running cargo build --release -p mmpd");
    assert!(
        out.status.success(),
        "cargo build --release -p mmpd failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join("release/mmpd")
}

/// The MMP block and whether its padding holds any fence tag bytes at all (valid or not).
fn block_and_tag_bytes(img: &Path) -> (MmpBlock, bool) {
    let fs = MmpFs::open(Device::open(img, Access::ReadOnly).unwrap()).unwrap();
    let (blk, _) = fs.read_mmp_raw().unwrap();
    let raw = blk.encode_raw();
    let tag_bytes = raw
        .windows(FENCE_TAG_MAGIC.len())
        .any(|w| w == FENCE_TAG_MAGIC);
    (blk, tag_bytes)
}

fn args<'a>(img: &'a Image, run: &'a Path, wd: &'a Path) -> Vec<&'a str> {
    vec![
        "--run-dir",
        run.to_str().unwrap(),
        "--fence",
        "watchdog",
        "--watchdog-device",
        wd.to_str().unwrap(),
        "--watchdog-timeout",
        "3",
        "--fail-intervals",
        "2",
        img.path.to_str().unwrap(),
    ]
}

#[test]
fn file_shipped_mmpd_refuses_a_plain_file_as_watchdog_even_with_the_test_variable() {
    if !require_e2fsprogs() {
        return;
    }
    let mmpd = shipped_mmpd();
    let binary = std::fs::read(&mmpd).unwrap();
    assert!(
        !binary
            .windows(b"MMPD_TEST_FAKE_WATCHDOG".len())
            .any(|w| w == b"MMPD_TEST_FAKE_WATCHDOG"),
        "{} contains the test watchdog's variable: the fake is compiled in",
        mmpd.display()
    );

    let img = Image::new();
    let wd = img.file("watchdog");
    std::fs::write(&wd, b"").unwrap();
    let run = img.file("run");
    let mut d = Proc::spawn(
        &mmpd,
        &args(&img, &run, &wd),
        img.file("shipped.log"),
        &[("MMPD_TEST_FAKE_WATCHDOG", "1")],
    );
    let code = d.wait_code(Duration::from_secs(10));
    let log = d.log();
    assert_eq!(code, Some(EXIT_ERROR), "{log}");
    let wd_name = wd.display().to_string();
    assert!(
        log.lines()
            .any(|l| l.contains(&wd_name) && l.contains("not a watchdog device")),
        "the error must name the file and say it is not a watchdog device:\n{log}"
    );
    let (blk, tag_bytes) = block_and_tag_bytes(&img.path);
    assert_eq!(blk.fence_tag(), None, "{blk:?}");
    assert!(!tag_bytes, "fence tag bytes in the block: {blk:?}");
    assert_eq!(blk.mmp_seq, EXT4_MMP_SEQ_CLEAN, "nothing written: {blk:?}");
    assert_eq!(
        std::fs::read(&wd).unwrap(),
        b"",
        "the plain file was never petted"
    );
}

/// The control: the test build does take the plain file with the variable set, and the tag it
/// then publishes is seen by [`block_and_tag_bytes`].
#[test]
fn file_test_mmpd_takes_the_fake_watchdog_and_publishes_its_tag() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let wd = img.file("watchdog");
    std::fs::write(&wd, b"").unwrap();
    let run = img.file("run");
    let mut d = Proc::spawn(
        Path::new(TEST_MMPD),
        &args(&img, &run, &wd),
        img.file("test.log"),
        &[("MMPD_TEST_FAKE_WATCHDOG", "1")],
    );
    assert!(d.wait_log("ready:", Duration::from_secs(30)), "{}", d.log());
    assert!(
        wait_for(Duration::from_secs(5), || block_and_tag_bytes(&img.path)
            .0
            .fence_tag()
            .is_some()),
        "no fence tag from the test build:\n{}",
        d.log()
    );
    let (blk, tag_bytes) = block_and_tag_bytes(&img.path);
    assert!(tag_bytes);
    let tag = blk.fence_tag().unwrap();
    assert_eq!(tag.kind, FenceKind::Watchdog);
    // fail_after 2 s + timeout 3 s + 1 s.
    assert_eq!(tag.bound_ms, 6_000, "{tag:?}");
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_code(Duration::from_secs(10)), Some(0), "{}", d.log());
}
