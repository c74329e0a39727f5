//! twemproxy's hash functions, bit for bit (nutcracker 0.5 `src/hashkit`).
//!
//! Details that matter for compatibility: the FNV and one-at-a-time functions widen each
//! byte as a *signed* char; `fnv1a_64` really works in 32 bits (the 64-bit offset basis and
//! prime cut to their low halves) and `fnv1_64` returns the low 32 bits of a 64-bit hash;
//! `crc32` keeps 15 bits (libmemcached's old variant) while `crc32a` is the full CRC-32;
//! `crc16` is XMODEM without masking its result to 16 bits; `murmur` is MurmurHash2 seeded
//! with `0xdeadbeef × len`; `jenkins` is lookup3's `hashlittle` with an initial value of 13;
//! `hsieh` is SuperFastHash starting from 0; `md5` is the first four digest bytes,
//! little-endian.

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};

/// A hash function name as `nutcracker.yaml` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum Hash {
    OneAtATime,
    Md5,
    Crc16,
    Crc32,
    Crc32a,
    Fnv1_64,
    Fnv1a_64,
    Fnv1_32,
    Fnv1a_32,
    Hsieh,
    Murmur,
    Jenkins,
}

/// Every name, for error messages.
pub const HASH_NAMES: &str =
    "one_at_a_time, md5, crc16, crc32, crc32a, fnv1_64, fnv1a_64, fnv1_32, fnv1a_32, hsieh, murmur, jenkins";

impl FromStr for Hash {
    type Err = String;

    fn from_str(name: &str) -> Result<Hash, String> {
        Ok(match name {
            "one_at_a_time" => Hash::OneAtATime,
            "md5" => Hash::Md5,
            "crc16" => Hash::Crc16,
            "crc32" => Hash::Crc32,
            "crc32a" => Hash::Crc32a,
            "fnv1_64" => Hash::Fnv1_64,
            "fnv1a_64" => Hash::Fnv1a_64,
            "fnv1_32" => Hash::Fnv1_32,
            "fnv1a_32" => Hash::Fnv1a_32,
            "hsieh" => Hash::Hsieh,
            "murmur" => Hash::Murmur,
            "jenkins" => Hash::Jenkins,
            other => {
                return Err(format!(
                    "'{other}' is not a valid hash (one of {HASH_NAMES})"
                ))
            }
        })
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hash::OneAtATime => "one_at_a_time",
            Hash::Md5 => "md5",
            Hash::Crc16 => "crc16",
            Hash::Crc32 => "crc32",
            Hash::Crc32a => "crc32a",
            Hash::Fnv1_64 => "fnv1_64",
            Hash::Fnv1a_64 => "fnv1a_64",
            Hash::Fnv1_32 => "fnv1_32",
            Hash::Fnv1a_32 => "fnv1a_32",
            Hash::Hsieh => "hsieh",
            Hash::Murmur => "murmur",
            Hash::Jenkins => "jenkins",
        })
    }
}

impl Hash {
    /// The 32-bit hash of `key`.
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            Hash::OneAtATime => one_at_a_time(key),
            Hash::Md5 => md5(key),
            Hash::Crc16 => crc16(key),
            Hash::Crc32 => crc32_15bit(key),
            Hash::Crc32a => crc32fast::hash(key),
            Hash::Fnv1_64 => fnv1_64(key),
            Hash::Fnv1a_64 => fnv1a_64(key),
            Hash::Fnv1_32 => fnv1_32(key),
            Hash::Fnv1a_32 => fnv1a_32(key),
            Hash::Hsieh => hsieh(key),
            Hash::Murmur => murmur(key),
            Hash::Jenkins => jenkins(key),
        }
    }
}

/// A byte widened as C's signed `char` to 32 bits.
fn signed(byte: u8) -> u32 {
    byte as i8 as i32 as u32
}

fn one_at_a_time(key: &[u8]) -> u32 {
    let mut v: u32 = 0;
    for &b in key {
        v = v.wrapping_add(signed(b));
        v = v.wrapping_add(v << 10);
        v ^= v >> 6;
    }
    v = v.wrapping_add(v << 3);
    v ^= v >> 11;
    v.wrapping_add(v << 15)
}

/// The first four bytes of the MD5 digest as a little-endian number.
pub fn md5(key: &[u8]) -> u32 {
    let digest = Md5::digest(key);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The full MD5 digest (ketama takes four points from each).
pub fn md5_digest(key: &[u8]) -> [u8; 16] {
    Md5::digest(key).into()
}

fn crc16(key: &[u8]) -> u32 {
    let mut crc: u32 = 0;
    for &b in key {
        crc = (crc << 8) ^ u32::from(CRC16_TABLE[(((crc >> 8) ^ u32::from(b)) & 0xff) as usize]);
    }
    crc
}

fn crc32_15bit(key: &[u8]) -> u32 {
    let mut crc: u32 = 0xffff_ffff;
    for &b in key {
        crc = (crc >> 8) ^ CRC32_TABLE[((crc ^ u32::from(b)) & 0xff) as usize];
    }
    ((!crc) >> 16) & 0x7fff
}

fn fnv1_64(key: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        h ^= b as i8 as i64 as u64;
    }
    h as u32
}

fn fnv1a_64(key: &[u8]) -> u32 {
    let mut h: u32 = 0x8422_2325;
    for &b in key {
        h ^= signed(b);
        h = h.wrapping_mul(0x0000_01b3);
    }
    h
}

fn fnv1_32(key: &[u8]) -> u32 {
    let mut h: u32 = 2_166_136_261;
    for &b in key {
        h = h.wrapping_mul(16_777_619);
        h ^= signed(b);
    }
    h
}

fn fnv1a_32(key: &[u8]) -> u32 {
    let mut h: u32 = 2_166_136_261;
    for &b in key {
        h ^= signed(b);
        h = h.wrapping_mul(16_777_619);
    }
    h
}

fn get16(data: &[u8]) -> u32 {
    u32::from(data[0]) | (u32::from(data[1]) << 8)
}

fn hsieh(key: &[u8]) -> u32 {
    if key.is_empty() {
        return 0;
    }
    let mut hash: u32 = 0;
    let mut chunks = key.chunks_exact(4);
    for chunk in &mut chunks {
        hash = hash.wrapping_add(get16(chunk));
        let tmp = (get16(&chunk[2..]) << 11) ^ hash;
        hash = (hash << 16) ^ tmp;
        hash = hash.wrapping_add(hash >> 11);
    }
    let rest = chunks.remainder();
    match rest.len() {
        3 => {
            hash = hash.wrapping_add(get16(rest));
            hash ^= hash << 16;
            hash ^= signed(rest[2]) << 18;
            hash = hash.wrapping_add(hash >> 11);
        }
        2 => {
            hash = hash.wrapping_add(get16(rest));
            hash ^= hash << 11;
            hash = hash.wrapping_add(hash >> 17);
        }
        1 => {
            hash = hash.wrapping_add(u32::from(rest[0]));
            hash ^= hash << 10;
            hash = hash.wrapping_add(hash >> 1);
        }
        _ => {}
    }
    hash ^= hash << 3;
    hash = hash.wrapping_add(hash >> 5);
    hash ^= hash << 4;
    hash = hash.wrapping_add(hash >> 17);
    hash ^= hash << 25;
    hash.wrapping_add(hash >> 6)
}

fn murmur(key: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let len = key.len() as u32;
    let seed = 0xdead_beef_u32.wrapping_mul(len);
    let mut h = seed ^ len;
    let mut chunks = key.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// Bob Jenkins' lookup3 `hashlittle` (byte-wise), initial value 13.
fn jenkins(key: &[u8]) -> u32 {
    let init = 0xdead_beef_u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(13);
    let (mut a, mut b, mut c) = (init, init, init);
    let word = |bytes: &[u8]| {
        let mut w = [0u8; 4];
        w[..bytes.len()].copy_from_slice(bytes);
        u32::from_le_bytes(w)
    };
    let mut rest = key;
    while rest.len() > 12 {
        a = a.wrapping_add(word(&rest[0..4]));
        b = b.wrapping_add(word(&rest[4..8]));
        c = c.wrapping_add(word(&rest[8..12]));
        mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    if rest.is_empty() {
        return c;
    }
    a = a.wrapping_add(word(&rest[..rest.len().min(4)]));
    if rest.len() > 4 {
        b = b.wrapping_add(word(&rest[4..rest.len().min(8)]));
    }
    if rest.len() > 8 {
        c = c.wrapping_add(word(&rest[8..]));
    }
    finalize(&mut a, &mut b, &mut c);
    c
}

fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn finalize(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// CRC-16/XMODEM (polynomial 0x1021) by byte.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The reflected IEEE CRC-32 table (polynomial 0xEDB88320).
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed by nutcracker 0.5's own hash functions.
    #[test]
    fn match_nutcracker_test_vectors() {
        let cases: [(Hash, &str, u32); 17] = [
            (Hash::Fnv1a_64, "a", 2_248_273_036),
            (Hash::Fnv1a_64, "foo", 4_275_688_823),
            (Hash::Fnv1_64, "a", 2_248_259_518),
            (Hash::Fnv1_64, "foo", 1_805_727_027),
            (Hash::Murmur, "a", 1_262_581_116),
            (Hash::Murmur, "foo", 3_303_027_599),
            (Hash::Jenkins, "a", 3_768_813_200),
            (Hash::Jenkins, "foo", 2_583_187_353),
            (Hash::Hsieh, "a", 2_472_816_263),
            (Hash::Hsieh, "foo", 1_993_659_431),
            (Hash::Crc32, "a", 26_807),
            (Hash::Crc32, "foo", 3_187),
            (Hash::Md5, "a", 3_111_502_092),
            (Hash::Md5, "foo", 3_675_831_724),
            (Hash::OneAtATime, "foo", 596_015_325),
            (Hash::Crc16, "foo", 205_303_702),
            (Hash::Fnv1a_32, "foo", 2_851_307_223),
        ];
        for (hash, key, expected) in cases {
            assert_eq!(hash.hash(key.as_bytes()), expected, "{hash}({key:?})");
        }
        assert_eq!(Hash::Crc32a.hash(b"123456789"), 0xcbf4_3926);
        assert_eq!(Hash::Jenkins.hash(b""), 0xdead_befc);
        // Every function on a longer key, and on bytes above 0x7f (signed chars).
        let all = [
            Hash::Fnv1_64,
            Hash::Fnv1a_64,
            Hash::Fnv1_32,
            Hash::Fnv1a_32,
            Hash::Crc16,
            Hash::Crc32,
            Hash::Crc32a,
            Hash::Murmur,
            Hash::Jenkins,
            Hash::OneAtATime,
            Hash::Hsieh,
            Hash::Md5,
        ];
        let digits: [u32; 12] = [
            737_744_598,
            600_231_420,
            605_325_334,
            3_146_166_556,
            2_257_596_867,
            19_444,
            3_421_780_262,
            3_077_965_456,
            427_260_662,
            3_328_923_845,
            3_841_726_064,
            2_498_230_565,
        ];
        let high: [u32; 12] = [
            3_373_746_798,
            751_937_228,
            674_832_654,
            3_233_155_020,
            2_492_909_455,
            31_605,
            2_071_311_882,
            4_001_793_369,
            2_409_679_535,
            2_023_401_739,
            482_868_745,
            648_376_999,
        ];
        for (i, hash) in all.iter().enumerate() {
            assert_eq!(hash.hash(b"123456789"), digits[i], "{hash}(123456789)");
            assert_eq!(hash.hash(b"\xe9t\xe9\xff"), high[i], "{hash}(high bytes)");
        }
    }

    #[test]
    fn names_round_trip() {
        for name in HASH_NAMES.split(", ") {
            assert_eq!(name.parse::<Hash>().unwrap().to_string(), name);
        }
        assert!("sha1".parse::<Hash>().is_err());
    }
}
