//! What lies at a block: the query behind the refusal to write an MMP block into filesystem
//! metadata (issue 12, defect 3d). A preflight step: it only reads.

use crate::ondisk::geometry::Geometry;

use crate::ondisk::group_desc::GroupDesc;
use std::fmt;

/// Filesystem metadata (or no filesystem at all) at a block that must not be overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    /// Block 0 of a filesystem with 1 KiB blocks: before `s_first_data_block` (boot sector).
    BootBlock,
    /// The primary superblock (block 0, or block 1 with 1 KiB blocks).
    PrimarySuperblock,
    BackupSuperblock {
        group: u32,
    },
    /// A block of the group descriptor table; group 0 holds the primary copy.
    GroupDescriptors {
        group: u32,
    },
    /// A reserved GDT block (room for online resize), after a descriptor table copy.
    ReservedGdt {
        group: u32,
    },
    BlockBitmap {
        group: u32,
    },
    InodeBitmap {
        group: u32,
    },
    InodeTable {
        group: u32,
    },
    /// At or past `s_blocks_count`.
    PastTheEnd {
        blocks_count: u64,
    },
}

impl fmt::Display for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metadata::BootBlock => write!(f, "the boot block, before the filesystem's first block"),
            Metadata::PrimarySuperblock => write!(f, "the primary superblock"),
            Metadata::BackupSuperblock { group } => {
                write!(f, "the backup superblock of group {group}")
            }
            Metadata::GroupDescriptors { group: 0 } => {
                write!(f, "in the primary group descriptor table")
            }
            Metadata::GroupDescriptors { group } => {
                write!(f, "in the backup group descriptor table of group {group}")
            }
            Metadata::ReservedGdt { group } => write!(f, "a reserved GDT block of group {group}"),
            Metadata::BlockBitmap { group } => write!(f, "the block bitmap of group {group}"),
            Metadata::InodeBitmap { group } => write!(f, "the inode bitmap of group {group}"),
            Metadata::InodeTable { group } => write!(f, "in the inode table of group {group}"),
            Metadata::PastTheEnd { blocks_count } => write!(
                f,
                "past the end of the filesystem, which has {blocks_count} blocks"
            ),
        }
    }
}

impl Metadata {
    /// What writing an MMP block there would do.
    pub fn harm(&self) -> &'static str {
        match self {
            Metadata::PastTheEnd { .. } => "an MMP block cannot be written there",
            _ => "an MMP block written there would destroy filesystem metadata",
        }
    }

    /// `e2fsck -y` answers the bad magic it finds in a metadata block by writing an MMP block
    /// there (e2fsck/unix.c `e2fsck_check_mmp`: `EXT2_ET_MMP_MAGIC_INVALID` ->
    /// `ext2fs_mmp_clear`), as seen with e2fsprogs 1.47.0 on an inode table block. A block past
    /// the end is `EXT2_ET_MMP_BAD_BLOCK`, which e2fsck answers by zeroing `s_mmp_block`.
    pub fn e2fsck_warning(&self) -> &'static str {
        match self {
            Metadata::PastTheEnd { .. } => "",
            _ => ". Do not let `e2fsck -y` repair the MMP block first: it writes an MMP block there too",
        }
    }
}

/// The metadata at `block`, or `None` if it is an ordinary data block. `descs` are the group
/// descriptors as decoded (all groups, unverified: a corrupt descriptor can only make this
/// refuse more). The layout is the one `ext2fs_reserve_super_and_bgd` reserves: in each group
/// with a superblock copy (`ext2fs_bg_has_super`), the superblock, the descriptor table and the
/// reserved GDT blocks; plus every group's bitmaps and inode table wherever flex_bg put them.
pub fn metadata_at(geo: &Geometry, descs: &[GroupDesc], block: u64) -> Option<Metadata> {
    if block >= geo.blocks_count {
        return Some(Metadata::PastTheEnd {
            blocks_count: geo.blocks_count,
        });
    }
    if block < geo.first_data_block {
        return Some(Metadata::BootBlock);
    }
    super_and_gdt_at(geo, block).or_else(|| group_tables_at(geo, descs, block))
}

/// The superblock, descriptor table and reserved GDT copies of the group holding `block`.
fn super_and_gdt_at(geo: &Geometry, block: u64) -> Option<Metadata> {
    let group = geo.group_of(block);
    if !geo.has_super(group) {
        return None;
    }
    let first = geo.group_first_block(group);
    let gdt_end = first + 1 + geo.desc_blocks;
    let reserved_end = gdt_end + u64::from(geo.reserved_gdt_blocks);
    match block {
        b if b == first && group == 0 => Some(Metadata::PrimarySuperblock),
        b if b == first => Some(Metadata::BackupSuperblock { group }),
        b if b < gdt_end => Some(Metadata::GroupDescriptors { group }),
        b if b < reserved_end => Some(Metadata::ReservedGdt { group }),
        _ => None,
    }
}

/// A block bitmap, inode bitmap or inode table block of any group.
fn group_tables_at(geo: &Geometry, descs: &[GroupDesc], block: u64) -> Option<Metadata> {
    let itable_blocks = u64::from(geo.inode_blocks_per_group);
    descs.iter().zip(0u32..).find_map(|(d, group)| {
        if d.bg_block_bitmap == block {
            Some(Metadata::BlockBitmap { group })
        } else if d.bg_inode_bitmap == block {
            Some(Metadata::InodeBitmap { group })
        } else if d.bg_inode_table != 0
            && (d.bg_inode_table..d.bg_inode_table.saturating_add(itable_blocks)).contains(&block)
        {
            Some(Metadata::InodeTable { group })
        } else {
            None
        }
    })
}
