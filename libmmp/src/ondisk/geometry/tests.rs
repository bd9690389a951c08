//! Geometry tests: backup groups under sparse_super and sparse_super2.

use super::*;

#[test]
fn backups_follow_sparse_super_rules() {
    let mut geo = test_geometry(1024, 1024, 1024 * 200 + 1, false);
    geo.sparse_super = true;
    assert_eq!(
        geo.backup_groups(),
        vec![1, 3, 5, 7, 9, 25, 27, 49, 81, 125],
        "powers of 3, 5 and 7"
    );
    geo.sparse_super = false;
    assert_eq!(geo.backup_groups().len(), geo.group_count as usize - 1);
    geo.sparse_super2 = Some([1, 150]);
    assert_eq!(geo.backup_groups(), vec![1, 150]);
    geo.sparse_super2 = Some([0, 0]);
    assert!(geo.backup_groups().is_empty());
    geo.sparse_super2 = Some([7, 5000]);
    assert_eq!(
        geo.backup_groups(),
        vec![7],
        "out-of-range backup groups are ignored"
    );
}

/// A geometry for tests: `blocks` blocks of `bs` bytes, `bpg` per group.
pub(crate) fn test_geometry(bs: u32, bpg: u32, blocks: u64, csum: bool) -> Geometry {
    let fdb = u64::from(bs == 1024);
    let group_count = (blocks - fdb).div_ceil(u64::from(bpg)) as u32;
    Geometry {
        block_size: bs,
        first_data_block: fdb,
        blocks_count: blocks,
        blocks_per_group: bpg,
        group_count,
        desc_size: 32,
        desc_blocks: u64::from(group_count).div_ceil(u64::from(bs) / 32),
        reserved_gdt_blocks: 3,
        inode_blocks_per_group: 4,
        sparse_super: true,
        sparse_super2: None,
        desc_csum: if csum {
            DescCsum::Crc32c { seed: 99 }
        } else {
            DescCsum::None
        },
        bitmap_csum_seed: csum.then_some(99),
    }
}
