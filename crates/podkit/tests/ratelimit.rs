//! Rate limiting in front of a service (chapter 5, "Expanding the Caching Layer"): 429
//! with `Retry-After` over the limit, `X-RateLimit-*` on every response, clients limited
//! apart, and a higher limit for identified callers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use podkit_testkit::backend::Backend;

fn limited_cache(
    origin: &Backend,
    extra: &[&str],
) -> (podkit_testkit::podkit::Podkit, std::net::SocketAddr) {
    let url = origin.url();
    let mut args = vec![
        "cache",
        "--upstream",
        &url,
        "--rate-limit-key",
        "$http_x_client",
    ];
    args.extend_from_slice(extra);
    start(&args)
}

/// Sends `count` requests from `client`, one every `gap`; returns the statuses.
fn paced(
    addr: std::net::SocketAddr,
    client: &str,
    count: usize,
    gap: Duration,
    headers: &[(&str, &str)],
) -> Vec<u16> {
    let started = Instant::now();
    (0..count)
        .map(|i| {
            let due = started + gap * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let mut all = vec![("X-Client", client)];
            all.extend_from_slice(headers);
            get_with(addr, "/", &all).status
        })
        .collect()
}

#[test]
fn a_client_at_twice_its_limit_sees_about_half_429s() {
    let origin = Backend::start("origin");
    let (p, addr) = limited_cache(&origin, &["--rate-limit", "anon=20/s,burst=1"]);
    // 40 requests a second for three seconds.
    let statuses = paced(addr, "greedy", 120, Duration::from_millis(25), &[]);
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert!(statuses.iter().all(|&s| s == 200 || s == 429));
    assert!((36..=84).contains(&limited), "{limited} of 120 limited");
    assert_eq!(
        metric(
            p.admin,
            "podkit_ratelimit_requests_total",
            &["outcome=\"limited\""]
        ),
        Some(limited as f64)
    );
}

#[test]
fn every_response_carries_the_limit_headers_and_429s_say_when_to_retry() {
    let origin = Backend::start("origin");
    let (_p, addr) = limited_cache(&origin, &["--rate-limit", "anon=1/s,burst=3"]);
    let first = get_with(addr, "/", &[("X-Client", "h")]);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("2"));
    assert!(first.header("x-ratelimit-reset").is_some());
    get_with(addr, "/", &[("X-Client", "h")]);
    let third = get_with(addr, "/", &[("X-Client", "h")]);
    assert_eq!(third.header("x-ratelimit-remaining"), Some("0"));
    let refused = get_with(addr, "/", &[("X-Client", "h")]);
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        origin.requests(),
        3,
        "refused requests never reach the origin"
    );
}

#[test]
fn another_client_is_unaffected() {
    let origin = Backend::start("origin");
    let (_p, addr) = limited_cache(&origin, &["--rate-limit", "anon=5/s,burst=5"]);
    let greedy: Vec<u16> = (0..30)
        .map(|_| get_with(addr, "/", &[("X-Client", "greedy")]).status)
        .collect();
    assert!(greedy.contains(&429));
    let polite: Vec<u16> = (0..5)
        .map(|_| get_with(addr, "/", &[("X-Client", "polite")]).status)
        .collect();
    assert_eq!(polite, vec![200; 5]);
}

/// The status of a GET of `/` sent to `addr` from the loopback address `from`.
fn status_from(from: std::net::Ipv4Addr, addr: std::net::SocketAddr) -> u16 {
    use std::io::{Read, Write};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let mut stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((from, 0).into()).unwrap();
        socket.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    podkit_testkit::probe::parse_response(&answer, false)
        .unwrap()
        .status
}

#[test]
fn clients_are_told_apart_by_address_by_default() {
    let origin = Backend::start("origin");
    let url = origin.url();
    // The default --rate-limit-key is $remote_addr; two loopback addresses, two clients.
    let (_p, addr) = start(&[
        "cache",
        "--upstream",
        &url,
        "--rate-limit",
        "anon=1/s,burst=3",
    ]);
    let greedy = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let polite = std::net::Ipv4Addr::new(127, 0, 0, 3);
    let statuses: Vec<u16> = (0..6).map(|_| status_from(greedy, addr)).collect();
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    assert_eq!(status_from(polite, addr), 200);
}

#[test]
fn an_identified_client_gets_its_higher_limit() {
    let origin = Backend::start("origin");
    let (_p, addr) = limited_cache(
        &origin,
        &[
            "--rate-limit",
            "anon=2/s,burst=2",
            "--rate-limit",
            "user=100/s,burst=50",
            "--user-key",
            "$http_authorization",
        ],
    );
    let user: Vec<u16> = (0..30)
        .map(|_| {
            get_with(
                addr,
                "/",
                &[("X-Client", "same"), ("Authorization", "Bearer alice")],
            )
            .status
        })
        .collect();
    assert_eq!(user, vec![200; 30], "an identified caller has 50 at once");
    let anon: Vec<u16> = (0..30)
        .map(|_| get_with(addr, "/", &[("X-Client", "same")]).status)
        .collect();
    assert_eq!(anon.iter().filter(|&&s| s == 200).count(), 2, "{anon:?}");
}

#[test]
fn bad_rate_specs_exit_2() {
    let out = std::process::Command::new(PODKIT)
        .args([
            "cache",
            "--upstream",
            "http://127.0.0.1:1",
            "--rate-limit",
            "anon=10/d",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--rate-limit"), "{stderr}");
    let out = std::process::Command::new(PODKIT)
        .args([
            "cache",
            "--upstream",
            "http://127.0.0.1:1",
            "--rate-limit",
            "user=10/s",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user-key"));
    let out = std::process::Command::new(PODKIT)
        .args(["cache", "--upstream", "http://127.0.0.1:1"])
        .args(["--rate-limit", "anon=1/s", "--rate-limit-max-keys", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate-limit-max-keys"));
}
