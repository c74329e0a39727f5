//! Properties the codecs keep on any input, checked by the property tests
//! (`tests/codec_properties.rs`) and by the fuzz targets (`fuzz/`): no input panics, a
//! frame found is no longer than the input, and bytes fed in pieces parse exactly as the
//! same bytes fed whole.
//!
//! Each function panics, with what went wrong, when a property fails.

use bytes::BytesMut;

use crate::{memcache, resp};

/// Splits `input` into pieces at the cut points drawn from `cuts` (one byte each, as a
/// fuzzer supplies them), so that the same input is tried in many partitions.
fn pieces<'a>(input: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = input;
    for &cut in cuts {
        if rest.is_empty() {
            break;
        }
        let at = usize::from(cut) % (rest.len() + 1);
        out.push(&rest[..at]);
        rest = &rest[at..];
    }
    out.push(rest);
    out
}

/// Takes every frame or request that `take` finds in `input`, fed whole, and stops at the
/// first error: what was taken and whether it ended in an error.
fn drain<T>(
    input: &[u8],
    cuts: &[u8],
    mut take: impl FnMut(&mut BytesMut) -> Result<Option<T>, String>,
) -> (Vec<T>, Option<String>) {
    let mut buf = BytesMut::new();
    let mut taken = Vec::new();
    for piece in pieces(input, cuts) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match take(&mut buf) {
                Ok(Some(item)) => {
                    assert!(
                        buf.len() < before,
                        "a frame was taken without consuming input"
                    );
                    taken.push(item);
                }
                Ok(None) => break,
                Err(err) => return (taken, Some(err)),
            }
        }
    }
    (taken, None)
}

/// RESP: `check` never claims more bytes than it was given, agrees with `parse` on the
/// frame it finds, and frames taken from `input` fed in pieces (cut by `cuts`) are those
/// taken from `input` fed whole, ending in the same error if any.
pub fn resp(input: &[u8], cuts: &[u8]) {
    if let Ok(len) = resp::check(input) {
        assert!(len > 0 && len <= input.len(), "check claimed {len} bytes");
        let frame = resp::parse(&bytes::Bytes::copy_from_slice(&input[..len]));
        assert!(
            frame.is_ok(),
            "check found a frame that parse refuses: {frame:?}"
        );
    }
    let take = |buf: &mut BytesMut| match resp::take(buf) {
        Ok(found) => Ok(found),
        Err(err) => Err(err.to_string()),
    };
    let whole = drain(input, &[], take);
    let split = drain(input, cuts, take);
    assert_eq!(
        split, whole,
        "fed in pieces, the frames differ from fed whole"
    );
    for (frame, raw) in &whole.0 {
        assert_eq!(
            frame.to_bytes() == raw,
            canonical(raw),
            "a canonical frame re-encodes to its own bytes"
        );
    }
}

/// Whether `raw` is written as podkit writes frames (no leading zeros, no `+` signs,
/// no `-0`), so that re-encoding it must give the same bytes.
fn canonical(raw: &[u8]) -> bool {
    let mut at = 0;
    while let Some(end) = raw[at..].windows(2).position(|w| w == b"\r\n") {
        let line = &raw[at..at + end];
        if matches!(line.first(), Some(b'$' | b'*' | b':')) {
            let digits = &line[1..];
            let unsigned = digits.strip_prefix(b"-").unwrap_or(digits);
            let canonical_number = !unsigned.is_empty()
                && unsigned.iter().all(u8::is_ascii_digit)
                && (unsigned == b"0" || unsigned[0] != b'0')
                && digits != b"-0";
            if !canonical_number {
                return false;
            }
            if line[0] == b'$' {
                if let Ok(len) = std::str::from_utf8(digits).unwrap_or("x").parse::<usize>() {
                    at += end + 2 + len + 2;
                    continue;
                }
            }
        }
        at += end + 2;
        if at >= raw.len() {
            break;
        }
    }
    true
}

/// memcache: requests taken from `input` fed in pieces are those taken from it fed whole;
/// a reply's length is never more than it was given.
pub fn memcache(input: &[u8], cuts: &[u8]) {
    let take = |buf: &mut BytesMut| memcache::take_request(buf).map_err(|e| e.to_string());
    let whole = drain(input, &[], take);
    let split = drain(input, cuts, take);
    assert_eq!(
        split, whole,
        "fed in pieces, the requests differ from fed whole"
    );
    for get in [false, true] {
        if let Ok(Some(len)) = memcache::reply_len(input, get) {
            assert!(len <= input.len(), "reply_len claimed {len} bytes");
        }
    }
}
