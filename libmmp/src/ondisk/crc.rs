//! Checksum conventions of the kernel and e2fsprogs.
//!
//! The kernel's `crc32c(seed, buf)` (and e2fsprogs' `ext2fs_crc32c_le`) is the raw register form:
//! the seed is used as-is and the result is not inverted. The `crc32c` crate returns the
//! standard, finalised CRC-32C, so `raw(seed, d) == !crc32c_append(!seed, d)`. Every checksum in
//! this crate goes through [`raw_crc32c`] so that the convention lives in one place.

/// The kernel's `crc32c(seed, data)`: no pre- or post-inversion beyond what `seed` carries.
pub fn raw_crc32c(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// `ext2fs_crc16` / the kernel's `crc16()`: CRC-16 with the reflected polynomial 0xA001
/// (0x8005), no final inversion; the caller passes the running value (`!0` to start, as the
/// `gdt_csum` group descriptor checksum does). Bitwise rather than table-driven: it runs over a
/// few dozen bytes per descriptor.
pub fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_values() {
        // CRC-16/ARC (init 0) and CRC-16/MODBUS (init 0xFFFF) of "123456789".
        assert_eq!(crc16(0, b"123456789"), 0xBB3D);
        assert_eq!(crc16(!0, b"123456789"), 0x4B37);
        assert_eq!(crc16(crc16(!0, b"1234"), b"56789"), 0x4B37);
    }

    #[test]
    fn raw_matches_standard_crc_with_inverted_seed() {
        // The standard CRC-32C of "123456789" is 0xE3069283 (RFC 3720 check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(!raw_crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn raw_is_composable_like_the_kernel() {
        let whole = raw_crc32c(0x1234_5678, b"hello world");
        let split = raw_crc32c(raw_crc32c(0x1234_5678, b"hello "), b"world");
        assert_eq!(whole, split);
    }
}
