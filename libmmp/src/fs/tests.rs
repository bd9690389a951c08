//! Tests of the write side: spans, a written block reads back, a short device is an error.

use super::*;
use crate::io::{Access, MemDevice};
use crate::ondisk::mmp::MmpBlock;
use crate::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
use crate::ondisk::superblock::tests::sample;

#[test]
fn spans() {
    assert_eq!(mmp_write_span(1024, 512), Ok(1024));
    assert_eq!(mmp_write_span(4096, 512), Ok(1024));
    assert_eq!(mmp_write_span(4096, 4096), Ok(4096));
    assert_eq!(
        mmp_write_span(1024, 4096),
        Err(WriteSpanError::SectorLargerThanBlock {
            block_size: 1024,
            sector: 4096
        })
    );
    assert_eq!(
        mmp_write_span(4096, 0),
        Err(WriteSpanError::SectorNotAligned { sector: 0 })
    );
    assert_eq!(mmp_write_span(2048, 2048), Ok(2048));
}

#[test]
fn written_block_reads_back_with_checksum() {
    let mut data = vec![0u8; 1001 * 4096];
    data[1024..2048].copy_from_slice(&sample(true));
    // Something after the struct in the MMP block must survive.
    data[1000 * 4096 + 2000] = 0xAB;
    let fs = MmpFs::open(MemDevice::new("m", data)).unwrap();
    let blk = MmpBlock::new(EXT4_MMP_SEQ_CLEAN, 5, "node", "dev", 5);
    fs.write_mmp_synced(&blk).unwrap();
    let back = fs.read_mmp().unwrap();
    assert_eq!(back.mmp_seq, EXT4_MMP_SEQ_CLEAN);
    assert_eq!(back.nodename(), "node");
    assert_eq!(fs.device().snapshot()[1000 * 4096 + 2000], 0xAB);
}

#[test]
fn truncated_device_is_an_error_not_a_panic() {
    let mut data = vec![0u8; 1000 * 4096 + 100];
    data[1024..2048].copy_from_slice(&sample(false));
    let fs = MmpFs::open(MemDevice::new("short", data)).unwrap();
    let e = fs
        .write_mmp_synced(&MmpBlock::new(1, 0, "n", "d", 5))
        .unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
}

/// A path that holds no ext2/3/4 filesystem: the error names what libblkid sees there.
#[test]
fn open_path_names_what_libblkid_sees() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.img");
    std::fs::write(&empty, vec![0u8; 64 << 10]).unwrap();
    let e = MmpFs::open_path(&empty, Access::ReadOnly).err().unwrap();
    assert!(
        matches!(&e, Error::NotExt4 { found: None, .. }),
        "zeros: nothing to name: {e}"
    );
    let swap = dir.path().join("swap.img");
    std::fs::write(&swap, vec![0u8; 1 << 20]).unwrap();
    let mkswap = std::process::Command::new("mkswap")
        .arg(&swap)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !mkswap.is_ok_and(|s| s.success()) {
        eprintln!("skipping the libblkid half: no mkswap");
        return;
    }
    let e = MmpFs::open_path(&swap, Access::ReadOnly).err().unwrap();
    assert!(
        matches!(&e, Error::NotExt4 { found: Some(t), .. } if t == "swap"),
        "{e}"
    );
    assert!(e.to_string().contains("libblkid sees swap"), "{e}");
}

#[test]
fn a_file_of_zeros_is_not_ext4_and_nothing_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("zeros.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    match MmpFs::open_path(&img, Access::ReadOnly) {
        Err(Error::NotExt4 { found, .. }) => assert_eq!(found, None),
        r => panic!("{:?}", r.map(|_| ())),
    }
}

#[test]
fn a_missing_path_is_an_open_error() {
    let r = MmpFs::open_path(Path::new("/nonexistent/mmp-open-test"), Access::ReadOnly);
    assert!(matches!(r, Err(Error::Open(_))), "{:?}", r.map(|_| ()));
}
