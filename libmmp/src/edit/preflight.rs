//! Everything an edit checks before its first write: the device is not used on this host and is
//! held exclusively, the geometry is one this module edits, the journal is clean, the metadata
//! it will touch is consistent, and the MMP block is valid and CLEAN.

use super::metadata::{metadata_at, Metadata};
use super::EditError;
use crate::error::Error;
use crate::fs::MmpFs;
use crate::host::busy;
use crate::io::device::{Access, Device, OpenError};
use crate::io::BlockIo;
use crate::ondisk::bitmap::count_zeros;
use crate::ondisk::geometry::{Geometry, LayoutError};
use crate::ondisk::group_desc::{DescError, GroupDesc, GroupTable, EXT2_BG_BLOCK_UNINIT};
use crate::ondisk::mmp::{MmpBlock, MmpError, MMP_STRUCT_SIZE};
use crate::ondisk::superblock::feature;
use crate::ondisk::superblock::EXT2_ERROR_FS;
use std::path::Path;

/// Open `path` for an edit: refuse if this host uses it (mounted, loop-attached, held), then
/// open it exclusively ([`Device::open_exclusive`]) and read the superblock. The local check runs
/// again once the exclusive open holds, so a `losetup` in between is caught too.
pub fn open_for_edit(path: &Path) -> Result<MmpFs<Device>, EditError> {
    let device = path.display().to_string();
    // A plain open first, for its precise errors (no such file, permission, directory).
    drop(Device::open(path, Access::ReadOnly).map_err(Error::from)?);
    let check_local = || -> Result<(), EditError> {
        let users = busy::local_users(path).map_err(|source| EditError::BusyCheck {
            device: device.clone(),
            source,
        })?;
        if users.is_empty() {
            Ok(())
        } else {
            Err(EditError::InUseLocally {
                device: device.clone(),
                users,
            })
        }
    };
    check_local()?;
    let dev = Device::open_exclusive(path).map_err(|e| match e {
        OpenError::Io { ref source, op, .. }
            if op.starts_with("exclusive") && source.raw_os_error() == Some(libc::EBUSY) =>
        {
            EditError::DeviceBusy {
                device: device.clone(),
            }
        }
        OpenError::Io { ref source, op, .. }
            if op.starts_with("lock")
                && matches!(
                    source.raw_os_error(),
                    Some(libc::EAGAIN) | Some(libc::EACCES)
                ) =>
        {
            EditError::Locked {
                device: device.clone(),
            }
        }
        e => EditError::Fs(Error::Open(e)),
    })?;
    check_local()?;
    Ok(MmpFs::open(dev).map_err(|e| e.naming_what_is_there(path))?)
}

/// [`crate::fs::read_exact`] (the one "truncated or I/O error" mapping) as an edit error.
fn read_at<D: BlockIo>(
    dev: &D,
    what: &'static str,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), EditError> {
    crate::fs::read_exact(dev, what, offset, buf).map_err(EditError::Fs)
}

pub(super) fn inconsistent<D: BlockIo>(fs: &MmpFs<D>, what: String) -> EditError {
    EditError::Inconsistent {
        device: fs.device_name().to_string(),
        what,
    }
}

/// The checks every metadata edit (`enable`, `disable`, `interval`) starts with.
pub(super) fn preflight<D: BlockIo>(fs: &MmpFs<D>) -> Result<Geometry, EditError> {
    let sb = fs.superblock();
    let device = fs.device_name().to_string();
    let geo = Geometry::from_superblock(sb).map_err(|source| {
        let next = match source {
            LayoutError::Unsupported { .. } => format!(
                "use tune2fs on the unmounted filesystem (`tune2fs -O mmp {device}`, `-O ^mmp`, `-E mmp_update_interval=N`); it handles these features"
            ),
            _ => format!("run `e2fsck -f {device}`"),
        };
        EditError::Layout {
            device: device.clone(),
            source,
            next,
        }
    })?;
    if sb.s_feature_incompat & feature::INCOMPAT_RECOVER != 0 {
        return Err(EditError::NeedsRecovery { device });
    }
    if sb.s_state & EXT2_ERROR_FS != 0 {
        return Err(EditError::HasErrors { device });
    }
    let fs_bytes = geo.blocks_count.saturating_mul(u64::from(geo.block_size));
    if fs.device().size() < fs_bytes {
        return Err(EditError::Fs(Error::Truncated {
            device,
            what: "the last block of the filesystem",
            offset: fs_bytes,
            size: fs.device().size(),
        }));
    }
    Ok(geo)
}

/// The primary group descriptor table's bytes.
/// Its extent is checked against the device before anything is allocated: a corrupt superblock
/// can claim a table of hundreds of GiB (proptest's `edits_never_panic_on_corrupt_images`
/// aborted on a 191 GB allocation through `clear`, which reads it without the full geometry
/// check).
fn read_gdt<D: BlockIo>(fs: &MmpFs<D>, geo: &Geometry) -> Result<Vec<u8>, EditError> {
    let off = geo.gdt_block(0).saturating_mul(u64::from(geo.block_size));
    let end = off.saturating_add(geo.desc_blocks.saturating_mul(u64::from(geo.block_size)));
    if end > fs.device().size() {
        return Err(EditError::Fs(Error::Truncated {
            device: fs.device_name().to_string(),
            what: "the group descriptor table",
            offset: end,
            size: fs.device().size(),
        }));
    }
    let mut raw = vec![0u8; geo.gdt_bytes()];
    read_at(
        fs.device(),
        "read of the group descriptor table",
        off,
        &mut raw,
    )?;
    Ok(raw)
}

pub(super) fn load_gdt<D: BlockIo>(fs: &MmpFs<D>, geo: &Geometry) -> Result<GroupTable, EditError> {
    let raw = read_gdt(fs, geo)?;
    GroupTable::from_bytes(geo, raw).map_err(|e| match e {
        DescError::BadChecksum { .. } => inconsistent(fs, format!("{e}")),
        e => inconsistent(fs, format!("group descriptor table: {e}")),
    })
}

/// Group `g`'s block bitmap (one block, padding included) and whether it had to be built
/// because the group is `BLOCK_UNINIT`. Verified: location, checksum (metadata_csum), and for an
/// uninitialised group, that the descriptor's free count matches what its metadata leaves free.
pub(super) fn load_bitmap<D: BlockIo>(
    fs: &MmpFs<D>,
    geo: &Geometry,
    gt: &GroupTable,
    g: u32,
) -> Result<(Vec<u8>, bool), EditError> {
    let d = gt.desc(g);
    let n = geo.group_blocks(g) as usize;
    if geo.desc_csum.enabled() && d.bg_flags & EXT2_BG_BLOCK_UNINIT != 0 {
        let bm = geo.uninit_bitmap(g, gt);
        let free = count_zeros(&bm, n);
        if free != d.bg_free_blocks_count {
            return Err(inconsistent(fs, format!(
                "group {g} is BLOCK_UNINIT with {} free blocks in its descriptor, but its metadata leaves {free} free",
                d.bg_free_blocks_count
            )));
        }
        return Ok((bm, true));
    }
    let loc = d.bg_block_bitmap;
    if loc <= geo.first_data_block || loc >= geo.blocks_count {
        return Err(inconsistent(
            fs,
            format!("group {g}'s block bitmap location {loc} is outside the filesystem"),
        ));
    }
    let mut bm = vec![0u8; geo.block_size as usize];
    read_at(
        fs.device(),
        "read of a block bitmap",
        loc * u64::from(geo.block_size),
        &mut bm,
    )?;
    if !geo.bitmap_csum_matches(&d, &bm) {
        return Err(inconsistent(
            fs,
            format!("group {g}: block bitmap checksum does not match"),
        ));
    }
    Ok((bm, false))
}

pub(super) fn check_free_count<D: BlockIo>(
    fs: &MmpFs<D>,
    geo: &Geometry,
    gt: &GroupTable,
    g: u32,
    bm: &[u8],
) -> Result<(), EditError> {
    let counted = count_zeros(bm, geo.group_blocks(g) as usize);
    let stored = gt.desc(g).bg_free_blocks_count;
    if counted != stored {
        return Err(inconsistent(
            fs,
            format!("group {g}: its descriptor counts {stored} free blocks, its bitmap {counted}"),
        ));
    }
    Ok(())
}

pub(super) fn read_mmp_bytes<D: BlockIo>(
    fs: &MmpFs<D>,
) -> Result<[u8; MMP_STRUCT_SIZE], EditError> {
    let mut raw = [0u8; MMP_STRUCT_SIZE];
    read_at(
        fs.device(),
        "read of the MMP block",
        fs.superblock().mmp_offset(),
        &mut raw,
    )?;
    Ok(raw)
}

pub(super) fn who(b: &MmpBlock) -> String {
    format!(
        "last update by node '{}' device '{}' at {} s since the epoch, sequence {:#010x}",
        b.nodename(),
        b.bdevname(),
        b.mmp_time,
        b.mmp_seq
    )
}

/// The state name of a decoded block under `seed`.
pub(super) fn state_of(b: &MmpBlock, seed: Option<u32>) -> &'static str {
    match b.verify(seed) {
        Err(MmpError::BadChecksum { .. }) => "bad_checksum",
        Err(_) => "bad_magic",
        Ok(()) => b.seq_class().name(),
    }
}

/// Read the MMP block and insist that it is valid and CLEAN: what `enable`, `disable` and
/// `interval` require before they write.
pub(super) fn read_clean<D: BlockIo>(
    fs: &MmpFs<D>,
    action: &'static str,
) -> Result<MmpBlock, EditError> {
    let block = locate_mmp_block(fs, action)?;
    let raw = read_mmp_bytes(fs)?;
    let device = fs.device_name().to_string();
    let blk = MmpBlock::decode(&raw).map_err(|source| Error::Mmp {
        device: device.clone(),
        block,
        source,
    })?;
    let seed = fs.superblock().mmp_csum_seed();
    let state = state_of(&blk, seed);
    let repair = format!(
        "if no node uses the filesystem, `e2fsck -f {device}` repairs the block (or `mmp-tool clear {device}` resets it); then retry"
    );
    let (detail, next) = match state {
        "clean" => return Ok(blk),
        "bad_checksum" => ("its checksum does not match (it may be mid-update by another node, or corrupt)".to_string(), repair),
        "bad_magic" => (format!("its magic number is {:#010x}, not an MMP block", blk.mmp_magic), repair),
        "fsck" => (
            format!("e2fsck, tune2fs or debugfs has the filesystem open, or was killed while it had ({})", who(&blk)),
            format!("wait for that tool to finish; if nothing uses the filesystem, `mmp-tool clear {device}` resets the block; then retry"),
        ),
        "live" => (
            format!("a node has the filesystem mounted, or crashed while it had ({})", who(&blk)),
            format!("unmount it on that node; if that node is down, `mmp-tool check {device}` tells whether the sequence is stale, and `mmp-tool clear {device}` resets it; then retry"),
        ),
        _ => (
            format!("it holds an unknown sequence ({})", who(&blk)),
            format!("if you are sure no node uses the filesystem, `mmp-tool clear {device}` resets the block; then retry"),
        ),
    };
    Err(EditError::MmpNotClean {
        device,
        block,
        state,
        detail,
        action,
        next,
    })
}

pub(super) fn mmp_required<D: BlockIo>(
    fs: &MmpFs<D>,
    action: &'static str,
) -> Result<(), EditError> {
    if fs.superblock().has_mmp() {
        Ok(())
    } else {
        Err(EditError::NotEnabled {
            device: fs.device_name().to_string(),
            action,
        })
    }
}

/// Where the MMP block is, refusing a block that no edit may write: one inside filesystem
/// metadata (a superblock copy, a descriptor table, reserved GDT blocks, a bitmap, an inode
/// table) or past the end of the filesystem. Every edit that writes the MMP block in place
/// (`clear`, `interval`, `disable`, and `enable` on a filesystem that has MMP already) reads
/// it through here first, so this is the one guard against overwriting metadata with it.
///
/// e2fsprogs checks only the range (`ext2fs_mmp_read`: after `s_first_data_block`, before
/// `s_blocks_count`), and `e2fsck -y` answers a bad magic by writing an MMP block wherever
/// `s_mmp_block` points; so the next step offered is `tune2fs -f -O ^mmp`, which drops the
/// pointer without writing the block (misc/tune2fs.c: a failed `ext2fs_mmp_read` skips the
/// free), then e2fsck, then `enable`, which allocates a free block.
///
/// Without a geometry this module can edit (bigalloc, meta_bg: only `clear` gets this far), the
/// layout is not known: only the range and the primary superblock are checked, as before.
pub(super) fn locate_mmp_block<D: BlockIo>(
    fs: &MmpFs<D>,
    action: &'static str,
) -> Result<u64, EditError> {
    let sb = fs.superblock();
    if !sb.has_mmp() {
        return Ok(fs.require_mmp()?);
    }
    let block = sb.s_mmp_block;
    let what = match Geometry::from_superblock(sb) {
        Ok(geo) => metadata_at(&geo, &read_descs_unverified(fs, &geo)?, block),
        Err(_) if block >= sb.blocks_count => Some(Metadata::PastTheEnd {
            blocks_count: sb.blocks_count,
        }),
        Err(_) if block < u64::from(sb.s_first_data_block) => Some(Metadata::BootBlock),
        Err(_) if block == u64::from(sb.s_first_data_block) => Some(Metadata::PrimarySuperblock),
        Err(_) => None,
    };
    if let Some(what) = what {
        return Err(EditError::MmpBlockInMetadata {
            device: fs.device_name().to_string(),
            block,
            what,
            action,
        });
    }
    Ok(fs.require_mmp()?)
}

/// Every group's descriptor, decoded without verifying checksums: only their bitmap and inode
/// table locations are wanted, and a bad checksum must not stop `clear`.
fn read_descs_unverified<D: BlockIo>(
    fs: &MmpFs<D>,
    geo: &Geometry,
) -> Result<Vec<GroupDesc>, EditError> {
    let raw = read_gdt(fs, geo)?;
    Ok(raw
        .chunks_exact(geo.desc_size)
        .take(geo.group_count as usize)
        .filter_map(|b| GroupDesc::decode(b, geo.desc_size).ok())
        .collect())
}
