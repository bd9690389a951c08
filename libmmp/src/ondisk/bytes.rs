//! Little-endian integers at byte offsets: the one copy of these helpers in libmmp (ext4 and
//! e2fsprogs store every on-disk integer little-endian, `__le16`/`__le32`/`__le64`).
//!
//! They index the slice directly: a parser checks its buffer's length once, up front, and then
//! reads fields at constant offsets inside it, so these can never run past the end.

/// `__le16` at `off`.
pub fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// `__le32` at `off`.
pub fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(std::array::from_fn(|i| b[off + i]))
}

/// `__le64` at `off`.
pub fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(std::array::from_fn(|i| b[off + i]))
}

/// Store `v` as `__le16` at `off`.
pub fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

/// Store `v` as `__le32` at `off`.
pub fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Store `v` as `__le64` at `off`.
pub fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// A value stored little-endian in a fixed number of bytes: what a field table entry holds.
pub trait Le: Copy {
    /// Bytes on disk.
    const SIZE: usize;
    fn get(b: &[u8], off: usize) -> Self;
    fn put(self, b: &mut [u8], off: usize);
}

impl Le for u8 {
    const SIZE: usize = 1;
    fn get(b: &[u8], off: usize) -> Self {
        b[off]
    }
    fn put(self, b: &mut [u8], off: usize) {
        b[off] = self;
    }
}

impl Le for u16 {
    const SIZE: usize = 2;
    fn get(b: &[u8], off: usize) -> Self {
        le16(b, off)
    }
    fn put(self, b: &mut [u8], off: usize) {
        put16(b, off, self)
    }
}

impl Le for u32 {
    const SIZE: usize = 4;
    fn get(b: &[u8], off: usize) -> Self {
        le32(b, off)
    }
    fn put(self, b: &mut [u8], off: usize) {
        put32(b, off, self)
    }
}

impl Le for u64 {
    const SIZE: usize = 8;
    fn get(b: &[u8], off: usize) -> Self {
        le64(b, off)
    }
    fn put(self, b: &mut [u8], off: usize) {
        put64(b, off, self)
    }
}

/// A byte array (UUID, label, name): stored as is.
impl<const N: usize> Le for [u8; N] {
    const SIZE: usize = N;
    fn get(b: &[u8], off: usize) -> Self {
        std::array::from_fn(|i| b[off + i])
    }
    fn put(self, b: &mut [u8], off: usize) {
        b[off..off + N].copy_from_slice(&self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(v16 in any::<u16>(), v32 in any::<u32>(), v64 in any::<u64>(), off in 0usize..8) {
            let mut b = [0u8; 24];
            put16(&mut b, off, v16);
            prop_assert_eq!(le16(&b, off), v16);
            put32(&mut b, off, v32);
            prop_assert_eq!(le32(&b, off), v32);
            put64(&mut b, off, v64);
            prop_assert_eq!(le64(&b, off), v64);
            prop_assert_eq!(le32(&b, off), v64 as u32, "little-endian: low half first");
        }
    }

    #[test]
    fn byte_order_is_little_endian() {
        let b = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
        assert_eq!(le16(&b, 0), 0x0201);
        assert_eq!(le32(&b, 0), 0x0403_0201);
        assert_eq!(le64(&b, 0), 0x0807_0605_0403_0201);
        assert_eq!(<[u8; 3]>::get(&b, 5), [6, 7, 8]);
    }
}
