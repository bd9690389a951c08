//! The one table of exit codes (documented in `mmpd --help` and mmpd(8)).

/// Released: every device set back to CLEAN after SIGTERM/SIGINT.
pub const OK: u8 = 0;
/// Fenced: another writer appeared, MMP writes failed, or a release found a foreign block.
pub const FENCED: u8 = 1;
/// Usage, configuration or device error.
pub const ERROR: u8 = 2;
/// A claim was refused: in use, fsck running, unknown sequence, bad checksum, lost the race.
pub const REFUSED: u8 = 3;
/// Another mmpd on this host already holds one of the devices.
pub const BUSY: u8 = 4;
