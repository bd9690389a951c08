//! The fault disk itself: a loop device over the FUSE file serves I/O, fails it with EIO,
//! delays it and stalls it on command, and logs every write (root and /dev/fuse; skips
//! otherwise, fails under CI=true).

use test_support::prelude::*;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// One 4 KiB O_DIRECT write of `byte` at block `block` of `dev`.
fn dd_write(dev: &Path, block: u64, byte: u8) -> Output {
    let script = format!(
        "printf '%4096s' '' | tr ' ' '\\{byte:03o}' | dd of={} bs=4096 count=1 seek={block} oflag=direct conv=notrunc status=none",
        dev.display()
    );
    run(Command::new("sh").args(["-c", &script]))
}

#[test]
fn loop_fuse_fault_disk_serves_fails_delays_and_stalls() {
    if !require_fuse() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let disk = FaultDisk::new(&img).expect("FUSE disk");

    assert!(dd_write(disk.dev(), 3, b'a').status.success());
    assert_eq!(std::fs::read(&img).unwrap()[3 * 4096], b'a', "landed");
    let w = disk.writes_at(3 * 4096);
    assert_eq!(w.len(), 1);
    assert!(w[0].landed && w[0].data.iter().all(|&b| b == b'a'));

    disk.set(Fault::Fail);
    let out = dd_write(disk.dev(), 4, b'b');
    assert!(!out.status.success(), "a failing disk took a write");
    assert!(disk.failed_ios() >= 1);
    assert_eq!(std::fs::read(&img).unwrap()[4 * 4096], 0, "nothing landed");

    disk.set(Fault::Delay(Duration::from_millis(300)));
    let t = Instant::now();
    assert!(dd_write(disk.dev(), 5, b'c').status.success());
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );

    disk.set(Fault::Stall);
    let dev = disk.dev().to_path_buf();
    let writer = std::thread::spawn(move || dd_write(&dev, 6, b'd'));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!writer.is_finished(), "a stalled disk completed a write");
    disk.set(Fault::None);
    assert!(writer.join().unwrap().status.success());
    assert_eq!(std::fs::read(&img).unwrap()[6 * 4096], b'd');
}
