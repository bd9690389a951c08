//! An ext4 filesystem seen through its superblock and MMP block: reading both here, writing the
//! MMP block in [`write`].

use crate::error::Error;
use crate::io::{probe, Access, BlockIo, Device};
use crate::ondisk::mmp::{MmpBlock, MMP_STRUCT_SIZE};
use crate::ondisk::superblock::{Superblock, SuperblockError, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use std::io;
use std::path::Path;

mod write;
pub use write::{mmp_write_span, WriteSpanError};

/// A device holding an ext2/3/4 superblock.
pub struct MmpFs<D: BlockIo> {
    dev: D,
    sb: Superblock,
}

/// Whether the MMP block's checksum could be verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumStatus {
    Valid,
    Invalid {
        computed: u32,
    },
    /// No metadata_csum: neither the kernel nor e2fsprogs sets or checks the field.
    NotUsed,
}

/// Read `buf` at `offset`: a short device is [`Error::Truncated`], anything else [`Error::Io`].
pub(crate) fn read_exact<D: BlockIo>(
    dev: &D,
    what: &'static str,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), Error> {
    dev.read_at(offset, buf).map_err(|source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            Error::Truncated {
                device: dev.name().to_string(),
                what,
                offset,
                size: dev.size(),
            }
        } else {
            Error::Io {
                device: dev.name().to_string(),
                op: what,
                offset,
                source,
            }
        }
    })
}

impl MmpFs<Device> {
    /// Open the device or image at `path` and read its superblock: the one way the binaries
    /// open a filesystem. When there is no ext2/3/4 superblock, libblkid is asked what is there
    /// instead, so the message says e.g. "libblkid sees xfs" (probing only improves the message;
    /// it never decides anything).
    pub fn open_path(path: &Path, access: Access) -> Result<Self, Error> {
        let dev = Device::open(path, access)?;
        MmpFs::open(dev).map_err(|e| e.naming_what_is_there(path))
    }
}

impl Error {
    /// For [`Error::NotExt4`] without a finding: add what libblkid sees on `path`. Other errors
    /// are returned unchanged.
    pub fn naming_what_is_there(self, path: &Path) -> Self {
        match self {
            Error::NotExt4 {
                device,
                found: None,
            } => Error::NotExt4 {
                device,
                found: probe::identify(path).describe(),
            },
            e => e,
        }
    }
}

impl<D: BlockIo> MmpFs<D> {
    /// Read and validate the primary superblock. A bad magic is [`Error::NotExt4`] (the caller
    /// may add what libblkid sees); other corruption is [`Error::Superblock`].
    pub fn open(dev: D) -> Result<Self, Error> {
        let mut buf = [0u8; SUPERBLOCK_SIZE];
        if dev.size() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            // Too small to hold a superblock at all: not an ext4 filesystem (an empty file, a
            // tiny partition). Say so rather than "truncated".
            return Err(Error::NotExt4 {
                device: dev.name().to_string(),
                found: None,
            });
        }
        read_exact(&dev, "read of the superblock", SUPERBLOCK_OFFSET, &mut buf)?;
        let sb = Superblock::parse(&buf).map_err(|source| match source {
            SuperblockError::BadMagic { .. } => Error::NotExt4 {
                device: dev.name().to_string(),
                found: None,
            },
            source => Error::Superblock {
                device: dev.name().to_string(),
                source,
            },
        })?;
        Ok(MmpFs { dev, sb })
    }

    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    pub fn device(&self) -> &D {
        &self.dev
    }

    pub fn device_name(&self) -> &str {
        self.dev.name()
    }

    /// Make the last MMP write durable: `fdatasync` of the device.
    pub fn sync_mmp(&self) -> Result<(), Error> {
        self.dev
            .sync()
            .map_err(|e| self.sync_error("fdatasync after writing the MMP block", e))
    }

    /// An error of a sync after an MMP write, named after this device and its MMP block (for
    /// a sync that covered it, e.g. one `syncfs` for a group of image files).
    pub fn sync_error(&self, op: &'static str, source: io::Error) -> Error {
        Error::Io {
            device: self.dev.name().to_string(),
            op,
            offset: self.sb.mmp_offset(),
            source,
        }
    }

    /// MMP must be enabled and its block number valid (e2fsprogs' bounds, see
    /// [`Superblock::mmp_block_in_range`]).
    pub fn require_mmp(&self) -> Result<u64, Error> {
        let device = self.dev.name().to_string();
        if !self.sb.has_mmp() {
            return Err(Error::MmpNotEnabled { device });
        }
        if !self.sb.mmp_block_in_range() {
            return Err(Error::MmpBlockOutOfRange {
                device,
                block: self.sb.s_mmp_block,
                first_valid: u64::from(self.sb.s_first_data_block) + 1,
                blocks_count: self.sb.blocks_count,
            });
        }
        Ok(self.sb.s_mmp_block)
    }

    /// Read and decode the MMP block without judging it (for `status` and `dump`), with the
    /// checksum verdict.
    pub fn read_mmp_raw(&self) -> Result<(MmpBlock, ChecksumStatus), Error> {
        self.require_mmp()?;
        let mut buf = [0u8; MMP_STRUCT_SIZE];
        read_exact(
            &self.dev,
            "read of the MMP block",
            self.sb.mmp_offset(),
            &mut buf,
        )?;
        let block = MmpBlock::decode(&buf).map_err(|source| Error::Mmp {
            device: self.dev.name().to_string(),
            block: self.sb.s_mmp_block,
            source,
        })?;
        let status = match self.sb.mmp_csum_seed() {
            None => ChecksumStatus::NotUsed,
            Some(seed) => {
                let computed = block.computed_checksum(seed);
                if computed == block.mmp_checksum {
                    ChecksumStatus::Valid
                } else {
                    ChecksumStatus::Invalid { computed }
                }
            }
        };
        Ok((block, status))
    }

    /// Read the MMP block and verify it as `ext2fs_mmp_read` does (a bad magic wins over a bad
    /// checksum, see [`MmpBlock::verify`]).
    pub fn read_mmp(&self) -> Result<MmpBlock, Error> {
        let (block, _) = self.read_mmp_raw()?;
        block
            .verify(self.sb.mmp_csum_seed())
            .map_err(|source| Error::Mmp {
                device: self.dev.name().to_string(),
                block: self.sb.s_mmp_block,
                source,
            })?;
        Ok(block)
    }
}

#[cfg(test)]
mod tests;
