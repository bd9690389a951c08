//! MMP areas: the ext4 MMP protocol for devices that are not ext4 (XFS, btrfs, raw).
//!
//! An area is a small dedicated device, partition or file (8 KiB is enough) laid out like the
//! start of an ext4 filesystem, so that everything that reads an ext4 MMP block (`MmpFs`, the
//! check, the claim, mmpd, `mmp-tool status`) works on it unchanged:
//!
//! | bytes        | content                                                             |
//! |--------------|---------------------------------------------------------------------|
//! | 0..1024      | zero                                                                |
//! | 1024..2048   | a superblock: magic 0xEF53, 4 KiB blocks, 2 blocks, `INCOMPAT_MMP`, `s_mmp_block` = 1, `metadata_csum` (so the MMP block and the superblock carry checksums), label `mmp-area`, and the [`INCOMPAT_MMP_AREA`] bit |
//! | 4096..8192   | the MMP block (CLEAN when formatted)                                |
//!
//! `INCOMPAT_MMP_AREA` is an incompatible-feature bit no ext4 implementation knows, so the
//! kernel refuses to mount an area ("unsupported optional features") and e2fsprogs refuses to
//! open it: nobody mistakes it for a filesystem.

use crate::ondisk::mmp::{MmpBlock, EXT4_MMP_SEQ_CLEAN};
use crate::ondisk::superblock::{feature, superblock_csum, EXT4_CRC32C_CHKSUM, EXT4_SUPER_MAGIC};
use crate::ondisk::superblock::{Superblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};

/// The incompatible-feature bit that marks an MMP area (the top bit: unused by ext4).
pub const INCOMPAT_MMP_AREA: u32 = 0x8000_0000;
/// Block size of an area.
pub const AREA_BLOCK_SIZE: u32 = 4096;
/// Bytes an area occupies: the superblock's block and the MMP block.
pub const AREA_SIZE: usize = 2 * AREA_BLOCK_SIZE as usize;
/// The area's volume label.
pub const AREA_LABEL: &str = "mmp-area";

/// Whether this superblock describes an MMP area rather than a filesystem.
pub fn is_area(sb: &Superblock) -> bool {
    sb.s_feature_incompat & INCOMPAT_MMP_AREA != 0
}

/// The first [`AREA_SIZE`] bytes of a new area, with a CLEAN MMP block naming `nodename` and
/// `bdevname`. `update_interval` is `s_mmp_update_interval` (1..=300).
pub fn area_image(
    uuid: [u8; 16],
    update_interval: u16,
    time: u64,
    nodename: &str,
    bdevname: &str,
) -> Vec<u8> {
    let mut img = vec![0u8; AREA_SIZE];
    let mut sb = [0u8; SUPERBLOCK_SIZE];
    let put16 =
        |b: &mut [u8], off: usize, v: u16| b[off..off + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |b: &mut [u8], off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    // Offsets from `struct ext4_super_block` (fs/ext4/ext4.h).
    put32(&mut sb, 0x004, 2); // s_blocks_count_lo
    put32(&mut sb, 0x014, 0); // s_first_data_block
    put32(&mut sb, 0x018, 2); // s_log_block_size: 4096
    put32(&mut sb, 0x01C, 2); // s_log_cluster_size
    put32(&mut sb, 0x020, 32768); // s_blocks_per_group
    put16(&mut sb, 0x038, EXT4_SUPER_MAGIC); // s_magic
    put16(&mut sb, 0x03A, 1); // s_state: clean
    put32(&mut sb, 0x04C, 1); // s_rev_level: dynamic
    put32(&mut sb, 0x060, feature::INCOMPAT_MMP | INCOMPAT_MMP_AREA); // s_feature_incompat
    put32(&mut sb, 0x064, feature::RO_COMPAT_METADATA_CSUM); // s_feature_ro_compat
    sb[0x068..0x078].copy_from_slice(&uuid); // s_uuid
    sb[0x078..0x078 + AREA_LABEL.len()].copy_from_slice(AREA_LABEL.as_bytes()); // s_volume_name
    put16(&mut sb, 0x166, update_interval); // s_mmp_update_interval
    put32(&mut sb, 0x168, 1); // s_mmp_block (lo; hi stays 0)
    sb[0x175] = EXT4_CRC32C_CHKSUM; // s_checksum_type
    let csum = superblock_csum(&sb);
    put32(&mut sb, 0x3FC, csum); // s_checksum
    let off = SUPERBLOCK_OFFSET as usize;
    img[off..off + SUPERBLOCK_SIZE].copy_from_slice(&sb);
    let parsed = Superblock::parse(&sb).expect("the area superblock is valid by construction");
    let ci = update_interval.max(crate::ondisk::mmp::EXT4_MMP_MIN_CHECK_INTERVAL);
    let blk = MmpBlock::new(EXT4_MMP_SEQ_CLEAN, time, nodename, bdevname, ci);
    let mmp_off = AREA_BLOCK_SIZE as usize;
    img[mmp_off..mmp_off + 1024].copy_from_slice(&blk.encode(parsed.mmp_csum_seed()));
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::MmpFs;
    use crate::io::device::MemDevice;

    #[test]
    fn an_area_reads_like_an_ext4_mmp_filesystem() {
        let img = area_image([9; 16], 1, 123, "node", "sdz1");
        let fs = MmpFs::open(MemDevice::new("area", img.clone())).unwrap();
        assert!(is_area(fs.superblock()));
        assert_eq!(fs.require_mmp().unwrap(), 1);
        assert_eq!(fs.superblock().block_size(), AREA_BLOCK_SIZE);
        let b = fs.read_mmp().unwrap();
        assert_eq!(b.mmp_seq, EXT4_MMP_SEQ_CLEAN);
        assert_eq!(b.nodename(), "node");
        assert_eq!(b.mmp_check_interval, 5);
        assert_eq!(fs.superblock().label(), AREA_LABEL);
        // Checksums protect both structures.
        let mut bad = img.clone();
        bad[4096 + 8] ^= 1;
        let fs = MmpFs::open(MemDevice::new("area", bad)).unwrap();
        assert!(fs.read_mmp().unwrap_err().is_bad_mmp_checksum());
        let mut bad = img;
        bad[1024 + 0x166] ^= 1;
        assert!(MmpFs::open(MemDevice::new("area", bad)).is_err());
    }

    #[test]
    fn an_area_can_be_claimed_and_held() {
        use crate::protocol::claim::tests::{opts, FakeClock};
        use crate::protocol::clock::Clock;
        let clock = FakeClock::default();
        let fs = MmpFs::open(MemDevice::new("area", area_image([1; 16], 1, 0, "n", "d"))).unwrap();
        let c = crate::protocol::claim::claim(
            &fs,
            &clock,
            &mut || Ok(77),
            &opts("me"),
            &|| false,
            &mut |_, _, _| {},
        )
        .unwrap();
        let mut hb = crate::protocol::heartbeat::Heartbeat::new(fs, &c, Default::default(), &clock);
        for _ in 0..3 {
            hb.beat(&clock).unwrap();
            clock.sleep(std::time::Duration::from_secs(1));
        }
        assert_eq!(hb.seq(), 80);
    }
}
