//! The one table from outcomes to exit codes (documented in `mmp-tool --help` and the man page).

/// Safe to mount / the command did what was asked.
pub const OK: u8 = 0;
/// Do not mount: in use, fsck running, unknown sequence, bad MMP checksum (as e2mmpstatus).
pub const UNSAFE: u8 = 1;
/// Any other error, including usage errors (clap also exits 2).
pub const ERROR: u8 = 2;
/// `check --timeout` ran out before the wait ended with no change seen.
pub const UNDECIDED: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Mmp(#[from] libmmp::Error),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// `enable`, `disable`, `interval`, `clear`: refused or failed.
    #[error(transparent)]
    Edit(#[from] libmmp::edit::EditError),
}

impl ToolError {
    pub fn exit_code(&self) -> u8 {
        match self {
            // e2mmpstatus maps EXT2_ET_MMP_CSUM_INVALID to 1.
            ToolError::Mmp(e) if e.is_bad_mmp_checksum() => UNSAFE,
            // The filesystem is in use (mounted here, MMP live or FSCK, changed while watched).
            ToolError::Edit(e) if e.is_in_use() => UNSAFE,
            _ => ERROR,
        }
    }
}

/// What a subcommand returns: the exit code, or an error to print and map.
pub type Outcome = Result<u8, ToolError>;
