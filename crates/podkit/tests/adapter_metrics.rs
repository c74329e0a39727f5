//! `podkit adapter metrics` against a real redis-server: redis_exporter's metric names and
//! values, promtool-clean output, a password, and a Redis that goes away.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;
use podkit_testkit::servers::Redis;

/// Sends commands (inline form) and reads one reply line each.
fn redis(addr: SocketAddr, password: Option<&str>, commands: &[&str]) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut all: Vec<String> = password.map(|p| format!("AUTH {p}")).into_iter().collect();
    all.extend(commands.iter().map(|c| c.to_string()));
    for command in all {
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
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
