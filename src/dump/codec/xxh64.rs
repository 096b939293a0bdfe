//! XXH64, the hash behind zstd's Content_Checksum (RFC 8878 section 3.1.1: the low 32 bits of
//! XXH64 of the frame's decoded content, seed 0). Algorithm from xxHash's `xxhash.h` (v0.8)
//! description: four 64-bit lanes over 32-byte stripes, then the tail, then an avalanche.

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

#[inline(always)]
fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

#[inline(always)]
fn merge(acc: u64, v: u64) -> u64 {
    (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

/// Little-endian word of an 8-byte chunk (the callers' `chunks_exact(8)`).
#[inline(always)]
fn le64(b: &[u8]) -> u64 {
    <[u8; 8]>::try_from(b).map_or(0, u64::from_le_bytes)
}

/// Little-endian word of the first 4 bytes (the caller has at least 4).
#[inline(always)]
fn le32(b: &[u8]) -> u64 {
    b.get(..4)
        .and_then(|w| <[u8; 4]>::try_from(w).ok())
        .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
}

/// XXH64 of `data` with `seed`.
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    let stripes = data.chunks_exact(32);
    let tail = stripes.remainder();
    let mut acc = if data.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        for stripe in stripes {
            for (lane, bytes) in v.iter_mut().zip(stripe.chunks_exact(8)) {
                *lane = round(*lane, le64(bytes));
            }
        }
        let [v1, v2, v3, v4] = v;
        let mut acc = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        for lane in v {
            acc = merge(acc, lane);
        }
        acc
    } else {
        seed.wrapping_add(P5)
    };
    acc = acc.wrapping_add(data.len() as u64);
    let words = tail.chunks_exact(8);
    let rest = words.remainder();
    for w in words {
        acc = (acc ^ round(0, le64(w)))
            .rotate_left(27)
            .wrapping_mul(P1)
            .wrapping_add(P4);
    }
    let bytes = if rest.len() >= 4 {
        acc = (acc ^ le32(rest).wrapping_mul(P1))
            .rotate_left(23)
            .wrapping_mul(P2)
            .wrapping_add(P3);
        rest.get(4..).unwrap_or_default()
    } else {
        rest
    };
    for &b in bytes {
        acc = (acc ^ u64::from(b).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    acc ^= acc >> 33;
    acc = acc.wrapping_mul(P2);
    acc ^= acc >> 29;
    acc = acc.wrapping_mul(P3);
    acc ^ (acc >> 32)
}

#[cfg(test)]
mod tests {
    use super::xxh64;

    /// The deterministic sample buffer of xxHash's own sanity test (`xxhsum.c`, `fillTestBuffer`):
    /// bytes of a running 32-bit multiply by PRIME32_1, top byte of each step.
    fn sanity_buffer(len: usize) -> Vec<u8> {
        let mut byte_gen: u64 = 2_654_435_761; // PRIME32_1
        (0..len)
            .map(|_| {
                let b = (byte_gen >> 56) as u8;
                byte_gen = byte_gen.wrapping_mul(11_400_714_785_074_694_797); // PRIME64_1
                b
            })
            .collect()
    }

    /// Vectors from the reference: Debian's `xxhsum -H64` (xxhash 0.8.1) on the same bytes, and
    /// the published XXH64 values of "" and "abc".
    #[test]
    fn matches_reference_vectors() {
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        for &(text, want) in super::tests_vectors::VECTORS {
            assert_eq!(xxh64(text.as_bytes(), 0), want, "{text:?}");
        }
        let buf = sanity_buffer(300);
        for &(len, seed, want) in super::tests_vectors::SANITY {
            assert_eq!(
                xxh64(buf.get(..len).unwrap_or_default(), seed),
                want,
                "len {len} seed {seed:#x}"
            );
        }
    }
}

#[cfg(test)]
mod tests_vectors {
    /// (text, XXH64 seed 0), computed with `xxhsum -H64` of Debian 12's xxhash 0.8.1.
    pub const VECTORS: &[(&str, u64)] = &[
        ("a", 0xD24E_C4F1_A98C_6E5B),
        ("abcd", 0xDE03_27B0_D25D_92CC),
        ("Nobody inspects the spammish repetition", 0xFBCE_A83C_8A37_8BF1),
        (
            "The quick brown fox jumps over the lazy dog",
            0x0B24_2D36_1FDA_71BC,
        ),
        ("0123456789abcdef0123456789abcdef0", 0xE876_84F0_8D6D_0816),
        (
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxyz",
            0x295E_792E_4275_4BDB,
        ),
    ];
    /// (length of the sanity buffer prefix, seed, XXH64).
    pub const SANITY: &[(usize, u64, u64)] = &[
        (0, 0, 0xEF46_DB37_51D8_E999),
        (0, 0x9E37_79B1, 0xAC75_FDA2_929B_17EF),
        (1, 0, 0xE934_A84A_DB05_2768),
        (1, 0x9E37_79B1, 0x5014_6076_43A9_B4C3),
        (3, 0, 0xFF7E_1959_CB50_794A),
        (3, 0x9E37_79B1, 0xAA85_84E8_3660_F7D1),
        (4, 0, 0x9136_A0DC_A574_57EE),
        (4, 0x9E37_79B1, 0xCAAB_286B_D8E9_FDB5),
        (7, 0, 0x6C83_909A_9F01_ED25),
        (7, 0x9E37_79B1, 0xF98D_03B1_AD6F_9293),
        (8, 0, 0xCDBC_F538_E71D_1348),
        (8, 0x9E37_79B1, 0xFE0C_047A_5353_CDAC),
        (9, 0, 0x554B_1AE9_91ED_A6B6),
        (9, 0x9E37_79B1, 0x7908_2652_48F6_D73F),
        (31, 0, 0x299B_39A2_90E6_D783),
        (31, 0x9E37_79B1, 0xDA67_3D5F_EB5C_1D79),
        (32, 0, 0x18B2_1649_2BB4_4B70),
        (32, 0x9E37_79B1, 0xB3F3_3BDF_93AD_E409),
        (33, 0, 0x55C8_DC3E_578F_5B59),
        (33, 0x9E37_79B1, 0xE92C_292F_64BC_3071),
        (63, 0, 0xA9EF_BE0F_A0F3_F4E7),
        (63, 0x9E37_79B1, 0x6C91_1FAD_B05B_6FC2),
        (64, 0, 0xEF55_8F8A_CAC2_B5CD),
        (64, 0x9E37_79B1, 0xB5EE_BA99_264C_C44F),
        (100, 0, 0x4BFE_019C_D91D_9EA4),
        (100, 0x9E37_79B1, 0x4853_706D_C962_5CAE),
        (300, 0, 0x27D0_E073_EC12_824F),
        (300, 0x9E37_79B1, 0x36CB_189D_9F3B_6AD6),
    ];
}
