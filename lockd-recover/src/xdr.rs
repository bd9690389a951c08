//! XDR (RFC 4506) encoding and bounds-checked decoding.
//!
//! Every item is a multiple of 4 bytes, big-endian. Variable-length opaques and strings carry a
//! u32 length and are zero-padded to a 4-byte boundary. The decoder never panics: every read is
//! checked against the remaining input and against the declared maximum length of the field.

use thiserror::Error;

/// Why a buffer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum XdrError {
    #[error("truncated XDR data: needed {needed} bytes at offset {offset}, only {available} left")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("XDR field at offset {offset} declares length {len}, above its maximum {max}")]
    TooLong { offset: usize, len: u32, max: u32 },
    #[error("XDR string at offset {offset} is not valid UTF-8")]
    NotUtf8 { offset: usize },
    #[error("XDR boolean at offset {offset} has value {value}, expected 0 or 1")]
    BadBool { offset: usize, value: u32 },
}

/// Number of zero bytes that pad `len` bytes to a multiple of 4.
pub fn pad_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Appends XDR items to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u32(u32::from(v))
    }

    /// Fixed-length opaque: the bytes and their padding, no length word.
    pub fn fixed_opaque(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len() + pad_len(data.len()), 0);
        self
    }

    /// Variable-length opaque. Callers keep `data` within the field's declared maximum; the
    /// length word is the true length, so an oversize field is rejected by the peer, not
    /// silently truncated here.
    pub fn opaque(&mut self, data: &[u8]) -> &mut Self {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.fixed_opaque(data)
    }

    pub fn string(&mut self, s: &str) -> &mut Self {
        self.opaque(s.as_bytes())
    }

    pub fn raw(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads XDR items from a byte slice, checking every bound.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes not consumed yet (procedure results after an RPC reply header).
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        if self.remaining() < n {
            return Err(XdrError::Truncated {
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u32(&mut self) -> Result<u32, XdrError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self) -> Result<i32, XdrError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn bool(&mut self) -> Result<bool, XdrError> {
        let offset = self.pos;
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(XdrError::BadBool { offset, value }),
        }
    }

    /// Fixed-length opaque of `len` bytes plus padding. Padding content is not checked: RFC 4506
    /// asks senders for zeros, and accepting any padding costs nothing.
    pub fn fixed_opaque(&mut self, len: usize) -> Result<&'a [u8], XdrError> {
        let pad = pad_len(len);
        let offset = self.pos;
        let total = len.checked_add(pad).ok_or(XdrError::Truncated {
            offset,
            needed: usize::MAX,
            available: self.remaining(),
        })?;
        let data = self.take(total)?;
        Ok(&data[..len])
    }

    /// Variable-length opaque with a declared maximum (`opaque x<max>`).
    pub fn opaque(&mut self, max: u32) -> Result<&'a [u8], XdrError> {
        let offset = self.pos;
        let len = self.u32()?;
        if len > max {
            return Err(XdrError::TooLong { offset, len, max });
        }
        self.fixed_opaque(len as usize)
    }

    /// `string x<max>`; must be UTF-8 (all names used by NSM and rpcbind are ASCII).
    pub fn string(&mut self, max: u32) -> Result<&'a str, XdrError> {
        let offset = self.pos;
        let b = self.opaque(max)?;
        std::str::from_utf8(b).map_err(|_| XdrError::NotUtf8 { offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn string_is_length_prefixed_and_padded() {
        let mut e = Encoder::new();
        e.string("abcde");
        assert_eq!(
            e.into_bytes(),
            vec![0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0]
        );
    }

    #[test]
    fn truncated_length_word_is_an_error() {
        let mut d = Decoder::new(&[0, 0, 0]);
        assert!(matches!(
            d.u32(),
            Err(XdrError::Truncated { needed: 4, .. })
        ));
    }

    #[test]
    fn declared_length_beyond_buffer_is_an_error() {
        let mut d = Decoder::new(&[0, 0, 0, 8, b'a', b'b', 0, 0]);
        assert!(matches!(d.opaque(100), Err(XdrError::Truncated { .. })));
    }

    #[test]
    fn declared_length_above_maximum_is_an_error() {
        let mut d = Decoder::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            d.opaque(1024),
            Err(XdrError::TooLong { len: u32::MAX, .. })
        ));
    }

    #[test]
    fn bool_other_than_zero_or_one_is_rejected() {
        let mut d = Decoder::new(&[0, 0, 0, 2]);
        assert!(matches!(d.bool(), Err(XdrError::BadBool { value: 2, .. })));
    }

    #[test]
    fn invalid_utf8_string_is_rejected() {
        let mut d = Decoder::new(&[0, 0, 0, 1, 0xff, 0, 0, 0]);
        assert!(matches!(d.string(10), Err(XdrError::NotUtf8 { .. })));
    }

    proptest! {
        #[test]
        fn items_round_trip(a in any::<u32>(), b in any::<i32>(), flag in any::<bool>(),
                            s in "[ -~]{0,64}", o in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut e = Encoder::new();
            e.u32(a).i32(b).bool(flag).string(&s).opaque(&o).fixed_opaque(&o);
            let bytes = e.into_bytes();
            prop_assert_eq!(bytes.len() % 4, 0);
            let mut d = Decoder::new(&bytes);
            prop_assert_eq!(d.u32().unwrap(), a);
            prop_assert_eq!(d.i32().unwrap(), b);
            prop_assert_eq!(d.bool().unwrap(), flag);
            prop_assert_eq!(d.string(64).unwrap(), s.as_str());
            prop_assert_eq!(d.opaque(64).unwrap(), o.as_slice());
            prop_assert_eq!(d.fixed_opaque(o.len()).unwrap(), o.as_slice());
            prop_assert_eq!(d.remaining(), 0);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut d = Decoder::new(&bytes);
            let _ = d.string(1024);
            let _ = d.opaque(16);
            let _ = d.bool();
            let _ = d.u32();
        }
    }
}
