//! The write side of the MMP block: what `claim` and `heartbeat` use.
//!
//! A write encodes the block (with the checksum under metadata_csum), writes it to the MMP
//! block and `fdatasync`s, as e2fsprogs does after `io_channel_write_blk64`. Block devices are
//! opened `O_DIRECT` ([`crate::io::device::Device`]), so the write bypasses this host's page cache
//! and another node sees it as soon as the device has it.
//!
//! **Sector alignment.** `O_DIRECT` writes must cover whole logical sectors. The MMP block is
//! block-size aligned, so:
//!
//! - sector <= 1024 (512-byte sectors, image files): we write exactly the 1024-byte struct, as
//!   e2fsprogs does (`ext2fs_mmp_write` writes `-sizeof(struct mmp_struct)`).
//! - 1024 < sector <= block size (4 KiB sectors, 4 KiB blocks): we write the first sector of the
//!   MMP block. The bytes after the struct are read from that same sector first and written back
//!   unchanged. The whole filesystem block belongs to MMP (`ext2fs_mmp_init` allocates it for
//!   MMP alone), so this read-modify-write can only undo another node's write *to the MMP block
//!   itself*, which is exactly what the next re-read detects.
//! - sector > block size (a 1 KiB-block filesystem on a 4 KiB-sector device): the sector also
//!   holds other filesystem blocks, and a read-modify-write could undo this host's or another
//!   node's writes to them. We refuse with a clear error instead (e2fsprogs had to special-case
//!   the same hardware, 6d268879). Use a filesystem whose block size is at least the sector size,
//!   or a separate MMP area.

use super::MmpFs;
use crate::error::Error;
use crate::io::BlockIo;
use crate::ondisk::mmp::{MmpBlock, MMP_STRUCT_SIZE};
use std::io;

/// Why the MMP block cannot be written with `O_DIRECT` on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteSpanError {
    #[error("the {sector}-byte sector size does not divide the {MMP_STRUCT_SIZE}-byte MMP struct")]
    SectorNotAligned { sector: u32 },
    #[error(
        "the {block_size}-byte MMP block is smaller than the device's {sector}-byte sector, \
         so writing it with O_DIRECT would rewrite neighbouring filesystem blocks; refusing. \
         Use a filesystem with a block size of at least {sector} bytes, or a separate MMP area"
    )]
    SectorLargerThanBlock { block_size: u32, sector: u32 },
}

/// How many bytes a write of the MMP block covers for this block and sector size, or why it
/// cannot be written safely.
pub fn mmp_write_span(block_size: u32, sector: u32) -> Result<usize, WriteSpanError> {
    let span = (sector as usize).max(MMP_STRUCT_SIZE);
    if sector == 0 || span % (sector as usize) != 0 {
        return Err(WriteSpanError::SectorNotAligned { sector });
    }
    if span > block_size as usize {
        return Err(WriteSpanError::SectorLargerThanBlock { block_size, sector });
    }
    Ok(span)
}

impl<D: BlockIo> MmpFs<D> {
    /// How many bytes a write of this filesystem's MMP block covers on this device, or why it
    /// cannot be written safely (see the module comment): what a holder checks before it starts.
    pub fn mmp_write_span(&self) -> Result<usize, Error> {
        mmp_write_span(
            self.superblock().block_size(),
            self.device().logical_block_size(),
        )
        .map_err(|source| Error::MmpWriteSpan {
            device: self.device_name().to_string(),
            source,
        })
    }

    /// Write `blk` to the MMP block (checksum recomputed under metadata_csum) and make it
    /// durable with `fdatasync`. See the module comment for the alignment rules.
    pub fn write_mmp_synced(&self, blk: &MmpBlock) -> Result<(), Error> {
        self.write_mmp_unsynced(blk)?;
        self.sync_mmp()
    }

    /// Write `blk` to the MMP block without making it durable: the caller syncs (one
    /// [`MmpFs::sync_mmp`], or one `syncfs` for many image files of one filesystem) and only
    /// then counts the write as done.
    pub fn write_mmp_unsynced(&self, blk: &MmpBlock) -> Result<(), Error> {
        let block = self.require_mmp()?;
        let sb = self.superblock();
        let dev = self.device();
        let offset = sb.mmp_offset();
        let io_err = |op: &'static str, source: io::Error| Error::Io {
            device: dev.name().to_string(),
            op,
            offset,
            source,
        };
        let span = self.mmp_write_span()?;
        let end = offset.saturating_add(span as u64);
        if end > dev.size() {
            return Err(Error::Truncated {
                device: dev.name().to_string(),
                what: "write of the MMP block",
                offset,
                size: dev.size(),
            });
        }
        let enc = blk.encode(sb.mmp_csum_seed());
        if span == MMP_STRUCT_SIZE {
            dev.write_at(offset, &enc)
                .map_err(|e| io_err("write of the MMP block", e))?;
        } else {
            let mut buf = vec![0u8; span];
            dev.read_at(offset, &mut buf)
                .map_err(|e| io_err("read of the MMP sector before writing it", e))?;
            buf[..MMP_STRUCT_SIZE].copy_from_slice(&enc);
            dev.write_at(offset, &buf)
                .map_err(|e| io_err("write of the MMP block", e))?;
        }
        tracing::trace!(
            device = dev.name(),
            block,
            seq = blk.mmp_seq,
            "MMP block written (not yet synced)"
        );
        Ok(())
    }
}
