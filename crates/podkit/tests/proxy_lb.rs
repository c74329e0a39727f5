//! `podkit lb` (chapter 5): round-robin, readiness gating, retries when a backend dies,
//! hash affinity on a consistent ring, forwarding headers, and `--print-config`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use podkit_testkit::backend::Backend;
use podkit_testkit::probe::http_request;

fn lb(
    backends: &[&Backend],
    extra: &[&str],
) -> (podkit_testkit::podkit::Podkit, std::net::SocketAddr) {
    let urls: Vec<String> = backends.iter().map(|b| b.url()).collect();
    let mut args = vec!["lb", "--ready-interval", "100ms"];
    for url in &urls {
        args.extend(["--backend", url.as_str()]);
    }
    args.extend_from_slice(extra);
    start(&args)
}

#[test]
fn round_robin_spreads_evenly() {
    let backends: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("b{i}"))).collect();
    let (_lb, addr) = lb(&backends.iter().collect::<Vec<_>>(), &[]);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..300 {
        let resp = get(addr, "/");
        assert_eq!(resp.status, 200);
        *counts.entry(backend_of(&resp)).or_default() += 1;
    }
    for b in &backends {
        assert_eq!(b.requests(), 100, "counts: {counts:?}");
    }
}

#[test]
fn metrics_pass_promtool_and_count_by_route_and_backend() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let (lb, addr) = lb(&[&a, &b], &[]);
    for _ in 0..10 {
        get(addr, "/");
    }
    get(addr, "/status/503");
    get(addr, "/status/503");
    assert_promtool_clean(lb.admin);
    let route = format!("route=\"{addr}/\"");
    assert_eq!(
        metric(
            lb.admin,
            "podkit_proxy_requests_total",
            &[&route, "class=\"2xx\""]
        ),
        Some(10.0)
    );
    assert_eq!(
        metric(
            lb.admin,
            "podkit_proxy_requests_total",
            &[&route, "class=\"5xx\""]
        ),
        Some(2.0)
    );
    let backend_a = format!("backend=\"{}\"", a.addr);
    assert_eq!(
        metric(
            lb.admin,
            "podkit_proxy_backend_responses_total",
            &[&backend_a, "class=\"2xx\""]
        ),
        Some(5.0)
    );
    assert!(
        metric(
            lb.admin,
            "podkit_proxy_request_duration_seconds_count",
            &[&route]
        )
        .unwrap()
            >= 12.0
    );
    assert!(metric(lb.admin, "podkit_proxy_response_bytes_total", &[&route]).unwrap() > 0.0);
    assert_eq!(
        metric(lb.admin, "podkit_proxy_backend_ready", &[&backend_a]),
        Some(1.0)
    );
}

#[test]
fn connections_to_backends_are_kept_alive() {
    let b = Backend::start("keep");
    let (_lb, addr) = lb(&[&b], &["--ready-path", ""]);
    for _ in 0..100 {
        assert_eq!(get(addr, "/").status, 200);
        assert_eq!(get(addr, "/download?bytes=100000").body.len(), 100_000);
    }
    assert_eq!(b.requests(), 200);
    assert_eq!(
        b.connections(),
        1,
        "one kept-alive connection served every request"
    );
}

#[test]
fn weights_shape_round_robin() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let weighted = format!("{},weight=3", b.url());
    let (_lb, addr) = start(&[
        "lb",
        "--ready-interval",
        "100ms",
        "--backend",
        &a.url(),
        "--backend",
        &weighted,
    ]);
    for _ in 0..400 {
        assert_eq!(get(addr, "/").status, 200);
    }
    assert_eq!((a.requests(), b.requests()), (100, 300));
}

#[test]
fn an_unready_backend_gets_nothing_until_it_turns_ready() {
    let ready = Backend::start("ready");
    let late = Backend::start("late");
    late.set_ready(false);
    let (lb, addr) = lb(&[&ready, &late], &[]);
    for _ in 0..50 {
        assert_eq!(get(addr, "/").status, 200);
    }
    assert_eq!(late.requests(), 0);
    assert_eq!(ready.requests(), 50);
    let label = format!("backend=\"{}\"", late.addr);
    assert_eq!(
        metric(lb.admin, "podkit_proxy_backend_ready", &[&label]),
        Some(0.0)
    );
    late.set_ready(true);
    assert!(eventually(Duration::from_secs(5), || {
        metric(lb.admin, "podkit_proxy_backend_ready", &[&label]) == Some(1.0)
    }));
    for _ in 0..50 {
        assert_eq!(get(addr, "/").status, 200);
    }
    assert_eq!(late.requests(), 25);
    // Alive but no longer ready: traffic stops again.
    late.set_ready(false);
    assert!(eventually(Duration::from_secs(5), || {
        metric(lb.admin, "podkit_proxy_backend_ready", &[&label]) == Some(0.0)
    }));
    let before = late.requests();
    for _ in 0..20 {
        assert_eq!(get(addr, "/").status, 200);
    }
    assert_eq!(late.requests(), before);
}

#[test]
fn no_ready_backend_answers_503() {
    let down = Backend::start("down");
    down.set_ready(false);
    let (_lb, addr) = lb(&[&down], &[]);
    let resp = get(addr, "/");
    assert_eq!(resp.status, 503);
    assert!(resp.text().contains("no ready backend"), "{}", resp.text());
}

#[test]
fn killing_a_backend_under_load_loses_no_idempotent_get() {
    let mut backends: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("k{i}"))).collect();
    let (lb, addr) = lb(&backends.iter().collect::<Vec<_>>(), &[]);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                (0..250)
                    .map(|i| {
                        let resp = get(addr, &format!("/item/{i}?sleep_ms=2"));
                        resp.status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    backends[1].kill();
    let statuses: Vec<u16> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert_eq!(statuses.len(), 1000);
    let failed: Vec<&u16> = statuses.iter().filter(|&&s| s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} requests failed: {failed:?}",
        failed.len()
    );
    let retries = metric(lb.admin, "podkit_proxy_retries_total", &[]).unwrap_or(0.0);
    assert!(
        retries >= 1.0,
        "the dead backend's requests were retried elsewhere"
    );
    let dead = format!("backend=\"{}\"", backends[1].addr);
    let ejections =
        metric(lb.admin, "podkit_proxy_backend_ejections_total", &[&dead]).unwrap_or(0.0);
    assert!(ejections >= 1.0, "the dead backend was ejected");
}

fn under_load(addr: std::net::SocketAddr) {
    let workers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..25 {
                    assert_eq!(get(addr, "/").status, 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn least_conn_avoids_the_slow_backend() {
    let fast = Backend::start("fast");
    let slow = Backend::start("slow");
    slow.set_delay(Duration::from_millis(100));
    let (_lb, addr) = lb(&[&fast, &slow], &["--policy", "least-conn"]);
    under_load(addr);
    assert_eq!(fast.requests() + slow.requests(), 200);
    // Round-robin would give each 100; the slow one holds its requests longer.
    assert!(slow.requests() < 40, "slow backend got {}", slow.requests());
}

#[test]
fn p2c_prefers_the_fast_backend() {
    let fast = Backend::start("fast");
    let slow = Backend::start("slow");
    slow.set_delay(Duration::from_millis(100));
    let (_lb, addr) = lb(&[&fast, &slow], &["--policy", "p2c"]);
    under_load(addr);
    assert_eq!(fast.requests() + slow.requests(), 200);
    assert!(slow.requests() < 40, "slow backend got {}", slow.requests());
}

#[test]
fn a_hanging_backend_gets_504_after_the_try_timeout() {
    let hang = Backend::start("hang");
    hang.set_mode(podkit_testkit::backend::Mode::Hang);
    let (_lb, addr) = lb(
        &[&hang],
        &[
            "--try-timeout",
            "300ms",
            "--timeout",
            "1s",
            "--retries",
            "0",
            "--ready-path",
            "",
        ],
    );
    let started = std::time::Instant::now();
    let resp = get(addr, "/");
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_post_is_not_retried() {
    let a = Backend::start("a");
    let mut dead = Backend::start("dead");
    let dead_url = dead.url();
    dead.kill();
    let (_lb, addr) = start(&[
        "lb",
        "--backend",
        &a.url(),
        "--backend",
        &dead_url,
        "--ready-path",
        "",
        "--retries",
        "2",
    ]);
    let statuses: Vec<u16> = (0..6)
        .map(|_| {
            http_request(addr, "POST", "/echo", &[], b"payload")
                .unwrap()
                .status
        })
        .collect();
    assert!(
        statuses.contains(&502),
        "a POST to the dead backend fails: {statuses:?}"
    );
    assert!(statuses.contains(&200));
}

#[test]
fn hash_affinity_keeps_a_client_on_one_backend() {
    let backends: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("h{i}"))).collect();
    let (_lb, addr) = lb(
        &backends.iter().collect::<Vec<_>>(),
        &["--policy", "hash", "--hash-key", "$http_x_client"],
    );
    let mut seen = std::collections::HashSet::new();
    for client in 0..40 {
        let id = format!("client-{client}");
        let first = backend_of(&get_with(addr, "/", &[("X-Client", &id)]));
        for _ in 0..5 {
            assert_eq!(
                backend_of(&get_with(addr, "/other", &[("X-Client", &id)])),
                first
            );
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 4, "40 clients spread over all backends");
}

/// Placement of 10,000 keys (`$request_uri`) through a proxy: key -> backend name.
fn placement(addr: std::net::SocketAddr) -> Vec<String> {
    (0..10_000)
        .map(|i| backend_of(&get(addr, &format!("/k/{i}"))))
        .collect()
}

#[test]
fn adding_a_fifth_backend_moves_about_a_fifth_of_keys() {
    let backends: Vec<Backend> = (0..5).map(|i| Backend::start(&format!("r{i}"))).collect();
    let four: Vec<&Backend> = backends.iter().take(4).collect();
    let all: Vec<&Backend> = backends.iter().collect();
    let hash = ["--policy", "hash", "--hash-key", "$request_uri"];
    let (p4, addr4) = lb(&four, &hash);
    let before = placement(addr4);
    drop(p4);
    let (_p5, addr5) = lb(&all, &hash);
    let after = placement(addr5);
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(
        (1500..=2500).contains(&moved),
        "{moved} of 10000 keys moved"
    );
    // Keys only ever move to the new backend.
    assert!(before.iter().zip(&after).all(|(a, b)| a == b || b == "r4"));
}

#[test]
fn hash_placement_matches_nginx_consistent_hash() {
    let backends: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("n{i}"))).collect();
    let servers: String = backends
        .iter()
        .map(|b| format!("server {};", b.addr))
        .collect::<Vec<_>>()
        .join(" ");
    let nginx = podkit_testkit::servers::Nginx::start(&format!(
        "upstream shards {{ hash $request_uri consistent; {servers} }}\n\
         server {{ listen 127.0.0.1:{{port}}; location / {{ proxy_pass http://shards; }} }}"
    ))
    .expect("nginx");
    let (_lb, addr) = lb(
        &backends.iter().collect::<Vec<_>>(),
        &["--policy", "hash", "--hash-key", "$request_uri"],
    );
    let ours: Vec<String> = (0..2000)
        .map(|i| backend_of(&get(addr, &format!("/k/{i}"))))
        .collect();
    let theirs: Vec<String> = (0..2000)
        .map(|i| backend_of(&get(nginx.addr, &format!("/k/{i}"))))
        .collect();
    let distinct: std::collections::HashSet<&String> = theirs.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "nginx spread the keys over the three backends"
    );
    let differ = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    assert_eq!(
        differ, 0,
        "podkit and nginx place {differ} of 2000 keys differently"
    );
}

#[test]
fn forwarding_headers_reach_the_backend() {
    let b = Backend::start("h");
    let (_lb, addr) = lb(&[&b], &[]);
    let resp = get_with(
        addr,
        "/?x=1",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("Connection", "close, x-drop"),
            ("X-Drop", "1"),
        ],
    );
    assert_eq!(resp.status, 200);
    assert!(resp.header("via").unwrap_or("").contains("podkit"));
    let headers: HashMap<String, String> = b.last_headers().into_iter().collect();
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert!(headers["via"].contains("podkit"));
    assert!(
        !headers.contains_key("x-drop"),
        "headers listed in Connection are hop-by-hop"
    );
    assert!(
        headers["host"].starts_with("127.0.0.1:"),
        "client's Host kept"
    );
}

#[test]
fn bodies_stream_both_ways() {
    let b = Backend::start("s");
    let (_lb, addr) = lb(&[&b], &[]);
    let body = vec![b'z'; 5 << 20];
    let echo = http_request(addr, "POST", "/echo", &[], &body).unwrap();
    assert_eq!((echo.status, echo.body.len()), (200, body.len()));
    let download = get(addr, "/download?bytes=20000000");
    assert_eq!(download.body.len(), 20_000_000);
}

#[test]
fn print_config_runs_the_same_under_proxy_c() {
    let a = Backend::start("pa");
    let b = Backend::start("pb");
    let listen = free_addr().to_string();
    let out = std::process::Command::new(PODKIT)
        .args([
            "lb",
            "--listen",
            &listen,
            "--backend",
            &a.url(),
            "--backend",
            &b.url(),
        ])
        .args(["--ready-interval", "100ms", "--print-config"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    let file_s = file.to_str().unwrap();
    let check = std::process::Command::new(PODKIT)
        .args(["proxy", "-c", file_s, "--check"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut proxy = podkit_testkit::podkit::Podkit::start(
        std::path::Path::new(PODKIT),
        &["proxy", "-c", file_s],
    )
    .unwrap();
    proxy.wait_ready().unwrap();
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    for _ in 0..10 {
        assert_eq!(get(addr, "/").status, 200);
    }
    assert_eq!((a.requests(), b.requests()), (5, 5));
}

#[test]
fn bad_proxy_files_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.yaml");
    std::fs::write(
        &file,
        "listeners:\n  - listen: 127.0.0.1:1\n    routes:\n      - to: { pool: web }\npools:\n  web:\n    backends: [http://127.0.0.1:2]\n    polcy: p2c\n",
    )
    .unwrap();
    let out = std::process::Command::new(PODKIT)
        .args(["proxy", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pools.web.polcy"), "{stderr}");
    std::fs::write(
        &file,
        "listeners:\n  - listen: 127.0.0.1:1\n    routes:\n      - to: { pool: nope }\npools:\n  web:\n    backends: [http://127.0.0.1:2]\n",
    )
    .unwrap();
    let out = std::process::Command::new(PODKIT)
        .args(["proxy", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("listeners[0].routes[0].to.pool"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
}

#[test]
fn backends_follow_the_backends_file() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backends");
    std::fs::write(&file, format!("# one replica\n{}\n", a.url())).unwrap();
    let file_s = file.to_str().unwrap();
    let (_lb, addr) = start(&["lb", "--backends-file", file_s, "--ready-path", ""]);
    for _ in 0..5 {
        assert_eq!(backend_of(&get(addr, "/")), "a");
    }
    std::fs::write(&file, format!("{}\n{}\n", a.url(), b.url())).unwrap();
    assert!(eventually(Duration::from_secs(5), || backend_of(&get(
        addr, "/"
    )) == "b"));
    std::fs::write(&file, "").unwrap();
    assert!(eventually(Duration::from_secs(5), || get(addr, "/").status == 503));
}
