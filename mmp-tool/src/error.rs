//! The one error type of the binary; [`Error::outcome`] maps it to the exit-code table.

use crate::exit::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Mmp(#[from] libmmp::Error),
    /// `enable`, `disable`, `interval`, `clear`: refused or failed.
    #[error(transparent)]
    Edit(#[from] libmmp::edit::EditError),
    /// `handoff`, `claim/mount --handoff`: bad arguments, or an error under a handoff step.
    #[error(transparent)]
    Handoff(#[from] libmmp::protocol::claim::handoff::HandoffError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// `format-area`: no random UUID for the area.
    #[error("reading /dev/urandom for the area's UUID: {0}")]
    Uuid(#[source] std::io::Error),
}

impl Error {
    pub fn outcome(&self) -> Outcome {
        match self {
            // e2mmpstatus maps EXT2_ET_MMP_CSUM_INVALID to 1.
            Error::Mmp(e) if e.is_bad_mmp_checksum() => Outcome::Refused,
            // The filesystem is in use (mounted here, MMP live or FSCK, changed while watched).
            Error::Edit(e) if e.is_in_use() => Outcome::Refused,
            _ => Outcome::Failed,
        }
    }
}
