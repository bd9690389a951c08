//! Errors of the filesystem-level operations. Each message names the device, what was found and,
//! where there is one, the next step.

use crate::fs::WriteSpanError;
use crate::io::device::OpenError;
use crate::ondisk::mmp::MmpError;
use crate::ondisk::superblock::SuperblockError;
use crate::protocol::seq::SeqError;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Open(#[from] OpenError),

    #[error("{device}: {op} at offset {offset} failed: {source}")]
    Io {
        device: String,
        op: &'static str,
        offset: u64,
        #[source]
        source: io::Error,
    },

    #[error("{device}: too small: {what} at offset {offset} lies past the end ({size} bytes); the image is truncated or this is the wrong device")]
    Truncated {
        device: String,
        what: &'static str,
        offset: u64,
        size: u64,
    },

    #[error("{device}: not an ext2/3/4 filesystem{}; MMP applies to ext4/ldiskfs only (for other filesystems use a separate MMP area)", found.as_ref().map(|t| format!(" (libblkid sees {t})")).unwrap_or_default())]
    NotExt4 {
        device: String,
        found: Option<String>,
    },

    #[error("{device}: corrupt superblock: {source}; run `e2fsck -n {device}` to inspect it")]
    Superblock {
        device: String,
        #[source]
        source: SuperblockError,
    },

    #[error("{device}: MMP feature not enabled (enable it with `tune2fs -O mmp {device}` on an unmounted filesystem)")]
    MmpNotEnabled { device: String },

    #[error("{device}: superblock points to an invalid MMP block {block} (valid: {first_valid}..{blocks_count}); run `e2fsck -f {device}`")]
    MmpBlockOutOfRange {
        device: String,
        block: u64,
        first_valid: u64,
        blocks_count: u64,
    },

    #[error("{device}: cannot write the MMP block: {source}")]
    MmpWriteSpan {
        device: String,
        #[source]
        source: WriteSpanError,
    },

    /// No fresh random sequence to write (see [`crate::protocol::seq`]).
    #[error("{device}: {source}")]
    RandomSeq {
        device: String,
        #[source]
        source: SeqError,
    },

    #[error("{device}: MMP block {block}: {source}; {}", mmp_hint(source, device))]
    Mmp {
        device: String,
        block: u64,
        #[source]
        source: MmpError,
    },
}

fn mmp_hint(e: &MmpError, device: &str) -> String {
    match e {
        MmpError::BadMagic { .. } => format!("try to fix it with `e2fsck -f {device}`"),
        MmpError::BadChecksum { .. } => format!(
            "it may be mid-update by another node or corrupt; if no node uses the filesystem, `e2fsck -f {device}` repairs it"
        ),
        MmpError::Truncated { .. } => "the device is too short".to_string(),
    }
}

impl Error {
    /// Whether this error means "do not mount" in e2mmpstatus' sense (exit 1) rather than
    /// "cannot tell" (exit 2): e2mmpstatus maps `EXT2_ET_MMP_CSUM_INVALID` to 1.
    pub fn is_bad_mmp_checksum(&self) -> bool {
        matches!(
            self,
            Error::Mmp {
                source: MmpError::BadChecksum { .. },
                ..
            }
        )
    }
}
