//! The one table from outcomes to exit codes, printed by `mmp-tool --help` and in the man
//! pages' EXIT STATUS section. 0, 1 and 2 mean what they mean for e2mmpstatus(8).

/// How a subcommand ended, unless it failed with an [`Error`](crate::error::Error) (which
/// [`Error::outcome`](crate::error::Error::outcome) maps to one of these). The discriminant is
/// the exit code.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Safe to mount, or the command did what was asked (or found nothing to do).
    Done = 0,
    /// Do not mount, or refused because the device is (or may be) in use; nothing written.
    Refused = 1,
    /// Any other error or refusal (already reported by the subcommand, or an `Error`).
    Failed = 2,
    /// `check --timeout` ran out before the wait ended, with no change seen.
    Undecided = 3,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        self as u8
    }
}

/// Exit code and meaning, for `--help` and the man pages. Lines break where `--help` wraps.
pub const EXIT_CODES: &[(u8, &str)] = &[
    (
        Outcome::Done as u8,
        "safe to mount: MMP is clean, or the sequence stayed unchanged for the whole wait;\n\
         the other subcommands: done (or nothing to do).",
    ),
    (
        Outcome::Refused as u8,
        "do not mount: in use on another node, fsck/tune2fs/debugfs running (FSCK sequence),\n\
         unknown sequence, or the MMP block checksum does not match; the other subcommands:\n\
         refused because the device is (or may be) in use: mounted or attached on this host,\n\
         held by an mmpd on this host, MMP block live or FSCK, changed while watched, claim\n\
         lost, or (release) not our claim. Nothing is written when refused.",
    ),
    (
        Outcome::Failed as u8,
        "error: no such device, permission denied, not ext4, MMP not enabled, bad MMP magic,\n\
         invalid MMP block number, corrupt superblock, I/O error; an edit refused for any other\n\
         reason (unsupported features, journal needs recovery, inconsistent metadata), a failed\n\
         write or mount(8); also usage errors (e2mmpstatus 1.47.0 exits with other values,\n\
         e.g. 19 or 36, when it cannot open the filesystem; treat anything but 0 and 1 as an\n\
         error in scripts that run either).",
    ),
    (
        Outcome::Undecided as u8,
        "undecided: `check --timeout` ran out before the wait ended and nothing changed so far.",
    ),
];

/// The table as `--help` prints it.
pub fn help_text() -> String {
    let mut s = String::from("EXIT STATUS (compatible with e2mmpstatus where it applies):");
    for (code, meaning) in EXIT_CODES {
        for (i, line) in meaning.lines().enumerate() {
            if i == 0 {
                s += &format!("\n  {code}  {line}");
            } else {
                s += &format!("\n     {line}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_outcome_once_in_order() {
        let all = [
            Outcome::Done,
            Outcome::Refused,
            Outcome::Failed,
            Outcome::Undecided,
        ];
        let codes: Vec<u8> = EXIT_CODES.iter().map(|(c, _)| *c).collect();
        let want: Vec<u8> = all.iter().map(|o| o.exit_code()).collect();
        assert_eq!(codes, want);
        assert_eq!(want, [0, 1, 2, 3], "documented codes must not change");
    }
}
