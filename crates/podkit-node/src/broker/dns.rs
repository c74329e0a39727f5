//! Just enough DNS for service brokering: SRV and A queries (RFC 1035, RFC 2782) over UDP,
//! retried over TCP when the answer is truncated. Packet building and parsing are pure;
//! [`lookup`] does the I/O.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Record types asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    A = 1,
    Srv = 33,
}

/// An answer record that podkit uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    A {
        name: String,
        addr: Ipv4Addr,
        ttl: u32,
    },
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
        ttl: u32,
    },
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    #[error("malformed DNS message")]
    Malformed,
    #[error("the server answered {0} ({1})")]
    Rcode(u8, &'static str),
    #[error("{0}")]
    Io(String),
}

/// A query for `name` of `kind`, with `id`.
pub fn query(id: u16, name: &str, kind: Kind) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00]); // recursion desired
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let label = &label.as_bytes()[..label.len().min(63)];
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out.extend_from_slice(&(kind as u16).to_be_bytes());
    out.extend_from_slice(&[0, 1]); // class IN
    out
}

/// Whether the response's truncation bit is set.
pub fn truncated(message: &[u8]) -> bool {
    message.get(2).is_some_and(|b| b & 0x02 != 0)
}

/// The answers (and additional records) of a response to query `id`.
pub fn parse(message: &[u8], id: u16) -> Result<Vec<Answer>, DnsError> {
    let header = message.get(..12).ok_or(DnsError::Malformed)?;
    if u16::from_be_bytes([header[0], header[1]]) != id || header[2] & 0x80 == 0 {
        return Err(DnsError::Malformed);
    }
    let rcode = header[3] & 0x0f;
    match rcode {
        0 => {}
        3 => return Err(DnsError::Rcode(3, "no such name")),
        2 => return Err(DnsError::Rcode(2, "server failure")),
        5 => return Err(DnsError::Rcode(5, "refused")),
        n => return Err(DnsError::Rcode(n, "error")),
    }
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]) as usize;
    let (questions, answers, authority, additional) = (count(4), count(6), count(8), count(10));
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(message, at)? + 4;
    }
    let mut out = Vec::new();
    for index in 0..answers + authority + additional {
        let (name, next) = read_name(message, at)?;
        let fixed = message.get(next..next + 10).ok_or(DnsError::Malformed)?;
        let kind = u16::from_be_bytes([fixed[0], fixed[1]]);
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let len = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let data_at = next + 10;
        let data = message
            .get(data_at..data_at + len)
            .ok_or(DnsError::Malformed)?;
        let in_authority = index >= answers && index < answers + authority;
        match kind {
            1 if len == 4 && !in_authority => out.push(Answer::A {
                name,
                addr: Ipv4Addr::new(data[0], data[1], data[2], data[3]),
                ttl,
            }),
            33 if len >= 7 && !in_authority => {
                let (target, _) = read_name(message, data_at + 6)?;
                out.push(Answer::Srv {
                    priority: u16::from_be_bytes([data[0], data[1]]),
                    weight: u16::from_be_bytes([data[2], data[3]]),
                    port: u16::from_be_bytes([data[4], data[5]]),
                    target,
                    ttl,
                });
            }
            _ => {}
        }
        at = data_at + len;
    }
    Ok(out)
}

fn skip_name(message: &[u8], at: usize) -> Result<usize, DnsError> {
    read_name(message, at).map(|(_, next)| next)
}

/// A (possibly compressed) name at `at`, and the offset after it.
fn read_name(message: &[u8], mut at: usize) -> Result<(String, usize), DnsError> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *message.get(at).ok_or(DnsError::Malformed)? as usize;
        match len {
            0 => {
                return Ok((labels.join("."), end.unwrap_or(at + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let low = *message.get(at + 1).ok_or(DnsError::Malformed)? as usize;
                end.get_or_insert(at + 2);
                at = ((l & 0x3f) << 8) | low;
            }
            l if l <= 63 => {
                let label = message.get(at + 1..at + 1 + l).ok_or(DnsError::Malformed)?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                at += 1 + l;
            }
            _ => return Err(DnsError::Malformed),
        }
    }
    Err(DnsError::Malformed)
}

/// The first `nameserver` of `/etc/resolv.conf`, on port 53.
pub fn system_server() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse::<std::net::IpAddr>().ok())
            .flatten()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// Asks `server` for `name`, over UDP, then TCP if the answer was truncated.
pub async fn lookup(
    server: SocketAddr,
    name: &str,
    kind: Kind,
    timeout: Duration,
) -> Result<Vec<Answer>, DnsError> {
    let id = fastrand::u16(..);
    let request = query(id, name, kind);
    let io = |e: std::io::Error| DnsError::Io(format!("DNS server {server}: {e}"));
    let udp = async {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().unwrap_or(server)
        } else {
            "[::]:0".parse().unwrap_or(server)
        };
        let socket = tokio::net::UdpSocket::bind(bind).await.map_err(io)?;
        socket.connect(server).await.map_err(io)?;
        socket.send(&request).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await.map_err(io)?;
            // Anything not answering our id is ignored.
            if n >= 2 && buf[..2] == id.to_be_bytes() {
                buf.truncate(n);
                return Ok::<_, DnsError>(buf);
            }
        }
    };
    let message = tokio::time::timeout(timeout, udp).await.map_err(|_| {
        DnsError::Io(format!("DNS server {server}: no answer within {timeout:?}"))
    })??;
    if !truncated(&message) {
        return parse(&message, id);
    }
    let tcp = async {
        let mut stream = tokio::net::TcpStream::connect(server).await.map_err(io)?;
        let mut framed = (request.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&request);
        stream.write_all(&framed).await.map_err(io)?;
        let len = stream.read_u16().await.map_err(io)? as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.map_err(io)?;
        Ok::<_, DnsError>(buf)
    };
    let message = tokio::time::timeout(timeout, tcp).await.map_err(|_| {
        DnsError::Io(format!("DNS server {server}: no answer within {timeout:?}"))
    })??;
    parse(&message, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `query(7, "_db._tcp.test", Srv)` with one SRV answer whose target
    /// is compressed, and an A record in the additional section.
    fn srv_response() -> Vec<u8> {
        let mut m = query(7, "_db._tcp.test", Kind::Srv);
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 1; // one answer
        m[11] = 1; // one additional
                   // Answer: name pointer to the question (offset 12), SRV, IN, ttl 60.
        m.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60]);
        let target = [3, b'd', b'b', b'1', 0xc0, 21]; // "db1" + pointer to "test"
        m.extend_from_slice(&((6 + target.len()) as u16).to_be_bytes());
        m.extend_from_slice(&[0, 10, 0, 5, 0x0c, 0xea]); // priority 10, weight 5, port 3306
        m.extend_from_slice(&target);
        // Additional: db1.test A 10.0.0.1, ttl 30.
        let name_at = m.len() - target.len();
        m.extend_from_slice(&[
            0xc0,
            name_at as u8,
            0,
            1,
            0,
            1,
            0,
            0,
            0,
            30,
            0,
            4,
            10,
            0,
            0,
            1,
        ]);
        m
    }

    #[test]
    fn queries_encode_the_name_in_labels() {
        let q = query(0x1234, "_mysql._tcp.example.com.", Kind::Srv);
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(&q[12..19], b"\x06_mysql");
        assert_eq!(&q[q.len() - 4..], &[0, 33, 0, 1]);
    }

    #[test]
    fn srv_answers_with_compressed_names() {
        let answers = parse(&srv_response(), 7).unwrap();
        assert_eq!(
            answers,
            [
                Answer::Srv {
                    priority: 10,
                    weight: 5,
                    port: 3306,
                    target: "db1.test".into(),
                    ttl: 60
                },
                Answer::A {
                    name: "db1.test".into(),
                    addr: Ipv4Addr::new(10, 0, 0, 1),
                    ttl: 30
                }
            ]
        );
    }

    #[test]
    fn errors_and_garbage() {
        let mut m = srv_response();
        m[3] = 0x83;
        assert_eq!(parse(&m, 7), Err(DnsError::Rcode(3, "no such name")));
        assert_eq!(parse(&srv_response(), 8), Err(DnsError::Malformed));
        let whole = srv_response();
        for cut in 0..whole.len() {
            let _ = parse(&whole[..cut], 7);
        }
        // A pointer loop ends in an error, not a hang.
        let mut looped = query(7, "x", Kind::A);
        looped[2] = 0x81;
        looped[7] = 1;
        looped.extend_from_slice(&[0xc0, looped.len() as u8]);
        assert!(parse(&looped, 7).is_err());
    }
}
