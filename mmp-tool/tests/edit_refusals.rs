//! Every refusal of `enable`/`disable`/`interval`/`clear`, on real images: the exit code, a
//! message naming the device, the reason and the next step, the `--json` reason, and the image
//! byte-for-byte unchanged afterwards. Plus `clear` against a real killed debugfs, and crashes at
//! every write point repaired by the real `e2fsck -fy`.
//!
//! Run: `cargo test -p mmp-tool --test edit_refusals` (as root for the loop-device parts).

mod edit_support;

use edit_support::*;
use libmmp::edit::{self, EditEnv, Settle};
use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::io::BlockIo;
use libmmp::ondisk::mmp::{MmpBlock, EXT4_MMP_SEQ_CLEAN, EXT4_MMP_SEQ_FSCK};
use libmmp::ondisk::superblock::feature;
use std::cell::Cell;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use test_support::cmd::{run, run_ok, text};
use test_support::loopdev::Loop;
use test_support::mount::Mount;
use test_support::require::{require_e2fsprogs, require_loop_devices};

fn edit_mmp_block(img: &Path, f: impl FnOnce(&mut MmpBlock)) {
    let sb = superblock(img);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut raw = [0u8; 1024];
    file.read_exact_at(&mut raw, sb.mmp_offset()).unwrap();
    let mut b = MmpBlock::decode(&raw).unwrap();
    f(&mut b);
    file.write_all_at(&b.encode(sb.mmp_csum_seed()), sb.mmp_offset())
        .unwrap();
}

/// A change to make to an MMP block.
type BlockEdit = Box<dyn Fn(&mut MmpBlock)>;

#[test]
fn refuses_an_mmp_block_that_is_not_clean() {
    if !require_e2fsprogs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = mkfs(dir.path(), "base", 16, META_MMP);
    let cases: [(&str, BlockEdit, i32, &str); 4] = [
        ("live", Box::new(|b| b.mmp_seq = 0x1234), 1, "mmp_live"),
        (
            "fsck",
            Box::new(|b| b.mmp_seq = EXT4_MMP_SEQ_FSCK),
            1,
            "mmp_fsck",
        ),
        (
            "unknown",
            Box::new(|b| b.mmp_seq = EXT4_MMP_SEQ_FSCK + 9),
            1,
            "mmp_unknown_sequence",
        ),
        (
            "magic",
            Box::new(|b| b.mmp_magic = 0x1234_5678),
            2,
            "mmp_bad_magic",
        ),
    ];
    for (name, f, code, reason) in cases {
        let img = dir.path().join(format!("{name}.img"));
        fs::copy(&base, &img).unwrap();
        edit_mmp_block(&img, f);
        let p = img.to_str().unwrap();
        let msg = refused(&img, p, "enable", &[], code, reason);
        assert!(msg.contains("Next:"), "{msg}");
        refused(&img, p, "disable", &[], code, reason);
        refused(&img, p, "interval", &["7"], code, reason);
    }
    // A bad MMP checksum (metadata_csum): "in use or corrupt", exit 1 as e2mmpstatus.
    let img = dir.path().join("csum.img");
    fs::copy(&base, &img).unwrap();
    let off = superblock(&img).mmp_offset() + 0x3FC;
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&[0xAB], off).unwrap();
    let p = img.to_str().unwrap();
    for (sub, extra) in [
        ("enable", &[][..]),
        ("disable", &[][..]),
        ("interval", &["7"][..]),
    ] {
        let msg = refused(&img, p, sub, extra, 1, "mmp_bad_checksum");
        assert!(msg.contains("e2fsck -f"), "{msg}");
    }
    // The message names the last writer.
    let img = dir.path().join("live2.img");
    fs::copy(&base, &img).unwrap();
    edit_mmp_block(&img, |b| {
        b.mmp_seq = 77;
        b.mmp_nodename = [0; 64];
        b.mmp_nodename[..10].copy_from_slice(b"other-node");
    });
    let msg = refused(&img, img.to_str().unwrap(), "disable", &[], 1, "mmp_live");
    assert!(
        msg.contains("other-node") && msg.contains("unmount it on that node"),
        "{msg}"
    );
}

#[test]
fn refuses_what_it_does_not_handle() {
    if !require_e2fsprogs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plain = mkfs(
        d,
        "plain",
        16,
        &[
            "-b",
            "4096",
            "-g",
            "1024",
            "-O",
            "64bit,flex_bg,metadata_csum",
        ],
    );
    let on = mkfs(d, "on", 16, META_MMP);
    let copy = |from: &Path, name: &str| {
        let p = d.join(format!("{name}.img"));
        fs::copy(from, &p).unwrap();
        p
    };

    // The journal needs recovery.
    for (src, name) in [(&plain, "recover-plain"), (&on, "recover-on")] {
        let img = copy(src, name);
        edit_superblock(&img, |sb| {
            sb.s_feature_incompat |= feature::INCOMPAT_RECOVER
        });
        let p = img.to_str().unwrap();
        let msg = refused(&img, p, "enable", &["--interval", "9"], 2, "needs_recovery");
        assert!(msg.contains("e2fsck -f"), "{msg}");
        refused(&img, p, "interval", &["9"], 2, "needs_recovery");
        if src == &on {
            refused(&img, p, "disable", &[], 2, "needs_recovery");
        }
    }
    // Errors recorded by the kernel.
    let img = copy(&on, "errors");
    edit_superblock(&img, |sb| sb.s_state |= 2);
    refused(&img, img.to_str().unwrap(), "disable", &[], 2, "has_errors");

    // A bad superblock checksum: every subcommand, clear included.
    let img = copy(&on, "badsb");
    fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all_at(&[0x5A], 1024 + 0x3FC)
        .unwrap();
    let p = img.to_str().unwrap();
    for (sub, extra) in [
        ("enable", &[][..]),
        ("disable", &[][..]),
        ("interval", &["7"][..]),
        ("clear", &["--force"][..]),
    ] {
        let msg = refused(&img, p, sub, extra, 2, "bad_superblock");
        assert!(msg.contains("checksum") && msg.contains("e2fsck"), "{msg}");
    }

    // Features this tool does not edit, each named.
    let bigalloc = mkfs(
        d,
        "bigalloc",
        32,
        &["-b", "4096", "-C", "16384", "-O", "bigalloc,^resize_inode"],
    );
    let meta_bg = mkfs(
        d,
        "meta_bg",
        16,
        &["-b", "1024", "-O", "meta_bg,^resize_inode"],
    );
    let jdev = d.join("jdev.img");
    fs::File::create(&jdev).unwrap().set_len(8 << 20).unwrap();
    run_ok(
        mkfs_cmd(d)
            .args(["-O", "journal_dev", "-b", "4096"])
            .arg(&jdev),
    );
    let unknown = copy(&plain, "unknown");
    edit_superblock(&unknown, |sb| sb.s_feature_incompat |= 0x0100_0000);
    for (img, what) in [
        (&bigalloc, "bigalloc"),
        (&meta_bg, "meta_bg"),
        (&jdev, "journal_dev"),
        (&unknown, "unknown incompat feature bits 0x1000000"),
    ] {
        let msg = refused(
            img,
            img.to_str().unwrap(),
            "enable",
            &[],
            2,
            "unsupported_features",
        );
        assert!(msg.contains(what) && msg.contains("tune2fs"), "{msg}");
    }

    // Out-of-range intervals are usage errors (exit 2), nothing written.
    let before = fs::read(&plain).unwrap();
    for bad in ["0", "301", "-1", "x"] {
        let o =
            run(Command::new(tool()).args(["enable", plain.to_str().unwrap(), "--interval", bad]));
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let o = run(Command::new(tool()).args(["interval", on.to_str().unwrap(), bad]));
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    }
    assert_eq!(fs::read(&plain).unwrap(), before);

    // Not enabled / already enabled with another interval.
    let p = plain.to_str().unwrap();
    let msg = refused(&plain, p, "interval", &["7"], 2, "not_enabled");
    assert!(msg.contains("mmp-tool enable"), "{msg}");
    refused(&plain, p, "clear", &[], 2, "not_enabled");
    let msg = refused(
        &on,
        on.to_str().unwrap(),
        "enable",
        &["--interval", "9"],
        2,
        "already_enabled",
    );
    assert!(msg.contains("mmp-tool interval"), "{msg}");
    // Not an ext4 filesystem at all.
    let zero = d.join("zero.img");
    fs::File::create(&zero).unwrap().set_len(4 << 20).unwrap();
    refused(&zero, zero.to_str().unwrap(), "enable", &[], 2, "not_ext4");
}

#[test]
fn refuses_while_attached_or_mounted_on_this_host() {
    if !require_e2fsprogs() || !require_loop_devices() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = mkfs(dir.path(), "busy", 16, META_MMP);
    let p = img.to_str().unwrap();
    let all: [(&str, &[&str]); 4] = [
        ("enable", &[]),
        ("disable", &[]),
        ("interval", &["7"]),
        ("clear", &["--force"]),
    ];
    {
        let lp = Loop::attach(&img);
        for (sub, extra) in all {
            let msg = refused(&img, p, sub, extra, 1, "in_use_locally");
            assert!(
                msg.contains(&format!("attached to {}", lp.dev.display())),
                "{msg}"
            );
            assert!(msg.contains("losetup -d"), "{msg}");
        }
        // Mounted read-only (no kmmpd, so the image cannot change under the test).
        let mnt = dir.path().join("mnt");
        let m = Mount::new(&lp.dev, &mnt, &["-t", "ext4", "-o", "ro,noload"]).expect("mount ro");
        let dev = lp.dev.to_str().unwrap();
        for (sub, extra) in all {
            let msg = refused(&img, p, sub, extra, 1, "in_use_locally");
            assert!(
                msg.contains(&format!("mounted at {}", mnt.display())) && msg.contains("umount"),
                "{msg}"
            );
            let msg = refused(&img, dev, sub, extra, 1, "in_use_locally");
            assert!(
                msg.contains(&format!("mounted at {}", mnt.display())),
                "{msg}"
            );
        }
        drop(m);

        // Mounted in another mount namespace: invisible in our mountinfo, but the kernel
        // refuses the exclusive open.
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!(
                "mount -o ro,noload {dev} {} && echo ready && exec sleep 60",
                mnt.display()
            ))
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let result = std::panic::catch_unwind(|| {
            assert_eq!(line.trim(), "ready", "the namespaced mount failed");
            for (sub, extra) in all {
                let msg = refused(&img, dev, sub, extra, 1, "device_busy");
                assert!(msg.contains("another mount namespace"), "{msg}");
            }
        });
        let _ = child.kill();
        let _ = child.wait();
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }
}

/// A real stuck FSCK sequence: `debugfs -w` killed with SIGKILL (e2fsprogs test f_mmp).
#[test]
fn clear_resets_the_fsck_sequence_of_a_killed_debugfs() {
    if !require_e2fsprogs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = mkfs(
        dir.path(),
        "stuck",
        16,
        &[
            "-b",
            "4096",
            "-O",
            "metadata_csum,mmp",
            "-E",
            "mmp_update_interval=1",
        ],
    );
    let mut debugfs = Command::new("debugfs")
        .arg("-w")
        .arg(&img)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("debugfs");
    // debugfs runs ext2fs_mmp_start: a random sequence, an 11 s wait, then FSCK.
    let start = Instant::now();
    let stuck = loop {
        let sb = superblock(&img);
        let data = fs::read(&img).unwrap();
        let o = sb.mmp_offset() as usize;
        if MmpBlock::decode(&data[o..o + 1024]).unwrap().mmp_seq == EXT4_MMP_SEQ_FSCK {
            break true;
        }
        if start.elapsed() > Duration::from_secs(30) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = debugfs.kill();
    let _ = debugfs.wait();
    assert!(stuck, "debugfs -w never wrote FSCK");
    let st = run(Command::new("e2mmpstatus").arg(&img));
    assert_eq!(
        st.status.code(),
        Some(1),
        "e2mmpstatus sees the stuck FSCK: {}",
        text(&st)
    );

    let t = Instant::now();
    let (code, j, err) = tool_json(&["clear", img.to_str().unwrap()]);
    assert_eq!(code, 0, "{err} {j}");
    assert_eq!(j["previous_state"], "fsck");
    assert!(
        t.elapsed() >= Duration::from_secs(11),
        "watched for the full wait first"
    );
    assert!(j["watched_seconds"].as_f64().unwrap() >= 11.0);
    assert!(run(Command::new("e2mmpstatus").arg(&img)).status.success());
    assert!(e2fsck_n(&img).status.success(), "{}", text(&e2fsck_n(&img)));
    let (code, j, _) = tool_json(&["clear", img.to_str().unwrap()]);
    assert_eq!(
        (code, j["changed"].as_bool()),
        (0, Some(false)),
        "already clean"
    );
}

#[test]
fn clear_refuses_a_block_that_changes_and_force_skips_the_watch() {
    if !require_e2fsprogs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = mkfs(dir.path(), "writer", 16, META_MMP);
    edit_mmp_block(&img, |b| b.mmp_seq = EXT4_MMP_SEQ_FSCK);
    let sb = superblock(&img);
    // Another "node" rewriting the block every 200 ms, as kmmpd does every interval.
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
            let mut seq = 1;
            while !stop.load(Ordering::Relaxed) {
                let b = MmpBlock::new(seq, 0, "node-b", "sdb", 5);
                f.write_all_at(&b.encode(sb.mmp_csum_seed()), sb.mmp_offset())
                    .unwrap();
                seq += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let (code, j, err) = tool_json(&["clear", img.to_str().unwrap()]);
        stop.store(true, Ordering::Relaxed);
        assert_eq!(code, 1, "{err}");
        assert_eq!(j["reason"], "mmp_changed");
        assert!(
            err.contains("node-b") && err.contains("nothing was written"),
            "{err}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "refused as soon as it changed"
        );
    });
    let o = sb.mmp_offset() as usize;
    let blk = MmpBlock::decode(&fs::read(&img).unwrap()[o..o + 1024]).unwrap();
    assert_eq!(blk.nodename(), "node-b", "the block was left to its writer");
    // --force: no watch.
    let t = Instant::now();
    let (code, j, _) = tool_json(&["clear", "--force", img.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(j["watched_seconds"], 0.0);
    assert!(t.elapsed() < Duration::from_secs(2));
    let blk = MmpBlock::decode(&fs::read(&img).unwrap()[o..o + 1024]).unwrap();
    assert_eq!(blk.mmp_seq, EXT4_MMP_SEQ_CLEAN);
    assert!(run(Command::new("e2mmpstatus").arg(&img)).status.success());
}

/// The image file, failing every write after the first `ok`: a crash at that point.
struct Crashing {
    dev: Device,
    ok: usize,
    writes: Cell<usize>,
}

impl BlockIo for Crashing {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.dev.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.writes.get() >= self.ok {
            return Err(io::Error::other("simulated crash"));
        }
        self.writes.set(self.writes.get() + 1);
        self.dev.write_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        self.dev.sync()
    }
    fn size(&self) -> u64 {
        self.dev.size()
    }
    fn logical_block_size(&self) -> u32 {
        self.dev.logical_block_size()
    }
    fn name(&self) -> &str {
        self.dev.name()
    }
}

fn crashed_copy(src: &Path, dst: &Path, ok: usize, op: &str) -> Result<usize, ()> {
    fs::copy(src, dst).unwrap();
    let dev = Crashing {
        dev: Device::open(dst, Access::ReadWrite).unwrap(),
        ok,
        writes: Cell::new(0),
    };
    let fs = MmpFs::open(dev).unwrap();
    let env = EditEnv::for_device(dst.to_str().unwrap()).unwrap();
    let clock = libmmp::protocol::clock::SystemClock::default();
    let settle = Settle::For(Duration::from_millis(200));
    let r = match op {
        "enable" => edit::enable(&fs, None, &env),
        "disable" => edit::disable(&fs, &env, &clock, settle, &mut |_, _| {}),
        _ => edit::set_interval(&fs, 9, &env, &clock, settle, &mut |_, _| {}),
    };
    match r {
        Ok(rep) => Ok(rep.writes.len()),
        Err(e) => {
            assert_eq!(e.reason(), "write_failed", "{e}");
            Err(())
        }
    }
}

/// A crash after every write of every edit leaves a filesystem that `e2fsck -fy` repairs
/// (and `e2fsck -fn` then finds clean, and e2mmpstatus clean when MMP is on).
#[test]
fn a_crash_at_any_write_is_repaired_by_e2fsck() {
    if !require_e2fsprogs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args: &[&str] = &[
        "-b",
        "1024",
        "-g",
        "2048",
        "-O",
        "64bit,flex_bg,metadata_csum",
    ];
    let plain = mkfs_group0_full(d, "crash-meta", 16, args, 1024);
    let plain2 = mkfs(
        d,
        "crash-none",
        16,
        &["-b", "2048", "-g", "2048", "-O", "^64bit,uninit_bg"],
    );
    let on = d.join("crash-on.img");
    fs::copy(&plain, &on).unwrap();
    run_ok(Command::new(tool()).args(["enable"]).arg(&on));

    // (source, operation, number of writes of a complete run)
    let mut jobs = Vec::new();
    for (src, op) in [
        (&plain, "enable"),
        (&plain2, "enable"),
        (&on, "disable"),
        (&on, "interval"),
    ] {
        let full = crashed_copy(src, &d.join("probe.img"), usize::MAX, op).expect("a complete run");
        assert!(full >= 4, "{op}: {full} writes");
        for k in 0..full {
            jobs.push((src.clone(), op, k));
        }
    }
    // e2fsck waits 11 s on an MMP filesystem (ext2fs_mmp_start), so the crash points run in
    // parallel; most of the time is spent sleeping.
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .enumerate()
            .map(|(i, (src, op, k))| {
                s.spawn(move || -> Result<(), String> {
                    let img = d.join(format!("crash-{i}.img"));
                    assert!(
                        crashed_copy(src, &img, *k, op).is_err(),
                        "{op} after {k} writes did not fail"
                    );
                    let fix = run(Command::new("e2fsck").arg("-fy").arg(&img));
                    let code = fix.status.code().unwrap_or(-1);
                    if code > 1 {
                        return Err(format!(
                            "{op} crashed after {k} writes: e2fsck -fy exit {code}: {}",
                            text(&fix)
                        ));
                    }
                    let check = e2fsck_n(&img);
                    if !check.status.success() {
                        return Err(format!(
                            "{op} crashed after {k} writes: e2fsck -fn after repair: {}",
                            text(&check)
                        ));
                    }
                    if superblock(&img).has_mmp()
                        && !run(Command::new("e2mmpstatus").arg(&img)).status.success()
                    {
                        return Err(format!(
                            "{op} crashed after {k} writes: e2mmpstatus not clean after repair"
                        ));
                    }
                    let _ = fs::remove_file(&img);
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap().err())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} crash points not repaired:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
}
