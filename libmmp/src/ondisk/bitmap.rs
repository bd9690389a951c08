//! Block bitmaps: bit order, their checksums (`ext2fs_block_bitmap_csum_set`, `csum.c`, over
//! `EXT2_CLUSTERS_PER_GROUP / 8` bytes) and the bitmap of a `BLOCK_UNINIT` group
//! (`mark_uninit_bg_group_blocks` in `rw_bitmaps.c`, `ext2fs_reserve_super_and_bgd` in
//! `alloc_sb.c`, the kernel's `ext4_init_block_bitmap` in `fs/ext4/balloc.c`).
//!
//! Everything here is pure: bytes in, values out, so it is tested in memory and fuzzed.

use crate::ondisk::crc::raw_crc32c;
use crate::ondisk::geometry::Geometry;
use crate::ondisk::group_desc::{GroupDesc, GroupTable, EXT2_MIN_DESC_SIZE_64BIT};

impl Geometry {
    /// Bytes of a block bitmap covered by its checksum (`EXT2_CLUSTERS_PER_GROUP / 8`).
    pub fn bitmap_bytes(&self) -> usize {
        (self.blocks_per_group / 8) as usize
    }

    /// `ext2fs_block_bitmap_csum_set`: the checksum of a block bitmap, or `None` without
    /// metadata_csum.
    pub fn bitmap_csum(&self, bitmap: &[u8]) -> Option<u32> {
        self.bitmap_csum_seed
            .map(|seed| raw_crc32c(seed, &bitmap[..self.bitmap_bytes()]))
    }

    /// Whether a descriptor's stored bitmap checksum matches `bitmap`. Descriptors of 32 bytes
    /// keep only the low 16 bits (`ext2fs_block_bitmap_csum_verify`).
    pub fn bitmap_csum_matches(&self, desc: &GroupDesc, bitmap: &[u8]) -> bool {
        match self.bitmap_csum(bitmap) {
            None => true,
            Some(c) if self.desc_size >= EXT2_MIN_DESC_SIZE_64BIT => c == desc.bg_block_bitmap_csum,
            Some(c) => c & 0xFFFF == desc.bg_block_bitmap_csum & 0xFFFF,
        }
    }

    /// The on-disk bitmap of a `BLOCK_UNINIT` group, as libext2fs builds it in memory and
    /// writes it once the flag is cleared: the group's superblock, descriptor table and
    /// reserved GDT blocks if it holds a backup (`ext2fs_reserve_super_and_bgd`), every block
    /// bitmap, inode bitmap and inode table block of *any* group that lies in this group (a
    /// superset of `mark_uninit_bg_group_blocks`: with flex_bg another group's metadata could in
    /// principle sit here, and it is in use either way), and the padding bits past the end of
    /// the group set (`write_bitmaps` pads with 0xFF; the kernel's `ext4_mark_bitmap_end`).
    pub fn uninit_bitmap(&self, g: u32, gdt: &GroupTable) -> Vec<u8> {
        let mut bm = vec![0u8; self.block_size as usize];
        let first = self.group_first_block(g);
        let n = u64::from(self.group_blocks(g));
        let mut mark = |start: u64, len: u64| {
            let lo = start.max(first);
            let hi = start.saturating_add(len).min(first + n);
            for b in lo..hi {
                set_bit(&mut bm, (b - first) as usize);
            }
        };
        if self.has_super(g) {
            mark(
                first,
                1 + self.desc_blocks + u64::from(self.reserved_gdt_blocks),
            );
        }
        for h in 0..self.group_count {
            let d = gdt.desc(h);
            if d.bg_block_bitmap != 0 {
                mark(d.bg_block_bitmap, 1);
            }
            if d.bg_inode_bitmap != 0 {
                mark(d.bg_inode_bitmap, 1);
            }
            if d.bg_inode_table != 0 {
                mark(d.bg_inode_table, u64::from(self.inode_blocks_per_group));
            }
        }
        for bit in n as usize..bm.len() * 8 {
            set_bit(&mut bm, bit);
        }
        bm
    }
}

/// Bit `i` of a bitmap (ext2 bit order: bit `i % 8` of byte `i / 8`).
pub fn test_bit(bm: &[u8], i: usize) -> bool {
    bm[i / 8] & (1 << (i % 8)) != 0
}

pub fn set_bit(bm: &mut [u8], i: usize) {
    bm[i / 8] |= 1 << (i % 8);
}

pub fn clear_bit(bm: &mut [u8], i: usize) {
    bm[i / 8] &= !(1 << (i % 8));
}

/// The first clear bit in `[0, n)`.
pub fn first_zero(bm: &[u8], n: usize) -> Option<usize> {
    (0..n).find(|&i| !test_bit(bm, i))
}

/// Clear bits in `[0, n)`.
pub fn count_zeros(bm: &[u8], n: usize) -> u32 {
    (0..n).filter(|&i| !test_bit(bm, i)).count() as u32
}

#[cfg(test)]
mod tests;
