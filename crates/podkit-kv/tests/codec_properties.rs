//! Property tests of the RESP and memcache codecs: thousands of generated pipelines, valid
//! and corrupted, each fed whole and in random pieces (`podkit_kv::invariants`), plus the
//! exact frames and requests expected back from the valid ones. Seeds are fixed, so a
//! failure names the seed that reproduces it.

use bytes::{Bytes, BytesMut};
use fastrand::Rng;
use podkit_kv::invariants;
use podkit_kv::memcache::{self, Request};
use podkit_kv::resp::{self, Frame};

const CASES: u64 = 3_000;

fn word(rng: &mut Rng, max: usize) -> Bytes {
    let len = rng.usize(1..=max);
    (0..len)
        .map(|_| rng.u8(b'!'..=b'~'))
        .collect::<Vec<u8>>()
        .into()
}

fn any_bytes(rng: &mut Rng, max: usize) -> Bytes {
    let len = rng.usize(0..=max);
    (0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>().into()
}

fn frame(rng: &mut Rng, depth: usize) -> Frame {
    match rng.u8(0..if depth < 3 { 7 } else { 6 }) {
        0 => Frame::Simple(word(rng, 12)),
        1 => Frame::Error(word(rng, 12)),
        2 => Frame::Integer(rng.i64(..)),
        3 => Frame::Bulk(any_bytes(rng, 40)),
        4 => Frame::Null,
        5 => Frame::NullArray,
        _ => Frame::Array(
            (0..rng.usize(0..5))
                .map(|_| frame(rng, depth + 1))
                .collect(),
        ),
    }
}

/// Random cut points, as a fuzzer would give them.
fn cuts(rng: &mut Rng) -> Vec<u8> {
    (0..rng.usize(0..12)).map(|_| rng.u8(..)).collect()
}

fn corrupt(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.usize(1..4) {
        if bytes.is_empty() {
            return;
        }
        let at = rng.usize(..bytes.len());
        match rng.u8(0..3) {
            0 => bytes[at] = rng.u8(..),
            1 => {
                bytes.remove(at);
            }
            _ => bytes.insert(at, *b"\r\n$*:-+0123456789".get(rng.usize(..17)).unwrap()),
        }
    }
}

#[test]
fn resp_pipelines_parse_the_same_in_any_pieces() {
    for seed in 0..CASES {
        let mut rng = Rng::with_seed(seed);
        let frames: Vec<Frame> = (0..rng.usize(1..6)).map(|_| frame(&mut rng, 0)).collect();
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        let cuts = cuts(&mut rng);
        invariants::resp(&wire, &cuts);
        // And the frames come back exactly, one per encoding.
        let mut buf = BytesMut::from(&wire[..]);
        let mut back = Vec::new();
        while let Some((f, _raw)) =
            resp::take(&mut buf).unwrap_or_else(|e| panic!("seed {seed}: {e}"))
        {
            back.push(f);
        }
        assert_eq!(back, frames, "seed {seed}");
        assert!(buf.is_empty(), "seed {seed}");
    }
}

#[test]
fn corrupted_and_random_resp_never_panics_and_splits_consistently() {
    for seed in 0..CASES {
        let mut rng = Rng::with_seed(seed);
        let mut wire = BytesMut::new();
        frame(&mut rng, 0).encode(&mut wire);
        frame(&mut rng, 0).encode(&mut wire);
        let mut bytes = wire.to_vec();
        corrupt(&mut rng, &mut bytes);
        invariants::resp(&bytes, &cuts(&mut rng));
        invariants::resp(&any_bytes(&mut rng, 64), &cuts(&mut rng));
    }
}

/// A valid memcache request and what `take_request` must make of it.
fn request(rng: &mut Rng) -> (Vec<u8>, Request) {
    let key = word(rng, 20);
    let key_text = String::from_utf8(key.to_vec()).unwrap();
    let noreply = rng.bool();
    let suffix = if noreply { " noreply" } else { "" };
    let keyed = |raw: Vec<u8>| {
        let request = Request::Keyed {
            key: key.clone(),
            noreply,
            raw: Bytes::from(raw.clone()),
        };
        (raw, request)
    };
    match rng.u8(0..6) {
        0 => {
            let keys: Vec<Bytes> = (0..rng.usize(1..5)).map(|_| word(rng, 20)).collect();
            let gets = rng.bool();
            let mut line = if gets {
                b"gets".to_vec()
            } else {
                b"get".to_vec()
            };
            for k in &keys {
                line.push(b' ');
                line.extend_from_slice(k);
            }
            line.extend_from_slice(b"\r\n");
            (line, Request::Get { gets, keys })
        }
        1 => {
            let data = any_bytes(rng, 30);
            let command = ["set", "add", "replace", "append", "prepend"][rng.usize(..5)];
            let mut raw = format!(
                "{command} {key_text} {} {} {}{suffix}\r\n",
                rng.u32(..),
                rng.i64(-10..100_000),
                data.len()
            )
            .into_bytes();
            raw.extend_from_slice(&data);
            raw.extend_from_slice(b"\r\n");
            keyed(raw)
        }
        2 => {
            let data = any_bytes(rng, 30);
            let mut raw = format!(
                "cas {key_text} 0 0 {} {}{suffix}\r\n",
                data.len(),
                rng.u64(..)
            )
            .into_bytes();
            raw.extend_from_slice(&data);
            raw.extend_from_slice(b"\r\n");
            keyed(raw)
        }
        3 => keyed(format!("delete {key_text}{suffix}\r\n").into_bytes()),
        4 => {
            let command = ["incr", "decr"][rng.usize(..2)];
            keyed(format!("{command} {key_text} {}{suffix}\r\n", rng.u64(..)).into_bytes())
        }
        _ => keyed(format!("touch {key_text} {}{suffix}\r\n", rng.u32(..)).into_bytes()),
    }
}

#[test]
fn memcache_pipelines_parse_the_same_in_any_pieces() {
    for seed in 0..CASES {
        let mut rng = Rng::with_seed(seed);
        let (wire, expected): (Vec<Vec<u8>>, Vec<Request>) =
            (0..rng.usize(1..6)).map(|_| request(&mut rng)).unzip();
        let wire = wire.concat();
        invariants::memcache(&wire, &cuts(&mut rng));
        let mut buf = BytesMut::from(&wire[..]);
        let mut back = Vec::new();
        while let Some(r) =
            memcache::take_request(&mut buf).unwrap_or_else(|e| panic!("seed {seed}: {e}"))
        {
            back.push(r);
        }
        assert_eq!(back, expected, "seed {seed}");
    }
}

#[test]
fn corrupted_and_random_memcache_never_panics_and_splits_consistently() {
    for seed in 0..CASES {
        let mut rng = Rng::with_seed(seed);
        let mut bytes = [request(&mut rng).0, request(&mut rng).0].concat();
        corrupt(&mut rng, &mut bytes);
        invariants::memcache(&bytes, &cuts(&mut rng));
        invariants::memcache(&any_bytes(&mut rng, 64), &cuts(&mut rng));
    }
}

#[test]
fn memcache_get_replies_are_complete_only_at_their_end() {
    for seed in 0..CASES {
        let mut rng = Rng::with_seed(seed);
        let mut reply = Vec::new();
        for _ in 0..rng.usize(0..4) {
            let data = any_bytes(&mut rng, 30);
            reply.extend_from_slice(
                format!(
                    "VALUE {} {} {}\r\n",
                    String::from_utf8(word(&mut rng, 10).to_vec()).unwrap(),
                    rng.u32(..),
                    data.len()
                )
                .as_bytes(),
            );
            reply.extend_from_slice(&data);
            reply.extend_from_slice(b"\r\n");
        }
        reply.extend_from_slice(b"END\r\n");
        for cut in 0..reply.len() {
            assert_eq!(
                memcache::reply_len(&reply[..cut], true),
                Ok(None),
                "seed {seed}, cut {cut}"
            );
        }
        let mut more = reply.clone();
        more.extend_from_slice(b"STORED\r\n");
        assert_eq!(
            memcache::reply_len(&more, true),
            Ok(Some(reply.len())),
            "seed {seed}"
        );
    }
}
