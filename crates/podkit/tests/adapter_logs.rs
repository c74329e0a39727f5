//! `podkit adapter logs` on real logs: redis-server's log file, nginx's combined access
//! log, util-linux logger's syslog lines, Redis's slow log; files rotated, truncated and
//! followed across restarts of the adapter with no line lost or repeated.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use podkit_testkit::servers::{Nginx, Redis};
use serde_json::Value;

/// The adapter, its stdout going to a file.
struct Adapter {
    child: Child,
    admin: SocketAddr,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Adapter {
    fn start(dir: &Path, name: &str, args: &[&str]) -> Adapter {
        let admin = free_addr();
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let child = Command::new(PODKIT)
            .args([
                "adapter",
                "logs",
                "--admin",
                &admin.to_string(),
                "--log-format",
                "text",
            ])
            .args(["--poll-interval", "50ms"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let adapter = Adapter {
            child,
            admin,
            stdout,
            stderr,
        };
        assert!(
            eventually(Duration::from_secs(20), || {
                podkit_testkit::probe::http_get(admin, "/readyz").is_ok_and(|r| r.status == 200)
            }),
            "{}",
            std::fs::read_to_string(&adapter.stderr).unwrap_or_default()
        );
        adapter
    }

    fn records(&self) -> Vec<Value> {
        records_in(&self.stdout)
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap().code()
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn records_in(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Runs `podkit adapter logs --stdin --once` with `args` on `input`; it must exit 0.
fn once_on_stdin(args: &[&str], input: &[u8]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let stdout = dir.path().join("out");
    let mut child = Command::new(PODKIT)
        .args([
            "adapter",
            "logs",
            "--stdin",
            "--once",
            "--admin",
            "127.0.0.1:0",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    assert!(child.wait().unwrap().success());
    records_in(&stdout)
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

#[test]
fn redis_servers_own_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("redis.log");
    let adapter = Adapter::start(
        dir.path(),
        "adapter",
        &["--file", log.to_str().unwrap(), "--from-start"],
    );
    let _redis = Redis::start_with(&["--logfile", log.to_str().unwrap(), "--loglevel", "verbose"])
        .expect("redis-server");
    let mut records = Vec::new();
    assert!(eventually(Duration::from_secs(10), || {
        records = adapter.records();
        records
            .iter()
            .any(|r| r["msg"] == "Ready to accept connections")
    }));
    let ready = records
        .iter()
        .find(|r| r["msg"] == "Ready to accept connections")
        .unwrap();
    assert_eq!(ready["format"], "redis");
    assert_eq!(ready["level"], "notice");
    assert_eq!(ready["source"], log.to_str().unwrap());
    assert!(ready["ts"].as_str().unwrap().ends_with('Z'), "{ready}");
    assert!(ready["pid"].as_u64().is_some(), "{ready}");
    assert!(
        records.iter().all(|r| r["format"] == "redis"),
        "{records:?}"
    );
}

#[test]
fn nginx_access_log_in_combined_format() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let nginx = Nginx::start(&format!(
        "server {{ listen 127.0.0.1:{{port}}; access_log {} combined; \
         location / {{ return 200 ok; }} }}",
        log.display()
    ))
    .expect("nginx");
    let spec = format!("combined:{}", log.display());
    let adapter = Adapter::start(dir.path(), "adapter", &["--file", &spec]);
    for path in ["/one", "/two?x=1", "/missing"] {
        get_with(
            nginx.addr,
            path,
            &[("user-agent", "podkit-test/1"), ("referer", "http://r/")],
        );
    }
    let mut records = Vec::new();
    assert!(eventually(Duration::from_secs(10), || {
        records = adapter.records();
        records.len() == 3
    }));
    assert_eq!(records[1]["path"], "/two?x=1");
    assert_eq!(records[1]["status"], 200);
    assert_eq!(records[1]["user_agent"], "podkit-test/1");
    assert_eq!(records[1]["referer"], "http://r/");
    assert_eq!(records[1]["remote_addr"], "127.0.0.1");
    assert!(records.iter().all(|r| r["format"] == "combined"));
}

#[test]
fn syslog_lines_from_logger_on_stdin_in_once_mode() {
    let mut lines = String::new();
    for rfc in ["--rfc3164", "--rfc5424"] {
        // No /dev/log needed: logger sends to a UDP port nobody listens on and prints the
        // formatted message on stderr.
        let out = Command::new("logger")
            .args([
                "--stderr",
                rfc,
                "-t",
                "shop",
                "-p",
                "user.err",
                "-d",
                "-n",
                "127.0.0.1",
            ])
            .args(["-P", &free_addr().port().to_string(), "payment failed"])
            .output()
            .expect("logger (Debian package bsdutils)");
        lines.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let records = once_on_stdin(&[], format!("{lines}not a log line\n").as_bytes());
    let formats: Vec<&str> = records
        .iter()
        .map(|r| r["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["syslog3164", "syslog5424", "unparsed"], "{lines}");
    for r in &records[..2] {
        assert_eq!(r["msg"], "payment failed", "{r}");
        assert_eq!(r["level"], "error", "{r}");
        assert_eq!(r["app"], "shop", "{r}");
    }
    assert_eq!(records[2]["msg"], "not a log line");
}

#[test]
fn rotation_truncation_and_restarts_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let pos = dir.path().join("app.pos");
    let args = [
        "--file",
        log.to_str().unwrap(),
        "--pos-file",
        pos.to_str().unwrap(),
        "--format",
        "logfmt",
    ];
    let next = std::cell::Cell::new(0usize);
    let write = |count: usize, path: &Path| {
        for _ in 0..count {
            let n = next.get();
            append(path, &format!("level=info msg=\"line {n}\" n={n}\n"));
            next.set(n + 1);
        }
    };
    write(5, &log); // before the first start: skipped (read from the end)
    let skipped = next.get();
    let first = Adapter::start(dir.path(), "first", &args);
    write(20, &log);
    // Rotation by rename, with a last line written to the old file after it.
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    write(3, &dir.path().join("app.log.1"));
    write(10, &log);
    assert!(eventually(Duration::from_secs(10), || first
        .records()
        .len()
        == next.get() - skipped));
    assert_eq!(first.stop(), Some(0));
    // Lines written while the adapter is down are read after it restarts.
    write(10, &log);
    let second = Adapter::start(dir.path(), "second", &args);
    write(10, &log);
    let first_count = records_in(&dir.path().join("first.out")).len();
    // Lines not yet read when a file is truncated are gone (as with tail): wait for them.
    assert!(eventually(Duration::from_secs(10), || first_count
        + second.records().len()
        == next.get() - skipped));
    // Truncation in place.
    std::fs::write(&log, "").unwrap();
    write(7, &log);
    assert!(eventually(Duration::from_secs(10), || first_count
        + second.records().len()
        == next.get() - skipped));
    let events = get(second.admin, "/metrics").text();
    assert!(events.contains("event=\"truncated\""), "{events}");
    assert_eq!(second.stop(), Some(0));

    let numbers: Vec<u64> = records_in(&dir.path().join("first.out"))
        .into_iter()
        .chain(records_in(&dir.path().join("second.out")))
        .map(|r| r["n"].as_str().unwrap().parse().unwrap())
        .collect();
    let expected: Vec<u64> = (skipped as u64..next.get() as u64).collect();
    assert_eq!(numbers, expected);
}

#[test]
fn a_java_stack_trace_stays_one_record_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let pos = dir.path().join("app.pos");
    let args = [
        "--file",
        log.to_str().unwrap(),
        "--pos-file",
        pos.to_str().unwrap(),
        "--from-start",
    ];
    append(
        &log,
        "2026-11-26 10:00:00,001 [main] INFO  shop.Cart - started\n",
    );
    append(
        &log,
        "2026-11-26 10:00:01,002 [main] ERROR shop.Cart - checkout failed\n",
    );
    append(&log, "java.lang.IllegalStateException: empty cart\n");
    let first = Adapter::start(dir.path(), "first", &args);
    assert!(eventually(Duration::from_secs(5), || first.records().len() == 1));
    // Stopped while the trace may still grow: the record is left for the next run, which
    // reads it whole.
    assert_eq!(first.stop(), Some(0));
    assert_eq!(records_in(&dir.path().join("first.out")).len(), 1);
    append(&log, "\tat shop.Cart.checkout(Cart.java:42)\n");
    append(
        &log,
        "2026-11-26 10:00:02,003 [main] INFO  shop.Cart - next\n",
    );
    let second = Adapter::start(dir.path(), "second", &args);
    assert!(eventually(Duration::from_secs(5), || second
        .records()
        .len()
        == 2));
    let all: Vec<Value> = records_in(&dir.path().join("first.out"))
        .into_iter()
        .chain(second.records())
        .collect();
    let msgs: Vec<&str> = all.iter().map(|r| r["msg"].as_str().unwrap()).collect();
    assert_eq!(
        msgs,
        [
            "started",
            "checkout failed\njava.lang.IllegalStateException: empty cart\n\tat shop.Cart.checkout(Cart.java:42)",
            "next"
        ]
    );
    assert_eq!(all[1]["level"], "error");
    assert_eq!(all[1]["format"], "log4j");
}

#[test]
fn redis_slowlog_entries_are_emitted_once() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start_with(&["--slowlog-log-slower-than", "0"]).expect("redis-server");
    let pos = dir.path().join("slowlog.pos");
    let url = format!("redis://{}", redis.addr);
    let args = [
        "--redis-slowlog",
        &url,
        "--slowlog-interval",
        "100ms",
        "--pos-file",
        pos.to_str().unwrap(),
    ];
    let redis_cli = |command: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &redis.addr.port().to_string()])
            .args(command)
            .output()
            .expect("redis-cli (Debian package redis-tools)");
        assert!(out.status.success());
    };
    redis_cli(&["SET", "before", "1"]); // before the first start: not emitted
    let first = Adapter::start(dir.path(), "first", &args);
    // The adapter's own SLOWLOG GET calls are slow-log entries too: count ours.
    let ours = |records: &[Value]| -> Vec<String> {
        records
            .iter()
            .map(|r| r["msg"].as_str().unwrap().to_string())
            .filter(|m| m.starts_with("SET k"))
            .collect()
    };
    redis_cli(&["SET", "k1", "v"]);
    redis_cli(&["SET", "k2", "v"]);
    assert!(eventually(Duration::from_secs(10), || ours(
        &first.records()
    )
    .len()
        == 2));
    assert_eq!(first.stop(), Some(0));
    redis_cli(&["SET", "k3", "v"]);
    let second = Adapter::start(dir.path(), "second", &args);
    assert!(eventually(Duration::from_secs(10), || ours(
        &second.records()
    )
    .len()
        == 1));
    std::thread::sleep(Duration::from_millis(500));
    let mut all = ours(&records_in(&dir.path().join("first.out")));
    all.extend(ours(&second.records()));
    assert_eq!(all, ["SET k1 v", "SET k2 v", "SET k3 v"]);
    let record = second
        .records()
        .into_iter()
        .find(|r| r["msg"] == "SET k3 v")
        .unwrap();
    assert_eq!(record["source"], format!("redis-slowlog:{}", redis.addr));
    assert!(record["duration_us"].as_u64().is_some(), "{record}");
    assert!(!records_in(&dir.path().join("first.out"))
        .iter()
        .any(|r| r["msg"] == "SET before 1"));
}

/// A Java program logging with java.util.logging's default format, stack trace included.
const JAVA_PROGRAM: &str = r#"
import java.util.logging.Logger;
public class Shop {
    public static void main(String[] args) {
        Logger log = Logger.getLogger("shop.Cart");
        log.info("cart opened");
        try {
            throw new IllegalStateException("empty cart");
        } catch (IllegalStateException e) {
            log.log(java.util.logging.Level.SEVERE, "checkout failed", e);
        }
        log.warning("slow payment");
    }
}
"#;

#[test]
fn a_java_programs_own_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Shop.java"), JAVA_PROGRAM).unwrap();
    let javac =
        podkit_testkit::process::find_binary("javac", "default-jdk-headless").expect("javac");
    let compiled = Command::new(javac)
        .current_dir(dir.path())
        .arg("Shop.java")
        .status()
        .unwrap();
    assert!(compiled.success());
    let ran = Command::new("java")
        .current_dir(dir.path())
        .args(["-cp", ".", "Shop"])
        .env("LC_ALL", "C")
        .output()
        .expect("java (Debian package default-jdk-headless)");
    assert!(ran.status.success());
    let records = once_on_stdin(&[], &ran.stderr);
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["format"].as_str().unwrap_or("").to_string(),
                r["level"].as_str().unwrap_or("").to_string(),
                r["msg"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let expected = [
        ("jul", "info", "cart opened"),
        ("jul", "error", "checkout failed"),
        ("jul", "warn", "slow payment"),
    ];
    assert_eq!(
        summary,
        expected.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let trace = records[1]["msg"].as_str().unwrap();
    assert!(
        trace.contains("java.lang.IllegalStateException: empty cart"),
        "{trace}"
    );
    assert!(trace.contains("at Shop.main"), "{trace}");
    assert!(records[0]["ts"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn once_normalizes_a_whole_file_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.log");
    // The last line has no newline: it is still a record.
    std::fs::write(&file, "{\"msg\":\"one\"}\nlevel=warn msg=two\nthree").unwrap();
    let out = Command::new(PODKIT)
        .args([
            "adapter",
            "logs",
            "--once",
            "--admin",
            "127.0.0.1:0",
            "--file",
        ])
        .arg(&file)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let msgs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["msg"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(msgs, ["one", "two", "three"]);
}

#[test]
fn zone_less_timestamps_take_the_given_offset() {
    // A Redis line (local time, no zone), then bytes that are not UTF-8: passed through.
    let records = once_on_stdin(
        &["--utc-offset", "+02:00"],
        b"1:M 26 Nov 2026 10:00:00.000 * Ready to accept connections\nbad \xff byte\n",
    );
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["ts"], "2026-11-26T08:00:00.000Z");
    assert_eq!(records[1]["format"], "unparsed");
    assert_eq!(records[1]["msg"], "bad \u{fffd} byte");
}

#[test]
fn bad_flags_exit_2() {
    for args in [&[][..], &["--stdin", "--format", "xml"]] {
        let out = Command::new(PODKIT)
            .args(["adapter", "logs"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    }
}
