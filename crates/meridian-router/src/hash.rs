//! Small stable hashes: the same input hashes the same in every process and
//! release (keys shared between replicas, prompt-prefix affinity).

/// SplitMix64's finalizer: spreads a counter or hash over all 64 bits.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a, for stable hashes of keys and prompt prefixes.
pub fn fnv(s: &str) -> u64 {
    fnv_bytes(s.as_bytes())
}

/// FNV-1a over bytes.
pub fn fnv_bytes(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}
