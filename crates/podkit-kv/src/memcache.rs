//! The memcache text protocol as a pure codec: client requests (with their data blocks)
//! and the length of a server's reply to each kind of request.

use bytes::{Bytes, BytesMut};

/// Longest command line accepted.
pub const MAX_LINE: usize = 64 << 10;
/// Longest key (memcached's own limit).
pub const MAX_KEY: usize = 250;
/// Largest data block.
pub const MAX_DATA: usize = 128 << 20;

/// A client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `get` / `gets` with one or more keys.
    Get {
        gets: bool,
        keys: Vec<Bytes>,
    },
    /// A command on one key (`set`, `add`, `replace`, `append`, `prepend`, `cas`, `delete`,
    /// `incr`, `decr`, `touch`), forwarded as it came (`raw`, data block included).
    Keyed {
        key: Bytes,
        noreply: bool,
        raw: Bytes,
    },
    Version,
    Quit,
}

/// Why a request is refused; the text is the reply line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("incomplete request")]
    Incomplete,
    /// Unknown command: `ERROR`.
    #[error("ERROR")]
    Unknown,
    /// A malformed request: `CLIENT_ERROR <message>`; the connection is closed after it,
    /// since the rest of the stream cannot be trusted.
    #[error("CLIENT_ERROR {0}")]
    Client(String),
}

fn line(buf: &[u8]) -> Result<(&[u8], usize), Error> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end <= MAX_LINE => Ok((&buf[..end], end + 2)),
        Some(_) => Err(Error::Client("line too long".into())),
        None if buf.len() > MAX_LINE => Err(Error::Client("line too long".into())),
        None => Err(Error::Incomplete),
    }
}

fn key(word: &[u8]) -> Result<(), Error> {
    if word.is_empty() || word.len() > MAX_KEY {
        return Err(Error::Client("bad key (1 to 250 bytes)".into()));
    }
    Ok(())
}

fn num<T: std::str::FromStr>(word: &[u8]) -> Result<T, Error> {
    std::str::from_utf8(word)
        .ok()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| Error::Client("bad command line format".into()))
}

/// Takes the next complete request off the front of `buf`. An unknown command's line is
/// consumed (the connection goes on); a malformed one is not (the caller closes).
pub fn take_request(buf: &mut BytesMut) -> Result<Option<Request>, Error> {
    match classify(buf) {
        Ok(None) => Ok(None),
        Ok(Some((request, len))) => {
            let raw = buf.split_to(len).freeze();
            Ok(Some(match request {
                Request::Keyed { key, noreply, .. } => Request::Keyed { key, noreply, raw },
                other => other,
            }))
        }
        Err((Error::Unknown, consumed)) => {
            let _ = buf.split_to(consumed.min(buf.len()));
            Err(Error::Unknown)
        }
        Err((err, _)) => Err(err),
    }
}

/// The request at the front of `buf` and its length, without taking it.
fn classify(buf: &[u8]) -> Result<Option<(Request, usize)>, (Error, usize)> {
    let (text, after_line) = match line(buf) {
        Ok(found) => found,
        Err(Error::Incomplete) => return Ok(None),
        Err(err) => return Err((err, 0)),
    };
    let fail = |err: Error| (err, after_line);
    let words: Vec<&[u8]> = text
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .collect();
    let Some(&command) = words.first() else {
        return Err(fail(Error::Unknown));
    };
    let noreply = words.last() == Some(&&b"noreply"[..]);
    let keyed = |key: &[u8]| Request::Keyed {
        key: Bytes::copy_from_slice(key),
        noreply,
        raw: Bytes::new(),
    };
    match command {
        b"get" | b"gets" => {
            if words.len() < 2 {
                return Err(fail(Error::Unknown));
            }
            for k in &words[1..] {
                key(k).map_err(fail)?;
            }
            let keys = words[1..]
                .iter()
                .map(|k| Bytes::copy_from_slice(k))
                .collect();
            Ok(Some((
                Request::Get {
                    gets: command == b"gets",
                    keys,
                },
                after_line,
            )))
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
            let fields = if command == b"cas" { 6 } else { 5 };
            if words.len() != fields && !(words.len() == fields + 1 && noreply) {
                return Err(fail(Error::Client("bad command line format".into())));
            }
            key(words[1]).map_err(fail)?;
            num::<u32>(words[2]).map_err(fail)?;
            num::<i64>(words[3]).map_err(fail)?;
            let bytes: usize = num(words[4]).map_err(fail)?;
            if command == b"cas" {
                num::<u64>(words[5]).map_err(fail)?;
            }
            if bytes > MAX_DATA {
                return Err(fail(Error::Client("object too large".into())));
            }
            let end = after_line + bytes + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(fail(Error::Client("bad data chunk".into())));
            }
            Ok(Some((keyed(words[1]), end)))
        }
        b"delete" | b"incr" | b"decr" | b"touch" => {
            let valid = match command {
                b"delete" => (2..=4).contains(&words.len()),
                _ => words.len() == 3 || (words.len() == 4 && noreply),
            };
            if !valid {
                return Err(fail(Error::Client("bad command line format".into())));
            }
            key(words[1]).map_err(fail)?;
            if command == b"incr" || command == b"decr" {
                num::<u64>(words[2])
                    .map_err(|_| fail(Error::Client("invalid numeric delta argument".into())))?;
            }
            Ok(Some((keyed(words[1]), after_line)))
        }
        b"version" => Ok(Some((Request::Version, after_line))),
        b"quit" => Ok(Some((Request::Quit, after_line))),
        _ => Err(fail(Error::Unknown)),
    }
}

/// The length of a server's complete reply at the start of `buf`: to a `get`, every
/// `VALUE` block and the final `END` (or an error line); to anything else, one line.
pub fn reply_len(buf: &[u8], get: bool) -> Result<Option<usize>, Error> {
    let mut at = 0;
    loop {
        let (text, next) = match line(&buf[at..]) {
            Ok(found) => found,
            Err(Error::Incomplete) => return Ok(None),
            Err(err) => return Err(err),
        };
        if !get || !text.starts_with(b"VALUE ") {
            return Ok(Some(at + next));
        }
        let bytes: usize = text
            .split(|&b| b == b' ')
            .nth(3)
            .map(num)
            .transpose()?
            .ok_or_else(|| Error::Client("bad VALUE line".into()))?;
        let end = at + next + bytes + 2;
        if buf.len() < end {
            return Ok(None);
        }
        at = end;
    }
}

/// The `VALUE` blocks of a `get` reply, by key, without the final `END`.
pub fn values(reply: &Bytes) -> Vec<(Bytes, Bytes)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok((text, next)) = line(&reply[at..]) {
        if !text.starts_with(b"VALUE ") {
            break;
        }
        let key = Bytes::copy_from_slice(text.split(|&b| b == b' ').nth(1).unwrap_or_default());
        let bytes: usize = text
            .split(|&b| b == b' ')
            .nth(3)
            .and_then(|w| std::str::from_utf8(w).ok()?.parse().ok())
            .unwrap_or(0);
        let end = at + next + bytes + 2;
        if end > reply.len() {
            break;
        }
        out.push((key, reply.slice(at..end)));
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &[u8]) -> Result<Option<Request>, Error> {
        take_request(&mut BytesMut::from(text))
    }

    #[test]
    fn requests() {
        assert_eq!(
            one(b"get a bb\r\n"),
            Ok(Some(Request::Get {
                gets: false,
                keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bb")]
            }))
        );
        let Ok(Some(Request::Keyed { key, noreply, raw })) =
            one(b"set k 0 0 5 noreply\r\nhello\r\n")
        else {
            panic!()
        };
        assert_eq!((key.as_ref(), noreply, raw.len()), (&b"k"[..], true, 28));
        assert_eq!(one(b"set k 0 0 5\r\nhel"), Ok(None));
        assert!(matches!(
            one(b"incr n 5\r\n"),
            Ok(Some(Request::Keyed { .. }))
        ));
        assert_eq!(one(b"version\r\n"), Ok(Some(Request::Version)));
        assert_eq!(one(b"quit\r\n"), Ok(Some(Request::Quit)));
    }

    #[test]
    fn a_request_split_anywhere_waits() {
        let text = b"cas key 1 2 3 99\r\nabc\r\n";
        for cut in 0..text.len() {
            assert_eq!(one(&text[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn bad_requests() {
        let mut buf = BytesMut::from(&b"flush_all\r\nversion\r\n"[..]);
        assert_eq!(take_request(&mut buf), Err(Error::Unknown));
        assert_eq!(
            take_request(&mut buf),
            Ok(Some(Request::Version)),
            "the next request is read"
        );
        let mut blank = BytesMut::from(&b"\r\nquit\r\n"[..]);
        assert_eq!(take_request(&mut blank), Err(Error::Unknown));
        assert_eq!(take_request(&mut blank), Ok(Some(Request::Quit)));
        assert!(matches!(one(b"set k 0 0 x\r\n"), Err(Error::Client(_))));
        assert!(matches!(
            one(b"set k 0 0 3\r\nabcXY"),
            Err(Error::Client(_))
        ));
        let long_key = format!("get {}\r\n", "k".repeat(300));
        assert!(matches!(one(long_key.as_bytes()), Err(Error::Client(_))));
        assert!(matches!(one(b"incr n x\r\n"), Err(Error::Client(_))));
    }

    #[test]
    fn reply_lengths() {
        let get = b"VALUE a 0 2\r\nhi\r\nVALUE b 5 3\r\nyou\r\nEND\r\n";
        assert_eq!(reply_len(get, true), Ok(Some(get.len())));
        assert_eq!(reply_len(&get[..20], true), Ok(None));
        assert_eq!(reply_len(b"END\r\n", true), Ok(Some(5)));
        assert_eq!(reply_len(b"STORED\r\nEND", false), Ok(Some(8)));
        let blocks = values(&Bytes::from_static(get));
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].0.as_ref(), b"b");
        assert_eq!(blocks[1].1.as_ref(), b"VALUE b 5 3\r\nyou\r\n");
    }
}
