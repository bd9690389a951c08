//! Bitmap tests: the bitmap of a `BLOCK_UNINIT` group.

use super::*;
use crate::ondisk::geometry::tests::test_geometry;

#[test]
fn uninit_bitmap_marks_metadata_and_padding() {
    // 1 KiB blocks, 256 blocks per group, 3 groups, the last one short (200 blocks).
    let geo = test_geometry(1024, 256, 1 + 256 * 2 + 200, true);
    let raw = vec![0u8; geo.gdt_bytes()];
    // Each group's bitmaps and inode table at +10, +11, +12..+16 of its own group, except
    // group 2 whose metadata lives in group 1 (as flex_bg could place it).
    let locs = [(11u64, 12u64, 13u64), (267, 268, 269), (280, 281, 282)];
    let mut gt = GroupTable::unverified(&geo, raw);
    for (g, (bb, ib, it)) in locs.iter().enumerate() {
        let mut d = gt.desc(g as u32);
        d.bg_block_bitmap = *bb;
        d.bg_inode_bitmap = *ib;
        d.bg_inode_table = *it;
        gt.set_desc(g as u32, &d);
    }
    let bm = geo.uninit_bitmap(1, &gt);
    let first = geo.group_first_block(1); // 257: a backup group (1)
    let used: Vec<u64> = (0..256)
        .filter(|&i| test_bit(&bm, i))
        .map(|i| first + i as u64)
        .collect();
    let mut expected: Vec<u64> = (257..257 + 1 + 1 + 3).collect(); // sb, 1 GDT block, 3 reserved
    expected.extend([267, 268, 269, 270, 271, 272]); // own bitmaps + 4 inode table blocks
    expected.extend([280, 281, 282, 283, 284, 285]); // group 2's, which sit in group 1
    assert_eq!(used, expected);
    assert!(
        (256..8192).all(|i| test_bit(&bm, i)),
        "padding after the group is set"
    );
    // The short last group pads from its real end.
    let bm2 = geo.uninit_bitmap(2, &gt);
    assert!(!test_bit(&bm2, 199) && test_bit(&bm2, 200));
    assert_eq!(
        count_zeros(&bm2, 200),
        200,
        "group 2 (no backup, metadata elsewhere) is empty"
    );
}
