//! Bad and hostile traffic harms only its own connection: garbage, a 100 KiB header, a
//! slowloris client, an oversized body. Also HTTP/2 with prior knowledge and upgrades.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use podkit_testkit::backend::Backend;
use podkit_testkit::probe::http_request;

fn proxy(b: &Backend, extra: &[&str]) -> (podkit_testkit::podkit::Podkit, std::net::SocketAddr) {
    let url = b.url();
    let mut args = vec!["lb", "--backend", &url, "--ready-path", ""];
    args.extend_from_slice(extra);
    start(&args)
}

fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn garbage_gets_400_and_others_carry_on() {
    let b = Backend::start("b");
    let (_p, addr) = proxy(&b, &[]);
    let reply = raw(addr, b"\x16\x03\x01garbage that is not http\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
    assert_eq!(get(addr, "/").status, 200);
}

#[test]
fn a_100_kib_header_gets_431_and_others_carry_on() {
    let b = Backend::start("b");
    let (_p, addr) = proxy(&b, &[]);
    let big = "x".repeat(100 * 1024);
    let reply = raw(
        addr,
        format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert!(
        reply.starts_with("HTTP/1.1 431"),
        "{}",
        &reply[..reply.len().min(80)]
    );
    assert_eq!(b.requests(), 0);
    assert_eq!(get(addr, "/").status, 200);
}

#[test]
fn a_slowloris_client_is_cut_off_and_others_carry_on() {
    let b = Backend::start("b");
    let (_p, addr) = proxy(&b, &["--header-timeout", "1s"]);
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    let started = Instant::now();
    // Others are served while the slow client dribbles.
    let dribble = std::thread::spawn(move || {
        for _ in 0..40 {
            if slow.write_all(b"X-A: b\r\n").is_err() {
                return (true, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        slow.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 64];
        let closed =
            matches!(slow.read(&mut buf), Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408");
        (closed, started.elapsed())
    });
    for _ in 0..10 {
        assert_eq!(get(addr, "/").status, 200);
    }
    let (closed, after) = dribble.join().unwrap();
    assert!(closed, "the slow connection was closed");
    assert!(
        after < Duration::from_secs(4),
        "closed only after {after:?}"
    );
}

#[test]
fn an_oversized_body_gets_413() {
    let b = Backend::start("b");
    let (_p, addr) = proxy(&b, &["--max-body-size", "1KiB"]);
    let resp = http_request(addr, "POST", "/echo", &[], &[b'x'; 4096]).unwrap();
    assert_eq!(resp.status, 413);
    // Chunked, no length given.
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         800\r\n{}\r\n0\r\n\r\n",
        "x".repeat(0x800)
    );
    let reply = raw(addr, chunked.as_bytes());
    assert!(
        reply.starts_with("HTTP/1.1 413"),
        "{}",
        &reply[..reply.len().min(80)]
    );
    assert_eq!(get(addr, "/").status, 200);
}

#[test]
fn h2c_prior_knowledge_is_served() {
    let b = Backend::start("b");
    let (_p, addr) = proxy(&b, &[]);
    let out = Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "-w", " %{http_version}"])
        .arg(format!("http://{addr}/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b 2");
}

#[test]
fn upgrades_pass_through() {
    let b = Backend::start("b");
    let (_p, addr) = proxy(&b, &[]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );
    s.write_all(b"ping over the upgraded connection").unwrap();
    let mut echoed = [0u8; 33];
    s.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping over the upgraded connection");
}
