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
use crate::ondisk::superblock::{
    feature, superblock_csum, Superblock, EXT2_VALID_FS, EXT4_CRC32C_CHKSUM, EXT4_SUPER_MAGIC,
    SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, S_BLOCKS_COUNT_LO, S_BLOCKS_PER_GROUP, S_CHECKSUM,
    S_CHECKSUM_TYPE, S_FEATURE_INCOMPAT, S_FEATURE_RO_COMPAT, S_FIRST_DATA_BLOCK, S_LOG_BLOCK_SIZE,
    S_LOG_CLUSTER_SIZE, S_MAGIC, S_MMP_BLOCK, S_MMP_UPDATE_INTERVAL, S_REV_LEVEL, S_STATE, S_UUID,
    S_VOLUME_NAME,
};

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
    S_BLOCKS_COUNT_LO.put(&mut sb, 2);
    S_FIRST_DATA_BLOCK.put(&mut sb, 0);
    S_LOG_BLOCK_SIZE.put(&mut sb, 2); // 4096
    S_LOG_CLUSTER_SIZE.put(&mut sb, 2);
    S_BLOCKS_PER_GROUP.put(&mut sb, 32768);
    S_MAGIC.put(&mut sb, EXT4_SUPER_MAGIC);
    S_STATE.put(&mut sb, EXT2_VALID_FS);
    S_REV_LEVEL.put(&mut sb, 1); // dynamic
    S_FEATURE_INCOMPAT.put(&mut sb, feature::INCOMPAT_MMP | INCOMPAT_MMP_AREA);
    S_FEATURE_RO_COMPAT.put(&mut sb, feature::RO_COMPAT_METADATA_CSUM);
    S_UUID.put(&mut sb, uuid);
    sb[S_VOLUME_NAME.offset..][..AREA_LABEL.len()].copy_from_slice(AREA_LABEL.as_bytes());
    S_MMP_UPDATE_INTERVAL.put(&mut sb, update_interval);
    S_MMP_BLOCK.put(&mut sb, 1);
    S_CHECKSUM_TYPE.put(&mut sb, EXT4_CRC32C_CHKSUM);
    let csum = superblock_csum(&sb);
    S_CHECKSUM.put(&mut sb, csum);
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
    use crate::io::MemDevice;

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
        bad[1024 + S_MMP_UPDATE_INTERVAL.offset] ^= 1;
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
