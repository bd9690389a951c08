//! MMP sequence numbers: the one policy for a fresh random sequence, and the successor a holder
//! writes at each heartbeat.
//!
//! A claimer writes a random live sequence so that two nodes never pick the same one by a
//! predictable rule (the kernel's `mmp_new_seq()` in fs/ext4/mmp.c draws it from
//! `get_random_u32()`; e2fsprogs' `ext2fs_mmp_new_seq()` from `random()`). The value comes from
//! the kernel's CSPRNG or not at all: a clock-derived fallback could repeat on two nodes
//! started together, and a repeat is exactly what the claim's watch cannot tell apart from
//! "nobody wrote".

use crate::ondisk::mmp::EXT4_MMP_SEQ_MAX;

/// Drawing a fresh sequence failed.
#[derive(Debug, thiserror::Error)]
pub enum SeqError {
    /// getrandom(2) (or, on kernels without it, /dev/urandom) failed.
    #[error("cannot draw a random MMP sequence from the kernel's random number generator (getrandom(2)): {0}; refusing to pick a predictable one")]
    Csprng(getrandom::Error),
}

/// A fresh random live sequence in `1..=SEQ_MAX` from the kernel's CSPRNG. Like the kernel's
/// `mmp_new_seq()`, except that 0 is skipped too, so 0 never means "ours".
pub fn random_seq() -> Result<u32, SeqError> {
    loop {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(SeqError::Csprng)?;
        let v = u32::from_le_bytes(b);
        if (1..=EXT4_MMP_SEQ_MAX).contains(&v) {
            return Ok(v);
        }
    }
}

/// The sequence a heartbeat writes after `seq`: kmmpd counts 1, 2, 3, ... and so do we,
/// wrapping below the special codes (and starting at 1 from 0 or a special code).
pub fn seq_after(seq: u32) -> u32 {
    if seq >= EXT4_MMP_SEQ_MAX {
        1
    } else {
        seq + 1
    }
}

/// A source of fresh sequences: [`random_seq`] in production, a script in tests.
pub type FreshSeq<'a> = dyn FnMut() -> Result<u32, SeqError> + 'a;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_after_counts_and_wraps_below_the_codes() {
        assert_eq!(seq_after(0), 1);
        assert_eq!(seq_after(1), 2);
        assert_eq!(seq_after(EXT4_MMP_SEQ_MAX - 1), EXT4_MMP_SEQ_MAX);
        assert_eq!(seq_after(EXT4_MMP_SEQ_MAX), 1);
        assert_eq!(seq_after(u32::MAX), 1);
    }

    #[test]
    fn random_seq_is_live_and_not_zero() {
        for _ in 0..1000 {
            let s = random_seq().unwrap();
            assert!((1..=EXT4_MMP_SEQ_MAX).contains(&s));
        }
    }
}
