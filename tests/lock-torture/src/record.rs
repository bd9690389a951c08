//! The 32-byte records torture mode writes under its locks.
//!
//! Every holder of a write lock reads the records of its range, increments each record's
//! `count`, stamps its writer id and operation number, writes them back, then re-reads them
//! before unlocking. Two ways to catch a lock that is not exclusive follow from this:
//! - the re-read shows another writer's stamp (someone wrote inside our locked range), and
//! - at the end, the sum of all `count`s is less than the increments the writers performed
//!   (two holders did read-modify-write of the same record at once: a lost update).
//!
//! Layout (little endian):
//!
//! | offset | size | field  |
//! |--------|------|--------|
//! | 0x00   | 4    | magic `LTR1` |
//! | 0x04   | 4    | writer id |
//! | 0x08   | 8    | seq: the writer's operation number |
//! | 0x10   | 8    | count: increments so far |
//! | 0x18   | 8    | FNV-1a 64 of bytes 0x00..0x18 (detects torn writes) |
//!
//! An all-zero record is the valid initial state (count 0).

use libmmp::ondisk::bytes::{le32 as le_u32, le64 as le_u64};
use thiserror::Error;

pub const RECORD_SIZE: usize = 32;
const MAGIC: u32 = u32::from_le_bytes(*b"LTR1");
const OFF_MAGIC: usize = 0x00;
const OFF_WRITER: usize = 0x04;
const OFF_SEQ: usize = 0x08;
const OFF_COUNT: usize = 0x10;
const OFF_CHECK: usize = 0x18;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub writer: u32,
    pub seq: u64,
    pub count: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record is {0} bytes, expected {RECORD_SIZE}")]
    Length(usize),
    #[error("bad magic {0:#010x} (expected \"LTR1\"): the file was written by something else")]
    Magic(u32),
    #[error(
        "checksum mismatch: torn or mixed write (stored {stored:#018x}, computed {computed:#018x})"
    )]
    Checksum { stored: u64, computed: u64 },
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Record {
    /// Decode one record; total over any input.
    pub fn decode(b: &[u8]) -> Result<Record, RecordError> {
        if b.len() != RECORD_SIZE {
            return Err(RecordError::Length(b.len()));
        }
        if b.iter().all(|&x| x == 0) {
            return Ok(Record::default());
        }
        let magic = le_u32(b, OFF_MAGIC);
        if magic != MAGIC {
            return Err(RecordError::Magic(magic));
        }
        let stored = le_u64(b, OFF_CHECK);
        let computed = fnv1a64(&b[..OFF_CHECK]);
        if stored != computed {
            return Err(RecordError::Checksum { stored, computed });
        }
        Ok(Record {
            writer: le_u32(b, OFF_WRITER),
            seq: le_u64(b, OFF_SEQ),
            count: le_u64(b, OFF_COUNT),
        })
    }

    pub fn encode(&self) -> [u8; RECORD_SIZE] {
        let mut b = [0u8; RECORD_SIZE];
        b[OFF_MAGIC..OFF_MAGIC + 4].copy_from_slice(&MAGIC.to_le_bytes());
        b[OFF_WRITER..OFF_WRITER + 4].copy_from_slice(&self.writer.to_le_bytes());
        b[OFF_SEQ..OFF_SEQ + 8].copy_from_slice(&self.seq.to_le_bytes());
        b[OFF_COUNT..OFF_COUNT + 8].copy_from_slice(&self.count.to_le_bytes());
        let check = fnv1a64(&b[..OFF_CHECK]);
        b[OFF_CHECK..OFF_CHECK + 8].copy_from_slice(&check.to_le_bytes());
        b
    }
}

/// Decode a buffer of whole records.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Record>, (usize, RecordError)> {
    if buf.len() % RECORD_SIZE != 0 {
        return Err((
            buf.len() / RECORD_SIZE,
            RecordError::Length(buf.len() % RECORD_SIZE),
        ));
    }
    buf.chunks(RECORD_SIZE)
        .enumerate()
        .map(|(i, c)| Record::decode(c).map_err(|e| (i, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_record_is_initial_state() {
        assert_eq!(Record::decode(&[0u8; RECORD_SIZE]), Ok(Record::default()));
    }

    #[test]
    fn wrong_length_and_magic() {
        assert_eq!(Record::decode(&[0u8; 31]), Err(RecordError::Length(31)));
        let mut b = Record {
            writer: 1,
            seq: 2,
            count: 3,
        }
        .encode();
        b[0] = b'X';
        assert!(matches!(Record::decode(&b), Err(RecordError::Magic(_))));
    }

    #[test]
    fn decode_all_reports_index_of_bad_record() {
        let mut buf = Vec::new();
        buf.extend_from_slice(
            &Record {
                writer: 1,
                seq: 1,
                count: 1,
            }
            .encode(),
        );
        let mut bad = Record {
            writer: 2,
            seq: 2,
            count: 2,
        }
        .encode();
        bad[20] ^= 1;
        buf.extend_from_slice(&bad);
        assert!(matches!(
            decode_all(&buf),
            Err((1, RecordError::Checksum { .. }))
        ));
        assert!(matches!(
            decode_all(&buf[..40]),
            Err((1, RecordError::Length(8)))
        ));
    }

    proptest! {
        #[test]
        fn round_trip(writer in any::<u32>(), seq in any::<u64>(), count in any::<u64>()) {
            let r = Record { writer, seq, count };
            prop_assert_eq!(Record::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn corrupt_one_byte_is_detected(writer in any::<u32>(), seq in any::<u64>(), count in any::<u64>(),
                                        at in 0usize..RECORD_SIZE, flip in 1u8..=255) {
            let r = Record { writer, seq, count };
            let mut b = r.encode();
            b[at] ^= flip;
            // Either rejected, or (only if every byte became zero) the initial record.
            match Record::decode(&b) {
                Err(_) => {}
                Ok(got) => prop_assert!(b.iter().all(|&x| x == 0) && got == Record::default()),
            }
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
            let _ = Record::decode(&bytes);
            let _ = decode_all(&bytes);
        }
    }
}
