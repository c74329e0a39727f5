//! Sticky placement of a key into weighted buckets: the same key always lands in the same
//! bucket, and the share of distinct keys per bucket follows the weights.
//!
//! The hash is 64-bit FNV-1a followed by MurmurHash3's 64-bit finalizer, which spreads
//! similar keys (`10.0.0.1`, `10.0.0.2`) evenly; it is fixed, so placement survives
//! restarts and upgrades.

/// A stable, well-mixed 64-bit hash of `key`.
pub fn hash64(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

/// MurmurHash3's 64-bit finalizer.
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The bucket of `key` among buckets of `weights` (at least one weight must be non-zero).
pub fn bucket(key: &[u8], weights: &[u32]) -> usize {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return 0;
    }
    // Scale the hash into [0, total) without modulo bias.
    let mut point = ((u128::from(hash64(key)) * u128::from(total)) >> 64) as u64;
    for (index, &weight) in weights.iter().enumerate() {
        if point < u64::from(weight) {
            return index;
        }
        point -= u64::from(weight);
    }
    weights.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_bucket() {
        for i in 0..100 {
            let key = format!("10.1.2.{i}");
            assert_eq!(
                bucket(key.as_bytes(), &[9, 1]),
                bucket(key.as_bytes(), &[9, 1])
            );
        }
    }

    #[test]
    fn shares_follow_weights() {
        let experiment = (0..10_000)
            .filter(|i| {
                bucket(
                    format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256).as_bytes(),
                    &[9, 1],
                ) == 1
            })
            .count();
        assert!((900..=1100).contains(&experiment), "{experiment}");
    }

    #[test]
    fn zero_weight_bucket_gets_nothing() {
        assert!((0..1000).all(|i| bucket(format!("k{i}").as_bytes(), &[1, 0, 1]) != 1));
    }
}
