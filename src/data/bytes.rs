//! Little-endian field access and the checksum shared by our binary formats.
//!
//! Readers take `&[u8]` from a memory map or a file read whole; every access is bounds-checked
//! by slicing, so a damaged file gives an error instead of a panic.

/// FNV-1a, 64-bit. Every step is a bijection of the running state, so changing any single
/// byte of the input always changes the result: a flipped header byte is always caught.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Reads a `u32` at `at` (the caller has checked `at + 4 <= bytes.len()`).
pub fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads a `u64` at `at` (the caller has checked `at + 8 <= bytes.len()`).
pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Rounds `x` up to a multiple of `align` (a power of two), `None` on overflow.
pub fn align_up(x: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    x.checked_add(align - 1).map(|v| v & !(align - 1))
}

/// Our formats are little-endian and cast in place with `bytemuck`; a big-endian host would
/// read garbage, so it is refused with a clear message.
pub fn check_little_endian(path: &std::path::Path) -> crate::Result<()> {
    if cfg!(target_endian = "big") {
        return Err(crate::Error::format(
            path,
            "aoanet's data files are little-endian; big-endian hosts are not supported",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_value_and_single_byte_sensitivity() {
        // The published FNV-1a 64 test vector for "a".
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        // Split points do not matter.
        assert_eq!(fnv1a64(&[b"ab", b"c"]), fnv1a64(&[b"abc"]));
        let base = [7u8; 32];
        let h = fnv1a64(&[&base]);
        for i in 0..base.len() {
            for bit in 0..8 {
                let mut m = base;
                m[i] ^= 1 << bit;
                assert_ne!(fnv1a64(&[&m]), h);
            }
        }
    }

    #[test]
    fn align_up_rounds_and_detects_overflow() {
        assert_eq!(align_up(0, 64), Some(0));
        assert_eq!(align_up(1, 64), Some(64));
        assert_eq!(align_up(64, 64), Some(64));
        assert_eq!(align_up(u64::MAX, 64), None);
    }
}
