//! Crashes at every write, a node starting during the claim, and devices with big sectors.

use super::*;

/// A device that fails every write after the first `ok` writes: a crash at that point.
struct Crashing {
    inner: MemDevice,
    ok: usize,
    writes: Cell<usize>,
}

impl BlockIo for Crashing {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.writes.get() >= self.ok {
            return Err(io::Error::other("simulated crash"));
        }
        self.writes.set(self.writes.get() + 1);
        self.inner.write_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn logical_block_size(&self) -> u32 {
        512
    }
    fn name(&self) -> &str {
        "mem.img"
    }
}

/// The safety invariant every crash point must keep: the superblock points at an MMP block only
/// if that block is allocated in its group's bitmap and holds a valid MMP structure, and every
/// descriptor still verifies. (Counts and bitmap checksums may lag: e2fsck -fy fixes those, as
/// the integration tests show with the real e2fsck.)
fn crash_safe(img: &[u8]) {
    let sb = Superblock::parse(&img[1024..2048]).expect("superblock");
    let geo = Geometry::from_superblock(&sb).unwrap();
    let bs = geo.block_size as usize;
    let off = geo.gdt_block(0) as usize * bs;
    let gt = GroupTable::from_bytes(&geo, img[off..off + geo.gdt_bytes()].to_vec())
        .expect("descriptors");
    if sb.has_mmp() {
        let g = geo.group_of(sb.s_mmp_block);
        let d = gt.desc(g);
        assert_eq!(d.bg_flags & EXT2_BG_BLOCK_UNINIT, 0);
        let o = d.bg_block_bitmap as usize * bs;
        assert!(test_bit(
            &img[o..o + bs],
            (sb.s_mmp_block - geo.group_first_block(g)) as usize
        ));
        let m = sb.mmp_offset() as usize;
        let blk = MmpBlock::parse(&img[m..m + 1024], sb.mmp_csum_seed()).expect("valid MMP block");
        assert_eq!(blk.mmp_magic, EXT4_MMP_MAGIC);
    }
}

#[test]
fn every_crash_point_is_safe() {
    for spec in [
        Spec {
            fill_group0: true,
            ..Spec::default()
        },
        Spec {
            csum: Csum::None,
            wide: false,
            ..Spec::default()
        },
    ] {
        let plain = build(spec);
        let on = enabled(spec);
        let full_enable = {
            let fs = fs_of(plain.clone());
            enable(&fs, None, &env()).unwrap().writes.len()
        };
        for ok in 0..full_enable {
            let fs = MmpFs::open(Crashing {
                inner: MemDevice::new("mem.img", plain.clone()),
                ok,
                writes: Cell::new(0),
            })
            .unwrap();
            let e = enable(&fs, None, &env()).unwrap_err();
            assert_eq!(e.reason(), "write_failed");
            if ok > 0 {
                assert!(e.to_string().contains("e2fsck -fy mem.img"), "{e}");
            }
            crash_safe(&fs.device().inner.snapshot());
        }
        for op in ["disable", "interval"] {
            for ok in 0..12 {
                let fs = MmpFs::open(Crashing {
                    inner: MemDevice::new("mem.img", on.clone()),
                    ok,
                    writes: Cell::new(0),
                })
                .unwrap();
                let clock = FakeClock::default();
                let r = if op == "disable" {
                    disable(
                        &fs,
                        &env(),
                        &clock,
                        Settle::For(CLAIM_SETTLE),
                        &mut no_progress(),
                    )
                } else {
                    set_interval(
                        &fs,
                        9,
                        &env(),
                        &clock,
                        Settle::For(CLAIM_SETTLE),
                        &mut no_progress(),
                    )
                };
                let img = fs.device().inner.snapshot();
                crash_safe(&img);
                if r.is_ok() {
                    check_consistent(&img);
                }
            }
        }
    }
}

#[test]
fn a_node_that_starts_during_the_claim_stops_the_edit() {
    let on = enabled(Spec::default());
    let sb = Superblock::parse(&on[1024..2048]).unwrap();
    for op in ["disable", "interval"] {
        let clock = FakeClock::default();
        let fs = MmpFs::open(racing(on.clone(), &sb, &clock, Duration::from_millis(700))).unwrap();
        let r = if op == "disable" {
            disable(
                &fs,
                &env(),
                &clock,
                Settle::For(CLAIM_SETTLE),
                &mut no_progress(),
            )
        } else {
            set_interval(
                &fs,
                9,
                &env(),
                &clock,
                Settle::For(CLAIM_SETTLE),
                &mut no_progress(),
            )
        };
        let e = r.unwrap_err();
        assert_eq!(e.reason(), "mmp_changed", "{op}: {e}");
        assert!(e.is_in_use());
        assert!(e.to_string().contains("node-b"), "{e}");
        assert!(
            e.to_string().contains("only the MMP block was written"),
            "{e}"
        );
        // Nothing but the MMP block differs from before.
        let img = fs.device().inner.snapshot();
        let m = sb.mmp_offset() as usize;
        assert_eq!(img[..m], on[..m]);
        assert_eq!(img[m + 1024..], on[m + 1024..]);
        assert!(
            clock.now() < Duration::from_millis(900),
            "seen at the first read after it started"
        );
    }
}
/// A 4 KiB-sector device that rejects unaligned writes, like O_DIRECT.
struct BigSectors(MemDevice);

impl BlockIo for BigSectors {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if offset % 4096 != 0 || buf.len() % 4096 != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "unaligned"));
        }
        self.0.write_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn logical_block_size(&self) -> u32 {
        4096
    }
    fn name(&self) -> &str {
        "mem.img"
    }
}

#[test]
fn enable_refuses_blocks_smaller_than_the_sectors() {
    let plain = build(Spec::default()); // 1 KiB blocks
    let fs = MmpFs::open(BigSectors(MemDevice::new("mem.img", plain.clone()))).unwrap();
    let e = enable(&fs, None, &env()).unwrap_err();
    assert_eq!(e.reason(), "block_smaller_than_sector", "{e}");
    assert!(e.to_string().contains("4096-byte logical sectors"), "{e}");
    assert_eq!(fs.device().0.snapshot(), plain);
}

#[test]
fn unaligned_structures_on_big_sectors_are_read_modify_written() {
    let spec = Spec {
        bs: 4096,
        bpg: 1024,
        groups: 5,
        last_short: 0,
        ..Spec::default()
    };
    let plain = build(spec);
    let fs = MmpFs::open(BigSectors(MemDevice::new("mem.img", plain.clone()))).unwrap();
    enable(&fs, None, &env()).unwrap();
    let a = fs.device().0.snapshot();
    let fs2 = fs_of(plain);
    enable(&fs2, None, &env()).unwrap();
    assert_eq!(
        a,
        fs2.device().snapshot(),
        "same result as with 512-byte sectors"
    );
    check_consistent(&a);
}
