//! `mmp-tool enable` and `disable` on a matrix of real filesystems made by mke2fs, checked with
//! the real peers: tune2fs on an identical copy (same MMP block, same bytes apart from
//! timestamps), e2fsck, dumpe2fs, e2mmpstatus, and the kernel (loop mount with kmmpd running).
//!
//! Run: `cargo test -p mmp-tool --test edit_matrix` (as root for the kernel part; without root
//! that part is skipped with a message, or fails when CI=true).

mod edit_support;

use edit_support::*;
use libmmp::ondisk::geometry::Geometry;
use libmmp::ondisk::mmp::{MmpBlock, EXT4_MMP_SEQ_CLEAN};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use test_support::cmd::{run, run_ok, text};
use test_support::loopdev::Loop;
use test_support::require::{require_e2fsprogs, require_loop_devices};

#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    bs: u64,
    mib: u64,
    args: &'static [&'static str],
    /// Fill group 0 so that the MMP block lands in a later group.
    fill_group0: bool,
}

const fn case(
    name: &'static str,
    bs: u64,
    mib: u64,
    args: &'static [&'static str],
    fill_group0: bool,
) -> Case {
    Case {
        name,
        bs,
        mib,
        args,
        fill_group0,
    }
}

/// Block sizes 1k/2k/4k; 64bit on and off; metadata_csum with and without metadata_csum_seed,
/// uninit_bg (gdt_csum), no checksums; flex_bg on and off; ^resize_inode; sparse_super2; one
/// group and many; group 0 full so the allocation lands in a later (uninitialised) group.
const CASES: &[Case] = &[
    case(
        "k1-meta-64-flex-many",
        1024,
        16,
        &[
            "-b",
            "1024",
            "-g",
            "1024",
            "-O",
            "64bit,flex_bg,metadata_csum",
        ],
        false,
    ),
    case(
        "k1-meta-32-noflex-full0",
        1024,
        16,
        &[
            "-b",
            "1024",
            "-g",
            "2048",
            "-O",
            "^64bit,^flex_bg,metadata_csum",
        ],
        true,
    ),
    case(
        "k1-seed-64-flex-full0",
        1024,
        16,
        &[
            "-b",
            "1024",
            "-g",
            "2048",
            "-O",
            "64bit,flex_bg,metadata_csum,metadata_csum_seed",
        ],
        true,
    ),
    case(
        "k1-seed-32-onegroup",
        1024,
        8,
        &[
            "-b",
            "1024",
            "-O",
            "^64bit,metadata_csum,metadata_csum_seed",
        ],
        false,
    ),
    case(
        "k1-gdt-32-noresize-full0",
        1024,
        16,
        &["-b", "1024", "-g", "2048", "-O", "uninit_bg,^resize_inode"],
        true,
    ),
    case(
        "k1-gdt-64-flex-sparse2",
        1024,
        16,
        &[
            "-b",
            "1024",
            "-g",
            "1024",
            "-O",
            "64bit,flex_bg,uninit_bg,sparse_super2",
        ],
        false,
    ),
    case(
        "k1-none-32-default-groups",
        1024,
        32,
        &["-b", "1024", "-O", "^64bit"],
        false,
    ),
    case(
        "k1-none-64-flex-full0",
        1024,
        16,
        &["-b", "1024", "-g", "2048", "-O", "64bit,flex_bg"],
        true,
    ),
    case(
        "k2-meta-64-flex",
        2048,
        32,
        &[
            "-b",
            "2048",
            "-g",
            "2048",
            "-O",
            "64bit,flex_bg,metadata_csum",
        ],
        false,
    ),
    case(
        "k2-meta-32-noresize-full0",
        2048,
        32,
        &[
            "-b",
            "2048",
            "-g",
            "2048",
            "-O",
            "^64bit,metadata_csum,^resize_inode",
        ],
        true,
    ),
    case(
        "k2-seed-64-sparse2",
        2048,
        32,
        &[
            "-b",
            "2048",
            "-g",
            "4096",
            "-O",
            "64bit,metadata_csum,metadata_csum_seed,sparse_super2",
        ],
        false,
    ),
    case(
        "k2-seed-32-flex-onegroup",
        2048,
        16,
        &[
            "-b",
            "2048",
            "-O",
            "^64bit,flex_bg,metadata_csum,metadata_csum_seed",
        ],
        false,
    ),
    case(
        "k2-gdt-64-flex-full0",
        2048,
        32,
        &["-b", "2048", "-g", "2048", "-O", "64bit,flex_bg,uninit_bg"],
        true,
    ),
    case(
        "k2-gdt-32",
        2048,
        32,
        &["-b", "2048", "-g", "4096", "-O", "^64bit,uninit_bg"],
        false,
    ),
    case(
        "k2-none-64-noresize",
        2048,
        32,
        &["-b", "2048", "-g", "2048", "-O", "64bit,^resize_inode"],
        false,
    ),
    case(
        "k2-none-32-sparse2-full0",
        2048,
        32,
        &["-b", "2048", "-g", "2048", "-O", "^64bit,sparse_super2"],
        true,
    ),
    case(
        "k4-meta-64-flex-many",
        4096,
        32,
        &[
            "-b",
            "4096",
            "-g",
            "1024",
            "-O",
            "64bit,flex_bg,metadata_csum",
        ],
        false,
    ),
    case(
        "k4-meta-32-onegroup",
        4096,
        16,
        &["-b", "4096", "-O", "^64bit,metadata_csum"],
        false,
    ),
    case(
        "k4-seed-64-flex-full0",
        4096,
        32,
        &[
            "-b",
            "4096",
            "-g",
            "1024",
            "-O",
            "64bit,flex_bg,metadata_csum,metadata_csum_seed",
        ],
        true,
    ),
    case(
        "k4-seed-32-noresize",
        4096,
        32,
        &[
            "-b",
            "4096",
            "-g",
            "2048",
            "-O",
            "^64bit,metadata_csum,metadata_csum_seed,^resize_inode",
        ],
        false,
    ),
    case(
        "k4-gdt-64-sparse2",
        4096,
        32,
        &[
            "-b",
            "4096",
            "-g",
            "1024",
            "-O",
            "64bit,uninit_bg,sparse_super2",
        ],
        false,
    ),
    case(
        "k4-gdt-32-noflex-full0",
        4096,
        32,
        &["-b", "4096", "-g", "1024", "-O", "^64bit,uninit_bg"],
        true,
    ),
    case(
        "k4-none-64-flex",
        4096,
        32,
        &["-b", "4096", "-g", "2048", "-O", "64bit,flex_bg"],
        false,
    ),
    case(
        "k4-none-32-onegroup-noresize",
        4096,
        16,
        &["-b", "4096", "-O", "^64bit,^resize_inode"],
        false,
    ),
    case(
        "k4-meta-64-flex-default-groups",
        4096,
        64,
        &["-b", "4096", "-O", "64bit,flex_bg,metadata_csum"],
        false,
    ),
    case(
        "k1-meta-64-desc128",
        1024,
        16,
        &[
            "-b",
            "1024",
            "-g",
            "1024",
            "-E",
            "desc_size=128",
            "-O",
            "64bit,metadata_csum",
        ],
        false,
    ),
    case(
        "k1-meta-64-all-full0",
        1024,
        16,
        &[
            "-b",
            "1024",
            "-g",
            "1024",
            "-O",
            "64bit,flex_bg,metadata_csum,sparse_super2,^resize_inode",
        ],
        true,
    ),
    case(
        "k2-none-32-isize128",
        2048,
        16,
        &["-b", "2048", "-g", "2048", "-I", "128", "-O", "^64bit"],
        false,
    ),
];

/// Compare two images, ignoring what differs legitimately between two tools run at different
/// moments: in every superblock copy `s_wtime` (0x30), `s_kbytes_written` (0x178, which tune2fs
/// updates) and the checksum (0x3FC); and the MMP block (node, device, time).
fn compare_masked(
    ours: &[u8],
    theirs: &[u8],
    geo: &Geometry,
    mmp_block: u64,
) -> Result<(), String> {
    if ours.len() != theirs.len() {
        return Err(format!("sizes differ: {} vs {}", ours.len(), theirs.len()));
    }
    let bs = u64::from(geo.block_size);
    let mut masked: Vec<(u64, u64)> = vec![(mmp_block * bs, (mmp_block + 1) * bs)];
    for g in std::iter::once(0).chain(geo.backup_groups()) {
        let off = geo.superblock_offset(g);
        masked.extend([
            (off + 0x30, off + 0x34),
            (off + 0x178, off + 0x180),
            (off + 0x3FC, off + 0x400),
        ]);
    }
    let diffs: Vec<String> = ours
        .iter()
        .zip(theirs)
        .enumerate()
        .filter(|(i, (a, b))| {
            a != b
                && !masked
                    .iter()
                    .any(|&(lo, hi)| (lo..hi).contains(&(*i as u64)))
        })
        .take(8)
        .map(|(i, (a, b))| {
            format!(
                "block {} +{:#x}: ours {a:#04x} theirs {b:#04x}",
                i as u64 / bs,
                i as u64 % bs
            )
        })
        .collect();
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!("images differ: {}", diffs.join("; ")))
    }
}

fn mmp_block_of(img: &Path) -> MmpBlock {
    let sb = superblock(img);
    let data = fs::read(img).unwrap();
    let o = sb.mmp_offset() as usize;
    MmpBlock::parse(&data[o..o + 1024], sb.mmp_csum_seed()).unwrap()
}

fn run_case(c: &Case, dir: &Path, kernel: bool) -> Result<String, String> {
    let e = |what: &str, detail: String| format!("{}: {what}: {detail}", c.name);
    let img = if c.fill_group0 {
        mkfs_group0_full(dir, c.name, c.mib, c.args, c.bs)
    } else {
        mkfs(dir, c.name, c.mib, c.args)
    };
    let before = superblock(&img);
    let geo_before = geometry(&img);
    if c.fill_group0 && group_free_blocks(&img)[0] != 0 {
        return Err(e("precondition", "group 0 is not full".into()));
    }
    if c.fill_group0 && geo_before.group_count == 1 {
        return Err(e(
            "precondition",
            "a full group 0 needs more than one group".into(),
        ));
    }

    // The reference: tune2fs -O mmp on an identical copy.
    let theirs = dir.join(format!("{}.tune2fs.img", c.name));
    fs::copy(&img, &theirs).unwrap();
    run_ok(Command::new("tune2fs").args(["-O", "mmp"]).arg(&theirs));

    let (code, j, err) = tool_json(&["enable", img.to_str().unwrap()]);
    if code != 0 {
        return Err(e("enable", format!("exit {code}: {err} {j}")));
    }
    let block = j["mmp_block"].as_u64().unwrap();
    let tune_block = superblock(&theirs).s_mmp_block;
    if block != tune_block {
        return Err(e(
            "block choice",
            format!("ours {block}, tune2fs {tune_block}"),
        ));
    }
    let group = j["group"].as_u64().unwrap();
    if c.fill_group0 && group == 0 {
        return Err(e(
            "block choice",
            "group 0 is full but the block is in it".into(),
        ));
    }
    let uninit_expected = c.fill_group0
        && (c
            .args
            .iter()
            .any(|a| a.contains("metadata_csum") || a.contains("uninit_bg")));
    if j["group_was_block_uninit"].as_bool() != Some(uninit_expected) {
        return Err(e(
            "uninitialised group",
            format!("expected {uninit_expected}: {j}"),
        ));
    }
    let ours_bytes = fs::read(&img).unwrap();
    compare_masked(&ours_bytes, &fs::read(&theirs).unwrap(), &geo_before, block)
        .map_err(|d| e("compared with tune2fs -O mmp", d))?;
    let blk = mmp_block_of(&img);
    if blk.mmp_seq != EXT4_MMP_SEQ_CLEAN || blk.mmp_check_interval != 5 {
        return Err(e("MMP block", format!("{blk:?}")));
    }

    // e2fsprogs' opinion.
    let fsck = e2fsck_n(&img);
    if !fsck.status.success() {
        return Err(e("e2fsck -fn after enable", text(&fsck)));
    }
    let h = dumpe2fs_h(&img);
    let features = h
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap_or("");
    if !features.split_whitespace().any(|f| f == "mmp")
        || !h.contains(&format!("MMP block number:         {block}\n"))
        || !h.contains("MMP update interval:      5\n")
    {
        return Err(e("dumpe2fs -h", h));
    }
    let st = run(Command::new("e2mmpstatus").arg(&img));
    if !st.status.success() {
        return Err(e("e2mmpstatus", text(&st)));
    }

    // A copy for the disable comparison, before the kernel touches the image.
    let ours_copy = dir.join(format!("{}.ours2.img", c.name));
    fs::write(&ours_copy, &ours_bytes).unwrap();

    // The kernel: mount on a loop device, kmmpd must run.
    if kernel {
        let lp = Loop::attach(&img);
        kernel_mount_cycle(&lp.dev, &dir.join(format!("{}.mnt", c.name)))
            .map_err(|d| e("kernel", d))?;
        drop(lp);
        let blk = mmp_block_of(&img);
        if blk.mmp_seq != EXT4_MMP_SEQ_CLEAN {
            return Err(e(
                "kernel",
                format!("MMP block not CLEAN after umount: seq {:#x}", blk.mmp_seq),
            ));
        }
    }

    // disable
    let (code, j, err) = tool_json(&["disable", img.to_str().unwrap()]);
    if code != 0 {
        return Err(e("disable", format!("exit {code}: {err} {j}")));
    }
    let fsck = e2fsck_n(&img);
    if !fsck.status.success() {
        return Err(e("e2fsck -fn after disable", text(&fsck)));
    }
    let h = dumpe2fs_h(&img);
    if h.lines()
        .any(|l| l.starts_with("Filesystem features:") && l.split_whitespace().any(|f| f == "mmp"))
        || h.contains("MMP block number")
    {
        return Err(e("dumpe2fs -h after disable", h));
    }
    let after = superblock(&img);
    if after.free_blocks_count != before.free_blocks_count {
        return Err(e(
            "free blocks",
            format!(
                "before enable {}, after disable {}",
                before.free_blocks_count, after.free_blocks_count
            ),
        ));
    }

    // disable compared with tune2fs -f -O ^mmp (-f: no MMP wait) on the identical copies.
    let (code, _, err) = tool_json(&["disable", ours_copy.to_str().unwrap()]);
    if code != 0 {
        return Err(e("disable (copy)", err));
    }
    run_ok(
        Command::new("tune2fs")
            .args(["-f", "-O", "^mmp"])
            .arg(&theirs),
    );
    let ours2 = fs::read(&ours_copy).unwrap();
    compare_masked(&ours2, &fs::read(&theirs).unwrap(), &geo_before, block)
        .map_err(|d| e("compared with tune2fs -O ^mmp", d))?;
    let bs = c.bs as usize;
    if ours2[block as usize * bs..(block as usize + 1) * bs]
        .iter()
        .any(|&b| b != 0)
    {
        return Err(e("disable", "the old MMP block is not zeroed".into()));
    }
    for p in [&img, &theirs, &ours_copy] {
        let _ = fs::remove_file(p);
    }
    Ok(format!(
        "{}: block {block} (group {group}{}), {} groups, {} backups",
        c.name,
        if uninit_expected {
            ", was BLOCK_UNINIT"
        } else {
            ""
        },
        geo_before.group_count,
        geo_before.backup_groups().len()
    ))
}

#[test]
fn enable_disable_matrix() {
    if !require_e2fsprogs() {
        return;
    }
    let kernel = require_loop_devices();
    assert!(CASES.len() >= 24);
    let dir = tempfile::tempdir().unwrap();
    let next = Mutex::new(0usize);
    let results = Mutex::new(Vec::new());
    // Most of a case is spent in child processes and the 2 s claim watches: 6 workers keep two
    // cores busy without oversubscribing them.
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(c) = CASES.get(i) else { break };
                let r = std::panic::catch_unwind(|| run_case(c, dir.path(), kernel))
                    .unwrap_or_else(|p| {
                        Err(format!(
                            "{}: panicked: {:?}",
                            c.name,
                            p.downcast_ref::<String>()
                        ))
                    });
                results.lock().unwrap().push(r);
            });
        }
    });
    let results = results.into_inner().unwrap();
    let mut failed = Vec::new();
    for r in &results {
        match r {
            Ok(line) => eprintln!("ok   {line}"),
            Err(line) => {
                eprintln!("FAIL {line}");
                failed.push(line.clone());
            }
        }
    }
    assert_eq!(results.len(), CASES.len());
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        CASES.len(),
        failed.join("\n")
    );
}

/// `interval` on real images: dumpe2fs, e2fsck, e2mmpstatus and the kernel agree.
#[test]
fn interval_then_kernel() {
    if !require_e2fsprogs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in [
        (
            "iv-meta",
            &[
                "-b",
                "4096",
                "-g",
                "1024",
                "-O",
                "64bit,flex_bg,metadata_csum,mmp",
            ][..],
        ),
        ("iv-none", &["-b", "1024", "-O", "^64bit,mmp"][..]),
    ] {
        let img = mkfs(dir.path(), name, 16, args);
        let p = img.to_str().unwrap();
        let (code, j, err) = tool_json(&["interval", p, "1"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(j["changed"], true);
        assert!(dumpe2fs_h(&img).contains("MMP update interval:      1\n"));
        assert_eq!(mmp_block_of(&img).mmp_check_interval, 5);
        let (code, j, _) = tool_json(&["interval", p, "17"]);
        assert_eq!(code, 0);
        assert_eq!(j["check_interval"], 17);
        assert_eq!(mmp_block_of(&img).mmp_check_interval, 17);
        let (code, j, _) = tool_json(&["interval", p, "17"]);
        assert_eq!(
            (code, j["changed"].as_bool()),
            (0, Some(false)),
            "nothing to do the second time"
        );
        assert!(e2fsck_n(&img).status.success(), "{}", text(&e2fsck_n(&img)));
        assert!(run(Command::new("e2mmpstatus").arg(&img)).status.success());
        let geo = geometry(&img);
        let data = fs::read(&img).unwrap();
        for g in geo.backup_groups() {
            let o = geo.superblock_offset(g) as usize;
            let b = libmmp::ondisk::superblock::Superblock::parse(&data[o..o + 1024]).unwrap();
            assert_eq!(
                b.s_mmp_update_interval, 17,
                "backup superblock in group {g}"
            );
        }
        if require_loop_devices() {
            let lp = Loop::attach(&img);
            kernel_mount_cycle(&lp.dev, &dir.path().join(format!("{name}.mnt"))).unwrap();
            drop(lp);
            assert_eq!(
                mmp_block_of(&img).mmp_seq,
                EXT4_MMP_SEQ_CLEAN,
                "CLEAN after umount"
            );
        }
    }
}

/// The block-device path: O_EXCL, O_DIRECT with BLKSSZGET-aligned I/O, and on 4 KiB logical
/// sectors the read-modify-write of 1 KiB superblocks and MMP structures; e2fsck, e2mmpstatus
/// and the kernel use the same loop device. A filesystem whose blocks are smaller than the
/// sectors is refused (neither the kernel nor e2fsprogs could use its MMP block there).
#[test]
fn edits_through_loop_block_devices() {
    if !require_e2fsprogs() || !require_loop_devices() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: [(&str, &str, &[&str], bool); 3] = [
        (
            "bd512",
            "512",
            &[
                "-b",
                "1024",
                "-g",
                "2048",
                "-O",
                "64bit,flex_bg,metadata_csum",
            ],
            true,
        ),
        (
            "bd4k",
            "4096",
            &[
                "-b",
                "4096",
                "-g",
                "1024",
                "-O",
                "64bit,flex_bg,metadata_csum",
            ],
            true,
        ),
        (
            "bd4k-1k",
            "4096",
            &["-b", "1024", "-g", "2048", "-O", "uninit_bg"],
            false,
        ),
    ];
    for (name, sector, args, usable) in cases {
        let img = mkfs(d, name, 16, args);
        let free_before = superblock(&img).free_blocks_count;
        let theirs = d.join(format!("{name}.tune2fs.img"));
        fs::copy(&img, &theirs).unwrap();
        run_ok(Command::new("tune2fs").args(["-O", "mmp"]).arg(&theirs));
        let lp = Loop::attach_with(&img, &["--sector-size", sector]);
        let dev = lp.dev.to_str().unwrap();
        if !usable {
            let before = fs::read(&img).unwrap();
            let (code, j, err) = tool_json(&["enable", dev]);
            assert_eq!(
                (code, j["reason"].as_str()),
                (2, Some("block_smaller_than_sector")),
                "{err}"
            );
            assert_eq!(fs::read(&img).unwrap(), before, "nothing written");
            continue;
        }
        let (code, j, err) = tool_json(&["enable", dev, "--interval", "3"]);
        assert_eq!(code, 0, "{name}: {err} {j}");
        assert_eq!(
            j["mmp_block"].as_u64(),
            Some(superblock(&theirs).s_mmp_block),
            "{name}: same block as tune2fs"
        );
        let fsck = run(Command::new("e2fsck").arg("-fn").arg(dev));
        assert!(fsck.status.success(), "{name}: {}", text(&fsck));
        assert!(
            run(Command::new("e2mmpstatus").arg(dev)).status.success(),
            "{name}"
        );
        kernel_mount_cycle(&lp.dev, &d.join(format!("{name}.mnt"))).unwrap();
        let (code, j, err) = tool_json(&["interval", dev, "7"]);
        assert_eq!(
            (code, j["check_interval"].as_u64()),
            (0, Some(7)),
            "{name}: {err}"
        );
        let (code, j, _) = tool_json(&["clear", dev]);
        assert_eq!(
            (code, j["changed"].as_bool()),
            (0, Some(false)),
            "{name}: clean, nothing to do"
        );
        let (code, j, err) = tool_json(&["disable", dev]);
        assert_eq!(code, 0, "{name}: {err} {j}");
        let fsck = run(Command::new("e2fsck").arg("-fn").arg(dev));
        assert!(fsck.status.success(), "{name}: {}", text(&fsck));
        drop(lp);
        assert_eq!(superblock(&img).free_blocks_count, free_before, "{name}");
    }
}

/// Issue 12, defect 3c: an update interval set with `tune2fs -E mmp_update_interval=N` while MMP
/// is off survives `enable` without `--interval`, as it survives `tune2fs -O mmp`
/// (`ext2fs_mmp_init` only replaces 0). Both tools on copies of the same image: the same
/// superblock interval, the same check interval in the MMP block, the same bytes otherwise.
/// `--interval` replaces it.
#[test]
fn enable_keeps_an_interval_set_with_tune2fs() {
    if !require_e2fsprogs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, args) in [
        (
            "kept-meta",
            &[
                "-b",
                "4096",
                "-g",
                "1024",
                "-O",
                "64bit,flex_bg,metadata_csum",
            ][..],
        ),
        ("kept-none", &["-b", "1024", "-O", "^64bit,uninit_bg"][..]),
    ] {
        let img = mkfs(d, name, 16, args);
        run_ok(
            Command::new("tune2fs")
                .args(["-E", "mmp_update_interval=17"])
                .arg(&img),
        );
        assert!(!superblock(&img).has_mmp(), "{name}: MMP still off");
        assert_eq!(superblock(&img).s_mmp_update_interval, 17, "{name}");
        let geo = geometry(&img);
        let given = d.join(format!("{name}.given.img"));
        fs::copy(&img, &given).unwrap();
        let theirs = d.join(format!("{name}.tune2fs.img"));
        fs::copy(&img, &theirs).unwrap();
        run_ok(Command::new("tune2fs").args(["-O", "mmp"]).arg(&theirs));

        let (code, j, err) = tool_json(&["enable", img.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: {err} {j}");
        assert_eq!(j["update_interval"], 17, "{name}: {j}");
        let (ours_sb, theirs_sb) = (superblock(&img), superblock(&theirs));
        assert_eq!(
            ours_sb.s_mmp_update_interval, theirs_sb.s_mmp_update_interval,
            "{name}: s_mmp_update_interval, ours vs tune2fs"
        );
        assert_eq!(
            theirs_sb.s_mmp_update_interval, 17,
            "{name}: tune2fs kept it"
        );
        assert_eq!(
            mmp_block_of(&img).mmp_check_interval,
            mmp_block_of(&theirs).mmp_check_interval,
            "{name}: the MMP block's check interval, ours vs tune2fs"
        );
        assert_eq!(mmp_block_of(&img).mmp_check_interval, 17, "{name}");
        compare_masked(
            &fs::read(&img).unwrap(),
            &fs::read(&theirs).unwrap(),
            &geo,
            ours_sb.s_mmp_block,
        )
        .unwrap_or_else(|diff| panic!("{name}: compared with tune2fs -O mmp: {diff}"));
        assert!(e2fsck_n(&img).status.success(), "{}", text(&e2fsck_n(&img)));
        assert!(run(Command::new("e2mmpstatus").arg(&img)).status.success());

        let (code, j, err) = tool_json(&["enable", given.to_str().unwrap(), "--interval", "9"]);
        assert_eq!(code, 0, "{name}: {err} {j}");
        assert_eq!(superblock(&given).s_mmp_update_interval, 9, "{name}");
        assert_eq!(mmp_block_of(&given).mmp_check_interval, 9, "{name}");
    }
}
