//! `mmp-tool format-area` on image files: the area reads like an ext4 MMP block to every
//! subcommand, e2fsprogs refuses to open it, and nothing in use or foreign is overwritten.

mod support;

use libmmp::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
use std::path::Path;
use std::process::Command;
use support::*;
use test_support::prelude::*;

#[test]
fn file_format_area_then_status_check_and_e2fsprogs_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let area = dir.path().join("area.bin");
    let a = area.to_str().unwrap();
    let (code, out, err) = tool(&run, &["format-area", "--json", "--interval", "2", a]);
    assert_eq!(code, 0, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["formatted"], true);
    assert_eq!(std::fs::metadata(&area).unwrap().len(), 8192);
    let blk = read_block(&area);
    assert_eq!(blk.mmp_seq, EXT4_MMP_SEQ_CLEAN);
    assert_eq!(blk.mmp_check_interval, 5);
    let (code, out, _) = tool(&run, &["status", "--json", a]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["state"], "clean");
    assert_eq!(j["label"], "mmp-area");
    assert_eq!(j["update_interval"], 2);
    let (code, _, _) = tool(&run, &["check", a]);
    assert_eq!(code, 0);
    // A mounted-looking area is refused by mount, and e2fsprogs will not open it.
    let (code, _, err) = tool(&run, &["mount", a, dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is an MMP area"), "{err}");
    if Path::new("/usr/sbin/e2mmpstatus").exists() {
        let o = Command::new("e2mmpstatus").arg(&area).output().unwrap();
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("unsupported feature"),
            "{o:?}"
        );
    }
    // A held (live) area is not reformatted; a clean one is.
    write_foreign(&area, 0x1234, "holder");
    let (code, _, err) = tool(&run, &["format-area", a]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("holder"), "{err}");
    assert_eq!(read_block(&area).mmp_seq, 0x1234);
    write_foreign(&area, EXT4_MMP_SEQ_CLEAN, "holder");
    let (code, _, err) = tool(&run, &["format-area", a]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn file_format_area_refuses_a_filesystem_and_tiny_devices() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let run = img.file("run");
    let before = std::fs::read(&img.path).unwrap();
    let (code, _, err) = tool(&run, &["format-area", img.path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ext2/3/4 filesystem"), "{err}");
    assert!(
        std::fs::read(&img.path).unwrap() == before,
        "nothing written"
    );
    let tiny = img.file("tiny");
    std::fs::write(&tiny, [0u8; 4096]).unwrap();
    let (code, _, err) = tool(&run, &["format-area", tiny.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs 8192"), "{err}");
}
