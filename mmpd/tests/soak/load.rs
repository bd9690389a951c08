//! The competing I/O load: one thread writes 1 MiB blocks with O_DIRECT round a 256 MiB file on
//! the same filesystem as the images (`fdatasync` every 16 MiB), another reads random 1 MiB
//! blocks of what was written, also O_DIRECT, so the disk under the loop devices never rests.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const BLOCK: u64 = 1 << 20;
const FILE_SIZE: u64 = 256 << 20;
const SYNC_EVERY: u64 = 16;
/// O_DIRECT wants buffers aligned to the logical block size; a page is always enough.
const ALIGN: usize = 4096;

/// Bytes moved so far.
#[derive(Default)]
pub struct Load {
    pub written: AtomicU64,
    pub read: AtomicU64,
}

/// A buffer of `BLOCK` bytes at an aligned address inside `v` (no unsafe code: the Vec is
/// larger by one alignment and the block starts where the address is aligned).
fn aligned(v: &mut Vec<u8>) -> &mut [u8] {
    v.resize(BLOCK as usize + ALIGN, 0xa5);
    let off = v.as_ptr().align_offset(ALIGN);
    &mut v[off..off + BLOCK as usize]
}

fn open_direct(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap_or_else(|e| panic!("load: open {} O_DIRECT: {e}", path.display()))
}

/// Write round the file until `stop`.
pub fn write(path: &Path, stop: &AtomicBool, load: &Load) {
    let f = open_direct(path);
    let mut v = Vec::new();
    let buf = aligned(&mut v);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        f.write_all_at(buf, (n * BLOCK) % FILE_SIZE)
            .expect("load: write");
        n += 1;
        if n % SYNC_EVERY == 0 {
            f.sync_data().expect("load: fdatasync");
        }
        load.written.fetch_add(BLOCK, Ordering::Relaxed);
    }
}

/// Read random written blocks until `stop` (xorshift: no dependency for a random offset).
pub fn read(path: &Path, stop: &AtomicBool, load: &Load) {
    let f = open_direct(path);
    let mut v = Vec::new();
    let buf = aligned(&mut v);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while !stop.load(Ordering::Relaxed) {
        let blocks = load.written.load(Ordering::Relaxed).min(FILE_SIZE) / BLOCK;
        if blocks == 0 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.read_exact_at(buf, (x % blocks) * BLOCK)
            .expect("load: read");
        load.read.fetch_add(BLOCK, Ordering::Relaxed);
    }
}
