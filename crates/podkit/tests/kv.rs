//! `podkit ambassador shard` against nutcracker (Debian's twemproxy 0.5) over the same real
//! redis-servers and memcacheds: the same key on the same server under every hash and
//! distribution, with weights, names and hash tags, and after an ejection; the same replies
//! to a corpus of commands.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::*;
use podkit_testkit::podkit::Podkit;
use podkit_testkit::servers::{Memcached, Nutcracker, Redis};

/// Sends every command at once and reads as many replies (each a RESP frame).
fn pipeline(addr: SocketAddr, commands: &[Vec<&[u8]>]) -> Vec<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut out = Vec::new();
    for command in commands {
        out.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
        for arg in command {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
    }
    stream.write_all(&out).unwrap();
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let mut chunk = [0u8; 65536];
    while replies.len() < commands.len() {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed after {} replies", replies.len());
        buf.extend_from_slice(&chunk[..n]);
        while let Some(len) = frame_len(&buf, 0) {
            replies.push(buf.drain(..len).collect());
        }
    }
    replies
}

/// Length of the RESP frame at `at`, if complete.
fn frame_len(buf: &[u8], at: usize) -> Option<usize> {
    let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let text = std::str::from_utf8(&buf[at + 1..line_end]).ok()?;
    match buf[at] {
        b'+' | b'-' | b':' => Some(line_end + 2 - at),
        b'$' => {
            let n: i64 = text.parse().ok()?;
            if n < 0 {
                return Some(line_end + 2 - at);
            }
            let end = line_end + 2 + n as usize + 2;
            (buf.len() >= end).then_some(end - at)
        }
        b'*' => {
            let n: i64 = text.parse().ok()?;
            let mut next = line_end + 2;
            for _ in 0..n.max(0) {
                next += frame_len(buf, next)?;
            }
            Some(next - at)
        }
        _ => None,
    }
}

fn keys_on(redis: &Redis) -> Vec<String> {
    let reply = pipeline(redis.addr, &[vec![b"KEYS", b"*"]]).remove(0);
    String::from_utf8_lossy(&reply)
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
        .map(str::to_string)
        .collect()
}

fn flush(redis: &[Redis]) {
    for r in redis {
        pipeline(r.addr, &[vec![b"FLUSHALL"]]);
    }
}

/// Which server index holds each key, after writing every key through `proxy`.
fn placement(proxy: SocketAddr, redis: &[Redis], keys: &[String]) -> HashMap<String, usize> {
    flush(redis);
    let commands: Vec<Vec<&[u8]>> = keys
        .iter()
        .map(|k| vec![&b"SET"[..], k.as_bytes(), b"v"])
        .collect();
    for reply in pipeline(proxy, &commands) {
        assert_eq!(reply, b"+OK\r\n", "{}", String::from_utf8_lossy(&reply));
    }
    let mut at = HashMap::new();
    for (i, r) in redis.iter().enumerate() {
        for key in keys_on(r) {
            at.insert(key, i);
        }
    }
    assert_eq!(at.len(), keys.len());
    at
}

fn redis_servers(n: usize) -> Vec<Redis> {
    (0..n)
        .map(|_| Redis::start().expect("redis-server"))
        .collect()
}

/// Starts nutcracker and podkit on the same config (with `LISTEN` replaced by their
/// addresses).
fn both(
    config: &str,
) -> (
    Nutcracker,
    SocketAddr,
    Podkit,
    SocketAddr,
    tempfile::TempDir,
) {
    let theirs = free_addr();
    let ours = free_addr();
    let nutcracker =
        Nutcracker::start(&config.replace("LISTEN", &theirs.to_string())).expect("nutcracker");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nutcracker.yaml");
    std::fs::write(&file, config.replace("LISTEN", &ours.to_string())).unwrap();
    let stats = free_addr().port().to_string();
    let podkit = Podkit::start(
        Path::new(PODKIT),
        &[
            "ambassador",
            "shard",
            "-c",
            file.to_str().unwrap(),
            "-s",
            &stats,
            "-a",
            "127.0.0.1",
        ],
    )
    .expect("podkit ambassador shard");
    assert!(eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(ours).is_ok()
    }));
    (nutcracker, theirs, podkit, ours, dir)
}

fn pool(hash: &str, distribution: &str, servers: &str, extra: &str) -> String {
    format!("alpha:\n  listen: LISTEN\n  hash: {hash}\n  distribution: {distribution}\n  redis: true\n{extra}  servers:\n{servers}")
}

fn server_lines(redis: &[Redis], weights: &[u32], names: bool) -> String {
    redis
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let name = if names {
                format!(" shard-{i}")
            } else {
                String::new()
            };
            format!("   - {}:{}{name}\n", r.addr, weights[i])
        })
        .collect()
}

#[test]
fn placement_matches_nutcracker_for_every_hash_and_distribution() {
    let redis = redis_servers(3);
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("key:{i}:{}", i * 7919 % 1013))
        .collect();
    let hashes = [
        "fnv1a_64",
        "fnv1_64",
        "fnv1a_32",
        "fnv1_32",
        "md5",
        "crc32",
        "crc32a",
        "crc16",
        "murmur",
        "jenkins",
        "one_at_a_time",
        "hsieh",
    ];
    for distribution in ["ketama", "modula"] {
        for hash in hashes {
            let config = pool(
                hash,
                distribution,
                &server_lines(&redis, &[1, 1, 1], false),
                "",
            );
            let (_n, theirs, _p, ours, _dir) = both(&config);
            let expected = placement(theirs, &redis, &keys);
            let actual = placement(ours, &redis, &keys);
            let differ = keys.iter().filter(|k| expected[*k] != actual[*k]).count();
            assert_eq!(
                differ, 0,
                "{hash}/{distribution}: {differ} of 10000 keys placed differently"
            );
        }
    }
}

#[test]
fn placement_matches_with_weights_names_and_hash_tags() {
    let redis = redis_servers(3);
    let keys: Vec<String> = (0..10_000)
        .map(|i| {
            if i % 3 == 0 {
                format!("user:{{{}}}:field{i}", i % 97)
            } else {
                format!("item-{i}")
            }
        })
        .collect();
    let cases = [
        ("weights", server_lines(&redis, &[1, 3, 2], false), ""),
        ("names", server_lines(&redis, &[1, 1, 1], true), ""),
        (
            "hash tags",
            server_lines(&redis, &[2, 1, 1], true),
            "  hash_tag: \"{}\"\n",
        ),
    ];
    for (case, servers, extra) in cases {
        for distribution in ["ketama", "modula"] {
            let (_n, theirs, _p, ours, _dir) =
                both(&pool("fnv1a_64", distribution, &servers, extra));
            let expected = placement(theirs, &redis, &keys);
            let actual = placement(ours, &redis, &keys);
            let differ = keys.iter().filter(|k| expected[*k] != actual[*k]).count();
            assert_eq!(
                differ, 0,
                "{case}/{distribution}: {differ} of 10000 keys placed differently"
            );
            if !extra.is_empty() {
                let tagged: std::collections::HashSet<usize> = keys
                    .iter()
                    .filter(|k| k.starts_with("user:{5}:"))
                    .map(|k| actual[k])
                    .collect();
                assert_eq!(tagged.len(), 1, "keys sharing a hash tag share a server");
            }
        }
    }
}

#[test]
fn placement_matches_after_an_ejection_and_the_return() {
    let mut redis = redis_servers(3);
    let extra = "  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 3000\n  timeout: 500\n";
    let (_n, theirs, _p, ours, _dir) = both(&pool(
        "fnv1a_64",
        "ketama",
        &server_lines(&redis, &[1, 1, 1], false),
        extra,
    ));
    let keys: Vec<String> = (0..2000).map(|i| format!("k{i}")).collect();
    let before = placement(ours, &redis, &keys);
    redis[1].process().stop();
    // A request to the stopped server fails once on each proxy and ejects it.
    let on_stopped = keys.iter().find(|k| before[*k] == 1).unwrap().clone();
    for proxy in [theirs, ours] {
        let reply = pipeline(proxy, &[vec![&b"GET"[..], on_stopped.as_bytes()]]).remove(0);
        assert!(
            reply.starts_with(b"-"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }
    let live: Vec<Redis> = Vec::new();
    drop(live);
    let survivors = [&redis[0], &redis[2]];
    let place = |proxy: SocketAddr| {
        for r in survivors {
            pipeline(r.addr, &[vec![b"FLUSHALL"]]);
        }
        let commands: Vec<Vec<&[u8]>> = keys
            .iter()
            .map(|k| vec![&b"SET"[..], k.as_bytes(), b"v"])
            .collect();
        for reply in pipeline(proxy, &commands) {
            assert_eq!(reply, b"+OK\r\n", "{}", String::from_utf8_lossy(&reply));
        }
        let mut at = HashMap::new();
        for (i, r) in survivors.iter().enumerate() {
            for key in keys_on(r) {
                at.insert(key, i);
            }
        }
        at
    };
    let (expected, actual) = (place(theirs), place(ours));
    assert_eq!(expected.len(), keys.len());
    assert!(
        keys.iter().all(|k| expected[k] == actual[k]),
        "placement after the ejection differs"
    );
    // Keys of the surviving servers did not move.
    assert!(keys
        .iter()
        .filter(|k| before[*k] != 1)
        .all(|k| [0, 2][actual[k]] == before[k]));
    redis[1].restart().unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        placement(ours, &redis, &keys),
        before,
        "the server's keys come back after the retry timeout"
    );
}

/// A corpus of commands that every supported family is in, run on empty servers.
fn corpus() -> Vec<Vec<&'static [u8]>> {
    let c = |words: &[&'static str]| words.iter().map(|w| w.as_bytes()).collect::<Vec<_>>();
    vec![
        c(&["SET", "s1", "hello"]),
        c(&["GET", "s1"]),
        c(&["GET", "missing"]),
        c(&["APPEND", "s1", " world"]),
        c(&["STRLEN", "s1"]),
        c(&["GETRANGE", "s1", "0", "4"]),
        c(&["SETEX", "s2", "100", "v"]),
        c(&["TTL", "s2"]),
        c(&["PERSIST", "s2"]),
        c(&["INCR", "n"]),
        c(&["INCRBY", "n", "41"]),
        c(&["DECR", "n"]),
        c(&["INCRBYFLOAT", "f", "1.5"]),
        c(&["SETNX", "s1", "x"]),
        c(&["GETSET", "s1", "new"]),
        c(&["MSET", "m1", "a", "m2", "b", "m3", "c", "m4", "d"]),
        c(&["MGET", "m4", "missing", "m1", "m3", "m2"]),
        c(&["EXISTS", "m1", "m2", "nope", "m3"]),
        c(&["TOUCH", "m1", "m2"]),
        c(&["DEL", "m1", "m2", "nope"]),
        c(&["UNLINK", "m3"]),
        c(&["TYPE", "m4"]),
        c(&["EXPIRE", "m4", "100"]),
        c(&["HSET", "h", "f1", "v1", "f2", "v2"]),
        c(&["HGET", "h", "f1"]),
        c(&["HMGET", "h", "f1", "f2", "f3"]),
        c(&["HGETALL", "h"]),
        c(&["HINCRBY", "h", "n", "5"]),
        c(&["HLEN", "h"]),
        c(&["HDEL", "h", "f2"]),
        c(&["LPUSH", "l", "a", "b", "c"]),
        c(&["RPUSH", "l", "z"]),
        c(&["LRANGE", "l", "0", "-1"]),
        c(&["LPOP", "l"]),
        c(&["LLEN", "l"]),
        c(&["LINDEX", "l", "1"]),
        c(&["SADD", "set", "x", "y", "z"]),
        c(&["SCARD", "set"]),
        c(&["SISMEMBER", "set", "y"]),
        c(&["SREM", "set", "x"]),
        c(&["ZADD", "z", "1", "one", "2", "two", "3", "three"]),
        c(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
        c(&["ZSCORE", "z", "two"]),
        c(&["ZRANK", "z", "three"]),
        c(&["ZINCRBY", "z", "5", "one"]),
        c(&["ZCOUNT", "z", "0", "10"]),
        c(&["PFADD", "hll", "a", "b", "c"]),
        c(&["PFCOUNT", "hll"]),
        c(&["SETBIT", "bits", "7", "1"]),
        c(&["BITCOUNT", "bits"]),
        c(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "s1"]),
        c(&["PING"]),
        c(&["GET"]),
    ]
}

#[test]
fn replies_match_nutcracker_for_a_corpus_of_commands() {
    let redis = redis_servers(3);
    let (_n, theirs, _p, ours, _dir) = both(&pool(
        "fnv1a_64",
        "ketama",
        &server_lines(&redis, &[1, 1, 1], false),
        "",
    ));
    let commands = corpus();
    // The last command is malformed: nutcracker closes the connection on it; compare the rest.
    let valid = &commands[..commands.len() - 1];
    flush(&redis);
    let expected = pipeline(theirs, valid);
    flush(&redis);
    let actual = pipeline(ours, valid);
    for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
        let command: Vec<String> = valid[i]
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert_eq!(
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(e),
            "{}",
            command.join(" ")
        );
    }
}

#[test]
fn unshardable_commands_are_refused_and_the_connection_goes_on() {
    let redis = redis_servers(2);
    let (_n, _theirs, _p, ours, _dir) = both(&pool(
        "fnv1a_64",
        "ketama",
        &server_lines(&redis, &[1, 1], false),
        "",
    ));
    let replies = pipeline(
        ours,
        &[
            vec![b"KEYS", b"*"],
            vec![b"MULTI"],
            vec![b"SET", b"k", b"v"],
            vec![b"GET", b"k"],
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&replies[0]),
        "-ERR unsupported command 'keys' (it cannot be sharded)\r\n"
    );
    assert!(String::from_utf8_lossy(&replies[1]).contains("'multi'"));
    assert_eq!(replies[2], b"+OK\r\n");
    assert_eq!(replies[3], b"$1\r\nv\r\n");
    // Garbage gets an error, and that connection only is closed.
    let mut garbage = TcpStream::connect(ours).unwrap();
    garbage.write_all(b"*2\r\n$x\r\n").unwrap();
    let mut reply = String::new();
    garbage.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("-ERR Protocol error"), "{reply}");
    assert_eq!(pipeline(ours, &[vec![b"GET", b"k"]])[0], b"$1\r\nv\r\n");
}

/// Sends memcache text and reads until `expect` replies have ended (a line, or END).
fn memcache(addr: SocketAddr, text: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn memcache_placement_and_replies_match_nutcracker() {
    let servers: Vec<Memcached> = (0..3)
        .map(|_| Memcached::start().expect("memcached"))
        .collect();
    let lines: String = servers
        .iter()
        .map(|m| format!("   - {}:1\n", m.addr))
        .collect();
    let config = format!(
        "beta:\n  listen: LISTEN\n  hash: fnv1a_64\n  distribution: ketama\n  servers:\n{lines}"
    );
    let (_n, theirs, _p, ours, _dir) = both(&config);
    let keys: Vec<String> = (0..1000).map(|i| format!("mc:{i}")).collect();
    let where_is = |proxy: SocketAddr| -> Vec<usize> {
        let flush: String = "flush_all\r\n".into();
        for m in &servers {
            memcache(m.addr, &flush);
        }
        let sets: String = keys
            .iter()
            .map(|k| format!("set {k} 0 0 1 noreply\r\nv\r\n"))
            .collect();
        memcache(proxy, &sets);
        let gets: Vec<String> = servers
            .iter()
            .map(|m| memcache(m.addr, &format!("get {}\r\n", keys.join(" "))))
            .collect();
        keys.iter()
            .map(|k| {
                gets.iter()
                    .position(|g| g.contains(&format!("VALUE {k} ")))
                    .expect("stored somewhere")
            })
            .collect()
    };
    assert_eq!(where_is(theirs), where_is(ours));
    let corpus = "set a 1 0 3\r\nabc\r\nadd a 0 0 1\r\nx\r\nreplace a 2 0 3\r\nxyz\r\nappend a 0 0 1\r\n!\r\nprepend a 0 0 1\r\n^\r\nget a\r\nincr n 1\r\nset n 0 0 1\r\n5\r\nincr n 10\r\ndecr n 3\r\ntouch a 100\r\ndelete a\r\ndelete a\r\nset b 0 0 2\r\nhi\r\nset c 0 0 2\r\nyo\r\nget b nope c a\r\n";
    for m in &servers {
        memcache(m.addr, "flush_all\r\n");
    }
    let expected = memcache(theirs, corpus);
    for m in &servers {
        memcache(m.addr, "flush_all\r\n");
    }
    let actual = memcache(ours, corpus);
    assert_eq!(actual, expected);
    let gets = memcache(ours, "gets b c\r\n");
    assert!(
        gets.starts_with("VALUE b 0 2 ") && gets.ends_with("END\r\n"),
        "{gets}"
    );
}

#[test]
fn stats_port_serves_nutcracker_json() {
    let redis = redis_servers(2);
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let stats = free_addr();
    let file = dir.path().join("nutcracker.yaml");
    std::fs::write(
        &file,
        pool(
            "fnv1a_64",
            "ketama",
            &server_lines(&redis, &[1, 1], false),
            "",
        )
        .replace("LISTEN", &listen.to_string()),
    )
    .unwrap();
    let p = Podkit::start(
        Path::new(PODKIT),
        &[
            "ambassador",
            "shard",
            "-c",
            file.to_str().unwrap(),
            "-s",
            &stats.port().to_string(),
            "-a",
            "127.0.0.1",
        ],
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(10), || TcpStream::connect(
        listen
    )
    .is_ok()));
    pipeline(listen, &[vec![b"SET", b"x", b"1"], vec![b"GET", b"x"]]);
    let mut text = String::new();
    TcpStream::connect(stats)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["service"], "nutcracker");
    let server = format!("{}", redis[0].addr);
    let requests: u64 = ["alpha"]
        .iter()
        .flat_map(|pool| redis.iter().map(move |r| (pool, r.addr.to_string())))
        .map(|(pool, s)| json[pool][&s]["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, 2, "{json}");
    assert!(json["alpha"][&server]["server_eof"].is_u64());
    assert_promtool_clean(p.admin);
}

#[test]
fn a_bad_nutcracker_yaml_exits_2_naming_pool_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nutcracker.yaml");
    std::fs::write(
        &file,
        "alpha:\n  listen: 127.0.0.1:1\n  hash: sha1\n  servers:\n   - 127.0.0.1:2:1\n",
    )
    .unwrap();
    let out = std::process::Command::new(PODKIT)
        .args(["ambassador", "shard", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("alpha.hash") && stderr.contains("sha1"),
        "{stderr}"
    );
    std::fs::write(
        &file,
        "alpha:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:2:1\n",
    )
    .unwrap();
    let out = std::process::Command::new(PODKIT)
        .args(["ambassador", "shard", "-c", file.to_str().unwrap(), "-t"])
        .output()
        .unwrap();
    assert!(out.status.success());
}
