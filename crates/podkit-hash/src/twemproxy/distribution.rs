//! Where twemproxy puts a key: its ketama continuum, modula and random distributions over
//! the live servers of a pool, and hash tags.

use std::fmt;
use std::str::FromStr;

use super::hashes::md5_digest;

/// `distribution:` in `nutcracker.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    Ketama,
    Modula,
    Random,
}

impl FromStr for Distribution {
    type Err = String;

    fn from_str(name: &str) -> Result<Distribution, String> {
        match name {
            "ketama" => Ok(Distribution::Ketama),
            "modula" => Ok(Distribution::Modula),
            "random" => Ok(Distribution::Random),
            other => Err(format!(
                "'{other}' is not a valid distribution (ketama, modula or random)"
            )),
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::Ketama => "ketama",
            Distribution::Modula => "modula",
            Distribution::Random => "random",
        })
    }
}

/// A server as the distributions see it: its ketama name, weight, and whether it is live
/// (not ejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub weight: u32,
    pub live: bool,
}

/// Points each server gets per 100% of the weight.
const POINTS_PER_SERVER: f32 = 160.0;

/// The placement table of a pool, rebuilt whenever a server is ejected or returns.
#[derive(Debug, Clone)]
pub enum Table {
    /// (point, server index), sorted by point.
    Ketama(Vec<(u32, usize)>),
    /// Each live server repeated `weight` times.
    Modula(Vec<usize>),
    /// One entry per live server.
    Random(Vec<usize>),
}

impl Table {
    /// Builds the table over the live `members` (indexes are into `members`).
    pub fn build(distribution: Distribution, members: &[Member]) -> Table {
        let live: Vec<usize> = (0..members.len()).filter(|&i| members[i].live).collect();
        match distribution {
            Distribution::Ketama => Table::Ketama(continuum(members, &live)),
            Distribution::Modula => Table::Modula(
                live.iter()
                    .flat_map(|&i| std::iter::repeat_n(i, members[i].weight as usize))
                    .collect(),
            ),
            Distribution::Random => Table::Random(live),
        }
    }

    /// The server index for a key hash; `None` when no server is live. `random` is the
    /// random number used by the random distribution.
    pub fn pick(&self, hash: u32, random: u32) -> Option<usize> {
        match self {
            Table::Ketama(points) => {
                if points.is_empty() {
                    return None;
                }
                let at = points.partition_point(|&(p, _)| p < hash);
                Some(points.get(at).unwrap_or(&points[0]).1)
            }
            Table::Modula(slots) => (!slots.is_empty()).then(|| slots[hash as usize % slots.len()]),
            Table::Random(slots) => {
                (!slots.is_empty()).then(|| slots[random as usize % slots.len()])
            }
        }
    }
}

/// ketama: `floor(weight / total × 160 / 4 × live) × 4` points per live server, computed in
/// 32-bit float as nutcracker does; each md5 of `"<name>-<i>"` gives four points.
fn continuum(members: &[Member], live: &[usize]) -> Vec<(u32, usize)> {
    let total: u32 = live.iter().map(|&i| members[i].weight).sum();
    if total == 0 {
        return Vec::new();
    }
    let live_count = live.len() as f32;
    let mut points = Vec::new();
    for &i in live {
        let pct = members[i].weight as f32 / total as f32;
        let scaled = pct * POINTS_PER_SERVER / 4.0 * live_count;
        let per_server = ((f64::from(scaled) + 0.000_000_000_1) as f32).floor() * 4.0;
        for j in 0..(per_server as u32 / 4) {
            let digest = md5_digest(format!("{}-{j}", members[i].name).as_bytes());
            for x in 0..4 {
                let value = u32::from_le_bytes([
                    digest[4 * x],
                    digest[4 * x + 1],
                    digest[4 * x + 2],
                    digest[4 * x + 3],
                ]);
                points.push((value, i));
            }
        }
    }
    points.sort_by_key(|&(value, _)| value);
    points
}

/// The part of `key` that is hashed: between the hash tag's two characters when both are
/// present with something between them, else the whole key.
pub fn hash_tagged(key: &[u8], tag: Option<[u8; 2]>) -> &[u8] {
    let Some([open, close]) = tag else {
        return key;
    };
    let Some(start) = key.iter().position(|&b| b == open) else {
        return key;
    };
    match key[start + 1..].iter().position(|&b| b == close) {
        Some(len) if len > 0 => &key[start + 1..start + 1 + len],
        _ => key,
    }
}

/// The name a server is known by on the continuum and in stats: its configured name, else
/// `host` when the port is 11211, else `host:port`.
pub fn server_name(host: &str, port: u16, name: Option<&str>) -> String {
    match name {
        Some(name) => name.to_string(),
        None if port == 11211 => host.to_string(),
        None => format!("{host}:{port}"),
    }
}

/// nutcracker's order of servers: by name, shorter names first.
pub fn name_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                name: format!("127.0.0.1:{}", 6379 + i),
                weight: 1,
                live: true,
            })
            .collect()
    }

    #[test]
    fn ketama_gives_160_points_per_equal_server() {
        let Table::Ketama(points) = Table::build(Distribution::Ketama, &members(3)) else {
            panic!()
        };
        assert_eq!(points.len(), 480);
    }

    #[test]
    fn ejecting_a_server_moves_only_its_keys() {
        let mut m = members(4);
        let all = Table::build(Distribution::Ketama, &m);
        m[2].live = false;
        let three = Table::build(Distribution::Ketama, &m);
        for key in 0..2000u32 {
            let hash = super::super::Hash::Fnv1a_64.hash(format!("key:{key}").as_bytes());
            let (before, after) = (all.pick(hash, 0).unwrap(), three.pick(hash, 0).unwrap());
            assert_ne!(after, 2);
            if before != 2 {
                assert_eq!(before, after);
            }
        }
    }

    #[test]
    fn modula_repeats_by_weight() {
        let mut m = members(2);
        m[1].weight = 3;
        let Table::Modula(slots) = Table::build(Distribution::Modula, &m) else {
            panic!()
        };
        assert_eq!(slots, vec![0, 1, 1, 1]);
    }

    #[test]
    fn hash_tags() {
        let tag = Some(*b"{}");
        assert_eq!(hash_tagged(b"user:{42}:name", tag), b"42");
        assert_eq!(hash_tagged(b"user:{}:name", tag), b"user:{}:name");
        assert_eq!(hash_tagged(b"user:{42", tag), b"user:{42");
        assert_eq!(hash_tagged(b"plain", tag), b"plain");
        assert_eq!(hash_tagged(b"a{b}c", None), b"a{b}c");
    }

    #[test]
    fn names_and_order() {
        assert_eq!(server_name("10.0.0.1", 11211, None), "10.0.0.1");
        assert_eq!(server_name("10.0.0.1", 6379, None), "10.0.0.1:6379");
        assert_eq!(server_name("10.0.0.1", 6379, Some("alpha")), "alpha");
        let mut names = vec!["server10", "server2", "alpha"];
        names.sort_by(|a, b| name_order(a, b));
        assert_eq!(names, vec!["alpha", "server2", "server10"]);
    }
}
