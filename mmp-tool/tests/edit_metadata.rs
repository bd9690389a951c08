//! Defect 3d of issue 12: an `s_mmp_block` that points into filesystem metadata (superblock
//! copies, descriptor tables, reserved GDT, bitmaps, inode tables) or past the end is refused by
//! every command that would write the MMP block there, and nothing is written.
//!
//! Run: `cargo test -p mmp-tool --test edit_metadata`.

mod edit_support;

use edit_support::*;
use std::fs;
use std::process::Command;
use test_support::cmd::{run, run_ok, text};
use test_support::require::require_e2fsprogs;

/// The first block of a `"<label> at N-M"` or `"<label> at N"` field in dumpe2fs's description
/// of group `g`, and its last block.
fn dumpe2fs_range(dump: &str, g: u32, label: &str) -> (u64, u64) {
    let head = format!("Group {g}: ");
    let group = dump
        .split_once(&head)
        .unwrap_or_else(|| panic!("no {head:?} in dumpe2fs"))
        .1;
    let group = group.split("\nGroup ").next().unwrap();
    let field = group
        .split_once(&format!("{label} at "))
        .unwrap_or_else(|| panic!("group {g}: no {label:?}: {group}"))
        .1;
    let span: String = field
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    let (lo, hi) = span.split_once('-').unwrap_or((&span, &span));
    (lo.parse().unwrap(), hi.parse().unwrap())
}

/// Issue 12, defect 3d: `s_mmp_block` pointing into filesystem metadata or past the end. Every
/// command that would write the MMP block there (`clear` with and without `--force`,
/// `interval`, `disable`, and `enable` on a filesystem that has MMP) is refused with exit 2 (a
/// corrupt filesystem), a message that names what lies at that block (as dumpe2fs places it)
/// and the way out, and the image byte-for-byte unchanged.
#[test]
fn refuses_an_mmp_block_in_metadata_or_past_the_end() {
    if !require_e2fsprogs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = mkfs(dir.path(), "meta", 16, META_MMP);
    let dump = text(&run_ok(Command::new("dumpe2fs").arg(&base)));
    let blocks_count = superblock(&base).blocks_count;
    let at = |g, label| dumpe2fs_range(&dump, g, label);
    let (rsv_lo, rsv_hi) = at(0, "Reserved GDT blocks");
    let (itable_lo, itable_hi) = at(3, "Inode table");
    let cases: Vec<(&str, u64, String)> = vec![
        (
            "primary-sb",
            at(0, "Primary superblock").0,
            "the primary superblock".into(),
        ),
        (
            "backup-sb",
            at(3, "Backup superblock").0,
            "the backup superblock of group 3".into(),
        ),
        (
            "gdt",
            at(0, "Group descriptors").0,
            "in the primary group descriptor table".into(),
        ),
        (
            "backup-gdt",
            at(1, "Group descriptors").1,
            "in the backup group descriptor table of group 1".into(),
        ),
        (
            "reserved-gdt",
            (rsv_lo + rsv_hi) / 2,
            "a reserved GDT block of group 0".into(),
        ),
        (
            "block-bitmap",
            at(2, "Block bitmap").0,
            "the block bitmap of group 2".into(),
        ),
        (
            "inode-bitmap",
            at(3, "Inode bitmap").0,
            "the inode bitmap of group 3".into(),
        ),
        (
            "inode-table",
            (itable_lo + itable_hi) / 2,
            "in the inode table of group 3".into(),
        ),
        (
            "past-end",
            blocks_count + 10,
            format!("past the end of the filesystem, which has {blocks_count} blocks"),
        ),
    ];
    let commands: [(&str, &[&str]); 5] = [
        ("clear", &["--force"]),
        ("clear", &[]),
        ("interval", &["7"]),
        ("disable", &[]),
        ("enable", &[]),
    ];
    for (name, block, what) in cases {
        let img = dir.path().join(format!("{name}.img"));
        fs::copy(&base, &img).unwrap();
        edit_superblock(&img, |sb| sb.s_mmp_block = block);
        let p = img.to_str().unwrap();
        let reason = if name == "past-end" {
            "bad_mmp_block_number"
        } else {
            "mmp_block_in_metadata"
        };
        for (sub, extra) in commands {
            let msg = refused(&img, p, sub, extra, 2, reason);
            assert!(
                msg.contains(&format!("block {block} is {what}")),
                "{name}: {sub}: names what lies at block {block}: {msg}"
            );
            assert!(
                msg.contains(&format!("tune2fs -f -O ^mmp {p}"))
                    && msg.contains(&format!("e2fsck -f {p}"))
                    && !msg.contains("mmp-tool clear"),
                "{name}: {sub}: the way out, and never clear: {msg}"
            );
        }
    }

    // The way out the message gives works and spares the metadata: tune2fs drops the pointer
    // without writing the block, e2fsck frees the old MMP block, enable allocates a free one.
    let img = dir.path().join("inode-table.img");
    let bs = u64::from(superblock(&img).block_size());
    let table =
        |data: &[u8]| data[(itable_lo * bs) as usize..((itable_hi + 1) * bs) as usize].to_vec();
    let before = table(&fs::read(&img).unwrap());
    run_ok(Command::new("tune2fs").args(["-f", "-O", "^mmp"]).arg(&img));
    let fix = run(Command::new("e2fsck").arg("-fy").arg(&img));
    assert!(fix.status.code().unwrap_or(8) <= 1, "{}", text(&fix));
    run_ok(Command::new(tool()).arg("enable").arg(&img));
    assert!(e2fsck_n(&img).status.success(), "{}", text(&e2fsck_n(&img)));
    assert!(run(Command::new("e2mmpstatus").arg(&img)).status.success());
    let sb = superblock(&img);
    assert!(sb.has_mmp() && !(itable_lo..=itable_hi).contains(&sb.s_mmp_block));
    assert_eq!(
        table(&fs::read(&img).unwrap()),
        before,
        "inode table of group 3 untouched"
    );
}
