//! nginx's consistent hash ring (`hash $key consistent`), placement-compatible with
//! nginx 1.22.
//!
//! For each server, written as in nginx's `server` directive (`host:port`), nginx takes
//! `weight × 160` points: the CRC-32 of `host`, a NUL byte, `port`, and the previous
//! point's value as four little-endian bytes (0 for the first). Points are sorted and
//! equal hashes keep only their first occurrence. A key maps to the first point whose
//! hash is at or above the key's CRC-32, wrapping to the first point; when that server
//! cannot be used nginx moves to the next point.

/// Points per unit of weight.
pub const POINTS_PER_WEIGHT: u32 = 160;

/// A consistent hash ring over servers identified by index.
#[derive(Debug, Clone)]
pub struct Ring {
    /// (hash, server index), sorted by hash, unique hashes.
    points: Vec<(u32, usize)>,
    servers: usize,
}

impl Ring {
    /// Builds the ring for `servers` given as (`host:port` as nginx would see it, weight).
    /// Servers with weight 0 get no points.
    pub fn new<S: AsRef<str>>(servers: &[(S, u32)]) -> Ring {
        let mut points = Vec::new();
        for (index, (name, weight)) in servers.iter().enumerate() {
            let (host, port) = split_host_port(name.as_ref());
            let mut base = crc32fast::Hasher::new();
            base.update(host.as_bytes());
            base.update(b"\0");
            base.update(port.as_bytes());
            let mut previous: u32 = 0;
            for _ in 0..weight.saturating_mul(POINTS_PER_WEIGHT) {
                let mut hasher = base.clone();
                hasher.update(&previous.to_le_bytes());
                let hash = hasher.finalize();
                points.push((hash, index));
                previous = hash;
            }
        }
        // A stable sort keeps the earlier server first among equal hashes, as glibc's
        // merge sort (behind nginx's ngx_qsort) does.
        points.sort_by_key(|&(hash, _)| hash);
        points.dedup_by_key(|&mut (hash, _)| hash);
        Ring {
            points,
            servers: servers.len(),
        }
    }

    /// Number of points on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring has no points.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The server index nginx picks first for `key`.
    pub fn first(&self, key: &[u8]) -> Option<usize> {
        self.walk(key).next()
    }

    /// Server indices in the order nginx tries them for `key`: the point at or after the
    /// key's hash, then each following point, wrapping; each server appears once.
    pub fn walk(&self, key: &[u8]) -> Walk<'_> {
        let hash = crc32fast::hash(key);
        let start = self.points.partition_point(|&(h, _)| h < hash);
        Walk {
            ring: self,
            next: start,
            visited: 0,
            seen: vec![false; self.servers],
            distinct_left: self.servers,
        }
    }
}

/// Iterator of distinct server indices along the ring.
#[derive(Debug)]
pub struct Walk<'a> {
    ring: &'a Ring,
    next: usize,
    visited: usize,
    seen: Vec<bool>,
    distinct_left: usize,
}

impl Iterator for Walk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let n = self.ring.points.len();
        while self.distinct_left > 0 && self.visited < n {
            let (_, server) = self.ring.points[self.next % n];
            self.next += 1;
            self.visited += 1;
            if !self.seen[server] {
                self.seen[server] = true;
                self.distinct_left -= 1;
                return Some(server);
            }
        }
        None
    }
}

/// Splits `host:port` as nginx does: trailing digits after the last `:` are the port;
/// `unix:` paths and names without a numeric port have no port.
fn split_host_port(server: &str) -> (&str, &str) {
    if server.len() >= 5 && server[..5].eq_ignore_ascii_case("unix:") {
        return (&server[5..], "");
    }
    let digits = server.len() - server.bytes().rev().take_while(u8::is_ascii_digit).count();
    match server[..digits].strip_suffix(':') {
        Some(host) => (host, &server[digits..]),
        None => (server, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_nginx() {
        assert_eq!(split_host_port("127.0.0.1:8080"), ("127.0.0.1", "8080"));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", "80"));
        assert_eq!(split_host_port("example.com"), ("example.com", ""));
        assert_eq!(split_host_port("unix:/tmp/s.sock"), ("/tmp/s.sock", ""));
        assert_eq!(split_host_port("host:abc"), ("host:abc", ""));
    }

    #[test]
    fn points_follow_weight() {
        let ring = Ring::new(&[("10.0.0.1:80", 1), ("10.0.0.2:80", 2)]);
        assert!(ring.len() <= 480 && ring.len() > 470);
    }

    #[test]
    fn first_point_is_crc_of_host_nul_port_and_zero() {
        let ring = Ring::new(&[("10.0.0.1:80", 1)]);
        let expected = crc32fast::hash(b"10.0.0.1\x0080\x00\x00\x00\x00");
        assert!(ring.points.iter().any(|&(h, _)| h == expected));
    }

    #[test]
    fn walk_visits_every_server_once() {
        let servers: Vec<(String, u32)> = (0..5).map(|i| (format!("10.0.0.{i}:80"), 1)).collect();
        let ring = Ring::new(&servers);
        let mut order: Vec<usize> = ring.walk(b"/some/key").collect();
        assert_eq!(order.len(), 5);
        order.sort();
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn adding_a_fifth_server_moves_about_a_fifth_of_keys() {
        let four: Vec<(String, u32)> = (0..4).map(|i| (format!("10.0.0.{i}:80"), 1)).collect();
        let mut five = four.clone();
        five.push(("10.0.0.9:80".into(), 1));
        let (a, b) = (Ring::new(&four), Ring::new(&five));
        let moved = (0..10_000)
            .filter(|i| {
                let key = format!("/item/{i}");
                a.first(key.as_bytes()) != b.first(key.as_bytes())
            })
            .count();
        assert!(
            (1500..=2500).contains(&moved),
            "{moved} of 10000 keys moved"
        );
    }
}
