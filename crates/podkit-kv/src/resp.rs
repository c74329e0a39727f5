//! RESP2, the Redis protocol, as a pure codec over bytes.
//!
//! [`check`] finds where the next complete frame ends without building it (so a partial
//! frame costs a scan, not an allocation) and [`parse`] builds it from a `Bytes` without
//! copying bulk data. Lengths, element counts and nesting are capped; anything malformed is
//! an [`Error::Invalid`] for that connection only.

use bytes::{BufMut, Bytes, BytesMut};

/// Largest bulk string (Redis's own `proto-max-bulk-len`).
pub const MAX_BULK: usize = 512 << 20;
/// Most elements in one array.
pub const MAX_ELEMENTS: usize = 1 << 20;
/// Deepest nesting of arrays (replies such as SCAN's are two deep).
pub const MAX_DEPTH: usize = 8;
/// Longest simple line (status, error, integer, header).
pub const MAX_LINE: usize = 64 << 10;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Simple(Bytes),
    Error(Bytes),
    Integer(i64),
    Bulk(Bytes),
    /// `$-1`.
    Null,
    Array(Vec<Frame>),
    /// `*-1`.
    NullArray,
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// More bytes are needed.
    #[error("incomplete frame")]
    Incomplete,
    /// The bytes are not RESP2.
    #[error("Protocol error: {0}")]
    Invalid(String),
}

fn invalid<T>(message: impl Into<String>) -> Result<T, Error> {
    Err(Error::Invalid(message.into()))
}

/// The line starting at `at` (without CRLF) and the index after its CRLF.
fn line(buf: &[u8], at: usize) -> Result<(&[u8], usize), Error> {
    let rest = &buf[at..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end <= MAX_LINE => Ok((&rest[..end], at + end + 2)),
        Some(_) => invalid("line too long"),
        None if rest.len() > MAX_LINE => invalid("line too long"),
        None => Err(Error::Incomplete),
    }
}

fn number(text: &[u8]) -> Result<i64, Error> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "invalid number '{}'",
                String::from_utf8_lossy(text)
            ))
        })
}

/// The length of the complete frame at the start of `buf`.
pub fn check(buf: &[u8]) -> Result<usize, Error> {
    check_at(buf, 0, 0)
}

fn check_at(buf: &[u8], at: usize, depth: usize) -> Result<usize, Error> {
    let Some(&kind) = buf.get(at) else {
        return Err(Error::Incomplete);
    };
    match kind {
        b'+' | b'-' => Ok(line(buf, at + 1)?.1),
        b':' => {
            let (text, end) = line(buf, at + 1)?;
            number(text)?;
            Ok(end)
        }
        b'$' => {
            let (text, start) = line(buf, at + 1)?;
            let len = number(text)?;
            if len == -1 {
                return Ok(start);
            }
            if len < 0 || len as usize > MAX_BULK {
                return invalid("invalid bulk length");
            }
            let end = start + len as usize;
            if buf.len() < end + 2 {
                return Err(Error::Incomplete);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return invalid("bulk string not terminated by CRLF");
            }
            Ok(end + 2)
        }
        b'*' => {
            if depth >= MAX_DEPTH {
                return invalid("arrays nested too deep");
            }
            let (text, mut next) = line(buf, at + 1)?;
            let count = number(text)?;
            if count == -1 {
                return Ok(next);
            }
            if count < 0 || count as usize > MAX_ELEMENTS {
                return invalid("invalid multibulk length");
            }
            for _ in 0..count {
                next = check_at(buf, next, depth + 1)?;
            }
            Ok(next)
        }
        other => invalid(format!(
            "expected '$', '*', '+', '-' or ':', got '{}'",
            other as char
        )),
    }
}

/// Builds the frame that [`check`] found complete in `bytes`.
pub fn parse(bytes: &Bytes) -> Result<Frame, Error> {
    parse_at(bytes, 0).map(|(frame, _)| frame)
}

fn parse_at(bytes: &Bytes, at: usize) -> Result<(Frame, usize), Error> {
    let buf = bytes.as_ref();
    let Some(&kind) = buf.get(at) else {
        return Err(Error::Incomplete);
    };
    match kind {
        b'+' | b'-' => {
            let (text, end) = line(buf, at + 1)?;
            let value = bytes.slice(at + 1..at + 1 + text.len());
            Ok((
                if kind == b'+' {
                    Frame::Simple(value)
                } else {
                    Frame::Error(value)
                },
                end,
            ))
        }
        b':' => {
            let (text, end) = line(buf, at + 1)?;
            Ok((Frame::Integer(number(text)?), end))
        }
        b'$' => {
            let (text, start) = line(buf, at + 1)?;
            let len = number(text)?;
            if len == -1 {
                return Ok((Frame::Null, start));
            }
            let end = start + len as usize;
            if buf.len() < end + 2 {
                return Err(Error::Incomplete);
            }
            Ok((Frame::Bulk(bytes.slice(start..end)), end + 2))
        }
        b'*' => {
            let (text, mut next) = line(buf, at + 1)?;
            let count = number(text)?;
            if count == -1 {
                return Ok((Frame::NullArray, next));
            }
            let mut items = Vec::with_capacity((count as usize).min(1024));
            for _ in 0..count {
                let (item, after) = parse_at(bytes, next)?;
                items.push(item);
                next = after;
            }
            Ok((Frame::Array(items), next))
        }
        other => invalid(format!("unexpected '{}'", other as char)),
    }
}

/// Takes the next complete frame off the front of `buf`, if there is one.
pub fn take(buf: &mut BytesMut) -> Result<Option<(Frame, Bytes)>, Error> {
    match check(buf) {
        Ok(len) => {
            let raw = buf.split_to(len).freeze();
            Ok(Some((parse(&raw)?, raw)))
        }
        Err(Error::Incomplete) => Ok(None),
        Err(err) => Err(err),
    }
}

impl Frame {
    /// Appends the frame's wire form to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => {
                out.put_u8(b'+');
                out.put_slice(s);
                out.put_slice(b"\r\n");
            }
            Frame::Error(s) => {
                out.put_u8(b'-');
                out.put_slice(s);
                out.put_slice(b"\r\n");
            }
            Frame::Integer(n) => {
                out.put_slice(format!(":{n}\r\n").as_bytes());
            }
            Frame::Bulk(b) => {
                out.put_slice(format!("${}\r\n", b.len()).as_bytes());
                out.put_slice(b);
                out.put_slice(b"\r\n");
            }
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::Array(items) => {
                out.put_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// An error reply.
    pub fn error(message: impl AsRef<str>) -> Frame {
        Frame::Error(Bytes::copy_from_slice(message.as_ref().as_bytes()))
    }

    /// A command: an array of bulk strings.
    pub fn command<I: IntoIterator<Item = Bytes>>(parts: I) -> Frame {
        Frame::Array(parts.into_iter().map(Frame::Bulk).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8]) -> Result<Frame, Error> {
        let len = check(text)?;
        assert_eq!(len, text.len());
        parse(&Bytes::copy_from_slice(text))
    }

    #[test]
    fn every_kind() {
        assert_eq!(
            all(b"+OK\r\n"),
            Ok(Frame::Simple(Bytes::from_static(b"OK")))
        );
        assert_eq!(
            all(b"-ERR x\r\n"),
            Ok(Frame::Error(Bytes::from_static(b"ERR x")))
        );
        assert_eq!(all(b":-42\r\n"), Ok(Frame::Integer(-42)));
        assert_eq!(
            all(b"$3\r\nfoo\r\n"),
            Ok(Frame::Bulk(Bytes::from_static(b"foo")))
        );
        assert_eq!(all(b"$-1\r\n"), Ok(Frame::Null));
        assert_eq!(all(b"*-1\r\n"), Ok(Frame::NullArray));
        assert_eq!(
            all(b"*2\r\n$3\r\nGET\r\n*1\r\n:1\r\n"),
            Ok(Frame::Array(vec![
                Frame::Bulk(Bytes::from_static(b"GET")),
                Frame::Array(vec![Frame::Integer(1)])
            ]))
        );
    }

    #[test]
    fn round_trips() {
        for text in [
            &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"[..],
            b"*0\r\n",
            b"$-1\r\n",
            b":0\r\n",
        ] {
            assert_eq!(all(text).unwrap().to_bytes().as_ref(), text);
        }
    }

    #[test]
    fn a_frame_split_anywhere_parses_the_same() {
        let text = b"*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$5\r\nworld\r\n";
        for cut in 0..text.len() {
            assert_eq!(check(&text[..cut]), Err(Error::Incomplete), "cut at {cut}");
        }
        assert_eq!(check(text), Ok(text.len()));
    }

    #[test]
    fn malformed_input_is_invalid_not_a_panic() {
        for bad in [
            &b"?x\r\n"[..],
            b"$abc\r\n",
            b"$3\r\nfooXY",
            b"*-5\r\n",
            b"$-7\r\n",
            b":1.5\r\n",
        ] {
            assert!(
                matches!(check(bad), Err(Error::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut deep = Vec::new();
        for _ in 0..20 {
            deep.extend_from_slice(b"*1\r\n");
        }
        assert!(matches!(check(&deep), Err(Error::Invalid(_))));
        let long = vec![b'+'; MAX_LINE + 10];
        assert!(matches!(check(&long), Err(Error::Invalid(_))));
    }

    #[test]
    fn take_leaves_the_rest() {
        let mut buf = BytesMut::from(&b"+OK\r\n:1\r\n$2\r\nab"[..]);
        assert_eq!(
            take(&mut buf).unwrap().unwrap().0,
            Frame::Simple(Bytes::from_static(b"OK"))
        );
        assert_eq!(take(&mut buf).unwrap().unwrap().0, Frame::Integer(1));
        assert_eq!(take(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 6);
    }
}
