//! `podkit adapter metrics` against a real redis-server: redis_exporter's metric names and
//! values, promtool-clean output, a password, and a Redis that goes away.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use podkit_testkit::servers::Redis;

/// Sends commands and reads one reply each.
fn redis(addr: SocketAddr, password: Option<&str>, commands: &[&str]) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut all: Vec<String> = password.map(|p| format!("AUTH {p}")).into_iter().collect();
    all.extend(commands.iter().map(|c| c.to_string()));
    for command in all {
        // RESP's multi-bulk form, which proxies such as twemproxy require.
        let words: Vec<&str> = command.split_whitespace().collect();
        let mut encoded = format!("*{}\r\n", words.len());
        for w in &words {
            encoded.push_str(&format!("${}\r\n{w}\r\n", w.len()));
        }
        stream.write_all(encoded.as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.starts_with('$') && !line.starts_with("$-1") {
            let mut value = String::new();
            reader.read_line(&mut value).unwrap();
        }
        assert!(!line.starts_with('-'), "{command}: {line}");
    }
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn redis_statistics_under_redis_exporter_names() {
    let server = Redis::start().expect("redis-server");
    redis(
        server.addr,
        None,
        &[
            "SET a 1",
            "SET b 2",
            "SET c 3",
            "SET t1 x EX 100",
            "SET t2 y EX 100",
            "GET a",
            "GET a",
            "GET nope",
            "SELECT 3",
            "SET other 1",
        ],
    );
    let (_adapter, listen) = start(&[
        "adapter",
        "metrics",
        "--redis",
        &format!("redis://{}", server.addr),
    ]);
    let text = get(listen, "/metrics").text();
    for (series, expected) in [
        ("redis_up", 1.0),
        ("redis_db_keys{db=\"db0\"}", 5.0),
        ("redis_db_keys_expiring{db=\"db0\"}", 2.0),
        ("redis_db_keys{db=\"db3\"}", 1.0),
        ("redis_db_keys{db=\"db15\"}", 0.0),
        ("redis_commands_total{cmd=\"get\"}", 3.0),
        ("redis_keyspace_hits_total", 2.0),
        ("redis_keyspace_misses_total", 1.0),
        ("redis_slowlog_length", 0.0),
        ("redis_exporter_last_scrape_error{err=\"\"}", 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(expected), "{series} in\n{text}");
    }
    assert!(sample(&text, "redis_commands_total{cmd=\"set\"}").unwrap() >= 6.0);
    assert!(sample(&text, "redis_connected_clients").unwrap() >= 1.0);
    assert!(sample(&text, "redis_memory_used_bytes").unwrap() > 0.0);
    assert!(sample(&text, "redis_commands_processed_total").unwrap() >= 10.0);
    // Redis estimates avg_ttl by sampling in its expire cycle: 0 until it has sampled.
    let ttl = sample(&text, "redis_db_avg_ttl_seconds{db=\"db0\"}").unwrap();
    assert!((0.0..=100.0).contains(&ttl), "avg TTL {ttl}");
    assert!(
        text.contains("redis_instance_info{role=\"master\",redis_version=\"7."),
        "{text}"
    );
    assert_promtool_clean(listen);
}

#[test]
fn a_password_is_used_and_never_shown_and_a_lost_redis_is_up_0() {
    let mut server = Redis::start_with(&["--requirepass", "s3cret-pw"]).expect("redis-server");
    redis(server.addr, Some("s3cret-pw"), &["SET k v"]);
    let url = format!("redis://:s3cret-pw@{}", server.addr);
    let (adapter, listen) = start(&["adapter", "metrics", "--redis", &url]);
    let text = get(listen, "/metrics").text();
    assert_eq!(sample(&text, "redis_up"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "redis_db_keys{db=\"db0\"}"), Some(1.0));

    // Without the password: up 0, the error named, still a 200 with valid text.
    let (_wrong, wrong_listen) = start(&[
        "adapter",
        "metrics",
        "--redis",
        &format!("redis://{}", server.addr),
    ]);
    let response = get(wrong_listen, "/metrics");
    assert_eq!(response.status, 200);
    let text = response.text();
    assert_eq!(sample(&text, "redis_up"), Some(0.0), "{text}");
    assert!(
        text.contains("redis_exporter_last_scrape_error{err=\"NOAUTH"),
        "{text}"
    );
    assert_promtool_clean(wrong_listen);

    // Redis stops: up 0; it comes back: up 1.
    server.process().stop();
    let text = get(listen, "/metrics").text();
    assert_eq!(sample(&text, "redis_up"), Some(0.0), "{text}");
    server.process().restart_process().expect("restart redis");
    assert!(eventually(std::time::Duration::from_secs(10), || {
        sample(&get(listen, "/metrics").text(), "redis_up") == Some(1.0)
    }));
    assert!(
        !adapter.output().contains("s3cret-pw"),
        "{}",
        adapter.output()
    );
}

/// The generic mode's mapping for twemproxy's stats port and etcd's health document.
const JSON_MAPPING: &str = r#"
metrics:
  - name: twemproxy_server_requests
    type: counter
    help: Requests sent to each server
    path: "*.*.requests"
    labels: { pool: $1, server: $2 }
  - name: twemproxy_client_connections
    path: "*.client_connections"
    labels: { pool: $1 }
  - name: twemproxy_total_connections
    type: counter
    path: total_connections
  - name: etcd_healthy
    path: health
    values: { "true": 1 }
"#;

#[test]
fn any_json_stats_endpoint_through_a_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("mapping.yaml");
    std::fs::write(&mapping, JSON_MAPPING).unwrap();
    let mapping = mapping.to_str().unwrap();

    // twemproxy's stats port: a TCP port that writes one JSON document and closes.
    let server = Redis::start().expect("redis-server");
    let listen = free_addr();
    let nutcracker = podkit_testkit::servers::Nutcracker::start(&format!(
        "alpha:\n  listen: {listen}\n  redis: true\n  servers:\n   - {}:1 cache-1\n",
        server.addr
    ))
    .expect("nutcracker");
    redis(listen, None, &["SET a 1", "GET a", "GET a"]);
    let (adapter, metrics) = start(&[
        "adapter",
        "metrics",
        "--json",
        &format!("tcp://{}", nutcracker.stats_addr),
        "--mapping",
        mapping,
    ]);
    // nutcracker refreshes its stats every few seconds.
    let mut text = String::new();
    assert!(
        eventually(Duration::from_secs(15), || {
            text = get(metrics, "/metrics").text();
            sample(
                &text,
                "twemproxy_server_requests_total{pool=\"alpha\",server=\"cache-1\"}",
            ) == Some(3.0)
        }),
        "{text}"
    );
    assert_eq!(sample(&text, "podkit_json_up"), Some(1.0));
    assert!(sample(&text, "twemproxy_total_connections_total").is_some_and(|n| n >= 1.0));
    assert!(
        text.contains("twemproxy_client_connections{pool=\"alpha\"}"),
        "{text}"
    );
    assert!(!text.contains("etcd_healthy"), "absent paths are left out");
    assert_promtool_clean(metrics);
    assert_promtool_clean(adapter.admin);

    // etcd's health over HTTP: {"health":"true"}, a string mapped to 1.
    let etcd = podkit_testkit::servers::Etcd::start().expect("etcd-server");
    let (_etcd_adapter, etcd_metrics) = start(&[
        "adapter",
        "metrics",
        "--json",
        &format!("http://{}/health", etcd.members[0].client_addr),
        "--mapping",
        mapping,
    ]);
    let text = get(etcd_metrics, "/metrics").text();
    assert_eq!(sample(&text, "etcd_healthy"), Some(1.0), "{text}");

    // The endpoint goes away: still 200, with podkit_json_up 0.
    drop(nutcracker);
    let text = get(metrics, "/metrics").text();
    assert_eq!(sample(&text, "podkit_json_up"), Some(0.0), "{text}");
}

#[test]
fn a_bad_mapping_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("mapping.yaml");
    std::fs::write(
        &mapping,
        "metrics:\n  - {name: m, path: a, labels: {x: $2}}\n",
    )
    .unwrap();
    let out = std::process::Command::new(PODKIT)
        .args([
            "adapter",
            "metrics",
            "--json",
            "http://127.0.0.1:1/stats",
            "--mapping",
        ])
        .arg(&mapping)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("uses $2"), "{stderr}");
}
