//! Helpers of the planned-handoff tests on real devices (handoff.rs, handoff_faults.rs): two
//! "hosts" are two block devices over one image. The SOURCE is node `host-a` (its commands
//! run with `--node-name host-a`; an mmpd holder with that name, or the CLEAN block its
//! release leaves); the TARGET runs under the real host name, because its holder is the
//! kernel (kmmpd writes the kernel's host name whatever `--node-name` says) and `handoff
//! --confirm` recognises it by that name. Each host has its own run and mount directory.
#![allow(dead_code)] // each test binary uses a different subset

use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::handoff::{HandoffRead, HandoffRecord, HandoffStep};
use libmmp::ondisk::mmp::{MmpBlock, SeqClass, EXT4_MMP_SEQ_CLEAN};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use test_support::mount::is_mountpoint;
use test_support::prelude::*;

pub const TOOL: &str = env!("CARGO_BIN_EXE_mmp-tool");
/// The source's node name.
pub const SOURCE: &str = "host-a";
/// Longest a single command may take: a full-wait rollback or claim is about 20 s.
pub const LIMIT: Duration = Duration::from_secs(90);

/// mmpd as cargo builds it, beside mmp-tool (`cargo build -p mmpd`).
pub fn mmpd() -> Option<PathBuf> {
    let p = Path::new(TOOL).parent()?.join("mmpd");
    p.is_file().then_some(p)
}

pub fn require_devices() -> bool {
    require_loop_devices() && require_e2fsprogs()
}

pub fn require_mmpd() -> bool {
    require_devices() && require(mmpd().is_some(), "mmpd is not built (cargo build -p mmpd)")
}

/// The name kmmpd writes, the target's name.
pub fn hostname() -> String {
    libmmp::host::identity::nodename()
}

/// How a command ended: exit code, its `--json` object (an error's is `{"error", "result":
/// "error"|"refused", "exit_code"}`; Null when it printed none), stderr.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub json: Value,
    pub err: String,
}

impl Run {
    pub fn from_output(out: &Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            json: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The JSON `result`, or "" without JSON.
    pub fn result(&self) -> &str {
        self.json["result"].as_str().unwrap_or("")
    }

    /// The JSON `message`, or stderr without JSON.
    pub fn message(&self) -> String {
        self.json["message"]
            .as_str()
            .map_or_else(|| self.err.clone(), str::to_string)
    }

    /// The nonce an offer printed.
    pub fn nonce(&self) -> String {
        self.json["nonce"]
            .as_str()
            .unwrap_or_else(|| panic!("no nonce: {self:?}"))
            .to_string()
    }

    /// Exit `code` and `result`, or fail showing everything.
    pub fn expect(&self, code: i32, result: &str) -> &Self {
        assert_eq!(
            (self.code, self.result()),
            (code, result),
            "json: {}\nstderr: {}",
            self.json,
            self.err
        );
        self
    }
}

/// One host's side of the shared disk.
pub struct Host {
    pub dev: PathBuf,
    /// `--node-name`, or the host name when `None`.
    pub node: Option<String>,
    pub run: PathBuf,
    pub mnt: PathBuf,
}

impl Host {
    /// A host named `label` in `img`'s directory (run-LABEL, mnt-LABEL).
    pub fn new(img: &Image, label: &str, dev: &Path, node: Option<&str>) -> Host {
        let (run, mnt) = (
            img.file(&format!("run-{label}")),
            img.file(&format!("mnt-{label}")),
        );
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(&mnt).unwrap();
        Host {
            dev: dev.to_path_buf(),
            node: node.map(str::to_string),
            run,
            mnt,
        }
    }

    /// The source: host-a through `dev`.
    pub fn source(img: &Image, dev: &Path) -> Host {
        Host::new(img, "a", dev, Some(SOURCE))
    }

    /// The target: the host name through `dev`.
    pub fn target(img: &Image, dev: &Path) -> Host {
        Host::new(img, "b", dev, None)
    }

    pub fn name(&self) -> String {
        self.node.clone().unwrap_or_else(hostname)
    }

    /// `mmp-tool SUB --json --quiet [--node-name N] --run-dir R`, then `rest`.
    pub fn cmd(&self, sub: &str, rest: &[&str]) -> Command {
        let mut c = Command::new(TOOL);
        c.args([sub, "--json", "--quiet"]);
        if let Some(n) = &self.node {
            c.args(["--node-name", n]);
        }
        c.arg("--run-dir").arg(&self.run).args(rest);
        c
    }

    pub fn run(&self, sub: &str, rest: &[&str]) -> Run {
        Run::from_output(&run_with_timeout(self.cmd(sub, rest), LIMIT))
    }

    fn dev_str(&self) -> &str {
        self.dev.to_str().unwrap()
    }

    pub fn offer(&self, to: &str) -> Run {
        self.run("handoff", &[self.dev_str(), "--to", to])
    }

    pub fn offer_cmd(&self, to: &str) -> Command {
        self.cmd("handoff", &[self.dev_str(), "--to", to])
    }

    pub fn rollback(&self, nonce: Option<&str>) -> Run {
        let mut a = vec![self.dev_str(), "--rollback"];
        if let Some(n) = nonce {
            a.extend(["--nonce", n]);
        }
        self.run("handoff", &a)
    }

    pub fn confirm(&self, nonce: &str) -> Run {
        self.run("handoff", &[self.dev_str(), "--confirm", nonce])
    }

    /// `mmp-tool mount DEV MNT --handoff NONCE`, not yet waited for.
    pub fn mount_handoff_cmd(&self, nonce: &str) -> Command {
        let mut c = self.cmd("mount", &[self.dev_str()]);
        c.arg(&self.mnt).args(["--handoff", nonce]);
        c
    }

    pub fn mount_handoff(&self, nonce: &str) -> Run {
        Run::from_output(&run_with_timeout(self.mount_handoff_cmd(nonce), LIMIT))
    }

    pub fn claim_handoff(&self, nonce: &str) -> Run {
        self.run("claim", &[self.dev_str(), "--handoff", nonce])
    }

    /// A gated `mmp-tool mount` (the normal path), not yet waited for.
    pub fn mount_cmd(&self) -> Command {
        let mut c = self.cmd("mount", &[self.dev_str()]);
        c.arg(&self.mnt);
        c
    }

    pub fn mount(&self) -> Run {
        Run::from_output(&run_with_timeout(self.mount_cmd(), LIMIT))
    }

    /// `mmp-tool status --json DEV` (status takes no node name).
    pub fn status(&self) -> Value {
        let mut c = Command::new(TOOL);
        c.args(["status", "--json", self.dev_str()]);
        Run::from_output(&run_with_timeout(c, LIMIT)).json
    }

    pub fn mounted(&self) -> bool {
        is_mountpoint(&self.mnt)
    }

    /// Unmount our directory if something is mounted there (the kernel writes CLEAN).
    pub fn umount(&self) {
        for _ in 0..50 {
            if !self.mounted() {
                return;
            }
            let ok = Command::new("umount")
                .arg(&self.mnt)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("{} stays mounted", self.mnt.display());
    }
}

/// Start `c` with its output captured (for a process the test signals).
pub fn spawn(mut c: Command) -> Child {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {c:?}: {e}"))
}

/// The 1024 bytes of the MMP block as they are now.
pub fn block_bytes(dev: &Path) -> [u8; 1024] {
    read_block(dev).encode_raw()
}

/// The block a clean release by `node` leaves (an unmount, mmpd's SIGTERM): CLEAN under its
/// name, no record. The crash and fault tests start each round from it.
pub fn clean_under(dev: &Path, node: &str) {
    let fs = MmpFs::open(Device::open(dev, Access::ReadWrite).unwrap()).unwrap();
    let mut b = MmpBlock::new(EXT4_MMP_SEQ_CLEAN, now(), node, "loop", 5);
    b.set_handoff(None);
    fs.write_mmp_synced(&b).unwrap();
}

pub fn now() -> u64 {
    libmmp::protocol::clock::wall_now()
}

/// Write a block carrying an `offered` record from the source to `target` (as if the source
/// offered), then let `edit` change it before it goes to disk.
pub fn write_offer(dev: &Path, target: &str, nonce: u64, edit: impl FnOnce(&mut MmpBlock)) {
    let fs = MmpFs::open(Device::open(dev, Access::ReadWrite).unwrap()).unwrap();
    let mut b = MmpBlock::new(0x1234_5678, now(), SOURCE, "loop", 5);
    b.set_handoff(Some(&HandoffRecord {
        step: HandoffStep::Offered,
        nonce,
        offered_at: now(),
        source: SOURCE.into(),
        target: target.into(),
    }));
    edit(&mut b);
    fs.write_mmp_synced(&b).unwrap();
}

/// Whether the block through `dev` changes within 3 s (its holder still writes it).
pub fn still_written(dev: &Path) -> bool {
    let first = block_bytes(dev);
    wait_for(Duration::from_secs(3), || block_bytes(dev) != first)
}

/// The block is CLEAN under `node`.
pub fn assert_clean_under(dev: &Path, node: &str) {
    let b = read_block(dev);
    assert_eq!(
        (b.seq_class(), b.nodename()),
        (SeqClass::Clean, node.to_string()),
        "{b:?}"
    );
}

/// Never a block that would need a human: FSCK or an unknown sequence.
pub fn assert_not_stuck(dev: &Path, when: &str) {
    let b = read_block(dev);
    assert!(
        matches!(b.seq_class(), SeqClass::Clean | SeqClass::Live(_)),
        "{when}: the MMP block is {} ({:#010x})",
        b.seq_class().name(),
        b.mmp_seq
    );
}

/// The handoff record the block carries.
pub fn record(dev: &Path) -> HandoffRead {
    read_block(dev).handoff()
}

/// `e2fsck -fn DEV` exits 0: the filesystem is clean.
pub fn assert_fsck_clean(dev: &Path) {
    let out = run(Command::new("e2fsck").arg("-fn").arg(dev));
    assert!(
        out.status.success(),
        "e2fsck -fn {}: {}",
        dev.display(),
        describe(&out)
    );
}

/// The byte offset of the MMP block (for the fault disk's write log).
pub fn mmp_offset(dev: &Path) -> u64 {
    let fs = MmpFs::open(Device::open(dev, Access::ReadOnly).unwrap()).unwrap();
    fs.superblock().mmp_offset()
}

/// The MMP blocks `disk` saw land, in order.
pub fn landed_blocks(disk: &FaultDisk, at: u64) -> Vec<MmpBlock> {
    disk.writes_at(at)
        .into_iter()
        .filter(|w| w.landed)
        .filter_map(|w| {
            let off = (at - w.offset) as usize;
            MmpBlock::decode(w.data.get(off..off + 1024)?).ok()
        })
        .collect()
}

/// Wait (polling every millisecond, at most `limit`) until `disk` has landed an MMP block
/// whose valid handoff record is at `step`; true if it did.
pub fn wait_landed(disk: &FaultDisk, at: u64, step: HandoffStep, limit: Duration) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        let seen = landed_blocks(disk, at)
            .iter()
            .any(|b| b.handoff().valid().is_some_and(|r| r.step == step));
        if seen {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// A small seeded generator (splitmix64), so a failing crash run can be repeated with its
/// seed (`HANDOFF_SEED`).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// From `HANDOFF_SEED`, or `default`; prints the seed.
    pub fn from_env(default: u64) -> Rng {
        let seed = std::env::var("HANDOFF_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("HANDOFF_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` milliseconds.
    pub fn millis(&mut self, n: u64) -> Duration {
        Duration::from_millis(self.next() % n)
    }
}

/// How many rounds each crash test runs: `HANDOFF_CRASH_ROUNDS`, default 6.
pub fn crash_rounds() -> usize {
    std::env::var("HANDOFF_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}
