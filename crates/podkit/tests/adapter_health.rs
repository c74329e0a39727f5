//! `podkit adapter health` against real MariaDB, PostgreSQL and Redis: 200 `OK` while the
//! query runs, 503 with the error while the database is stopped, 200 again after it
//! restarts; credentials from env or file never in answers or logs; results cached; the
//! book's adapter flags.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use podkit_testkit::podkit::Podkit;
use podkit_testkit::servers::{MariaDb, Postgres, Redis};

/// Starts the adapter with `args` and `env`, answering on a free port, with no caching
/// unless `args` set it.
fn adapter(args: &[&str], env: &[(&str, &str)]) -> (Podkit, SocketAddr) {
    let listen = free_addr();
    let listen_s = listen.to_string();
    let mut all = vec!["adapter", "health", "--listen", &listen_s];
    all.extend(args);
    if !args.contains(&"--cache-for") {
        all.extend(["--cache-for", "0s"]);
    }
    let mut p = Podkit::start_with_env(Path::new(PODKIT), &all, env).expect("podkit starts");
    p.wait_ready()
        .unwrap_or_else(|e| panic!("{e}\n{}", p.output()));
    (p, listen)
}

/// The status and body of `GET /` on the adapter.
fn probe(listen: SocketAddr) -> (u16, String) {
    let r = get(listen, "/");
    (r.status, r.text())
}

/// Waits for the adapter to answer `status`, returning the body.
fn wait_for(listen: SocketAddr, status: u16) -> String {
    let mut last = (0, String::new());
    assert!(
        eventually(Duration::from_secs(20), || {
            last = probe(listen);
            last.0 == status
        }),
        "wanted {status}, last answer {last:?}"
    );
    last.1
}

#[test]
fn mariadb_stopped_mid_test_gives_503_then_200_after_restart() {
    let mut db = MariaDb::start().expect("mariadb-server");
    // The URL has no password: it comes from the environment.
    let url = format!("mysql://podkit@{}/podkit", db.addr);
    let (adapter, listen) = adapter(
        &[
            "--mysql",
            &url,
            "--query",
            "SELECT COUNT(*) FROM mysql.user",
        ],
        &[("PODKIT_DB_PASSWORD", "podkit")],
    );
    assert_eq!(probe(listen), (200, "OK".to_string()));
    assert_eq!(get(listen, "/healthz").status, 200);

    db.process().stop();
    let error = wait_for(listen, 503);
    assert!(error.to_lowercase().contains("connect"), "{error}");

    db.restart().expect("mariadb restarts");
    assert_eq!(wait_for(listen, 200), "OK");
    let output = adapter.output();
    assert!(output.contains("the database is unhealthy"), "{output}");
    assert!(output.contains("the database is healthy"), "{output}");
    assert_promtool_clean(adapter.admin);
}

#[test]
fn a_wrong_password_is_reported_without_the_password() {
    let db = MariaDb::start().expect("mariadb-server");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "Wr0ngPassw0rd\n").unwrap();
    let url = format!("mysql://podkit@{}/podkit", db.addr);
    let (adapter, listen) = adapter(
        &["--mysql", &url, "--password-file", file.to_str().unwrap()],
        &[],
    );
    let (status, body) = probe(listen);
    assert_eq!(status, 503);
    assert!(body.contains("Access denied"), "{body}");
    assert!(!body.contains("Wr0ngPassw0rd"), "{body}");
    assert!(!adapter.output().contains("Wr0ngPassw0rd"));

    // The same file with the right password: healthy.
    std::fs::write(&file, "podkit\n").unwrap();
    let (_adapter, listen) = self::adapter(
        &["--mysql", &url, "--password-file", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(probe(listen), (200, "OK".to_string()));
}

#[test]
fn the_books_adapter_flags_work_unchanged() {
    let db = MariaDb::start().expect("mariadb-server");
    let listen = free_addr();
    let address = format!("localhost:{}", listen.port());
    let host = db.addr.to_string();
    // db-check --query=... --user=... --passwd=... --database=... --address=...
    let mut p = Podkit::start(
        Path::new(PODKIT),
        &[
            "adapter",
            "health",
            "--mysql",
            &host,
            "--query=SELECT 1",
            "--user=podkit",
            "--passwd=podkit",
            "--database=podkit",
            &format!("--address={address}"),
        ],
    )
    .expect("podkit starts");
    p.wait_ready().unwrap();
    assert_eq!(probe(listen), (200, "OK".to_string()));
}

#[test]
fn postgres_query_errors_and_a_restart() {
    let mut db = Postgres::start().expect("postgresql");
    let (_good, listen) = adapter(
        &[
            "--postgres",
            &db.url(),
            "--query",
            "SELECT 1 FROM pg_database",
        ],
        &[],
    );
    assert_eq!(probe(listen), (200, "OK".to_string()));
    let (_bad, bad_listen) = adapter(
        &[
            "--postgres",
            &db.url(),
            "--query",
            "SELECT * FROM no_such_table",
        ],
        &[],
    );
    let (status, body) = probe(bad_listen);
    assert_eq!(status, 503);
    assert!(body.contains("no_such_table"), "{body}");

    db.process().stop();
    let error = wait_for(listen, 503);
    assert!(!error.is_empty());
    db.restart().expect("postgres restarts");
    assert_eq!(wait_for(listen, 200), "OK");
}

#[test]
fn redis_with_a_password_file_and_a_command() {
    let mut server = Redis::start_with(&["--requirepass", "r3dis-secret"]).expect("redis-server");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "r3dis-secret").unwrap();
    let url = format!("redis://{}", server.addr);
    let (adapter, listen) = adapter(
        &[
            "--redis",
            &url,
            "--password-file",
            file.to_str().unwrap(),
            "--query",
            "DBSIZE",
        ],
        &[],
    );
    assert_eq!(probe(listen), (200, "OK".to_string()));
    server.process().stop();
    let error = wait_for(listen, 503);
    assert!(error.contains("connect"), "{error}");
    server.restart().expect("redis restarts");
    assert_eq!(wait_for(listen, 200), "OK");
    assert!(!adapter.output().contains("r3dis-secret"));

    // Without the password, Redis refuses the command.
    let (_anonymous, listen) = self::adapter(&["--redis", &url], &[]);
    let (status, body) = probe(listen);
    assert_eq!(status, 503);
    assert!(body.contains("NOAUTH"), "{body}");
}

#[test]
fn a_database_that_hangs_fails_the_check_within_the_timeout() {
    let mut server = Redis::start().expect("redis-server");
    let url = format!("redis://{}", server.addr);
    let (_adapter, listen) = adapter(&["--redis", &url, "--timeout", "1s"], &[]);
    assert_eq!(probe(listen).0, 200);
    server.process().signal(podkit_testkit::Signal::SIGSTOP);
    let started = std::time::Instant::now();
    let (status, body) = probe(listen);
    server.process().signal(podkit_testkit::Signal::SIGCONT);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("within 1s"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(wait_for(listen, 200), "OK");
}

#[test]
fn results_are_cached_so_probes_cannot_overload_the_database() {
    let server = Redis::start().expect("redis-server");
    let url = format!("redis://{}", server.addr);
    let (adapter, listen) = adapter(&["--redis", &url, "--cache-for", "1h"], &[]);
    // Concurrent probes as well as sequential ones share one check.
    let probes: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || probe(listen)))
        .collect();
    for p in probes {
        assert_eq!(p.join().unwrap(), (200, "OK".to_string()));
    }
    for _ in 0..12 {
        assert_eq!(probe(listen).0, 200);
    }
    let checks = metric(adapter.admin, "podkit_health_checks_total", &["ok"]);
    let cached = metric(adapter.admin, "podkit_health_cached_answers_total", &[]);
    assert_eq!((checks, cached), (Some(1.0), Some(19.0)));
}

#[test]
fn bad_urls_exit_2_with_one_line() {
    let out = std::process::Command::new(PODKIT)
        .args([
            "adapter",
            "health",
            "--mysql",
            "mysql://u:Secr3t@h:notaport/db",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("podkit: error: --mysql:"), "{stderr}");
    assert!(!stderr.contains("Secr3t"), "{stderr}");

    let out = std::process::Command::new(PODKIT)
        .args([
            "adapter",
            "health",
            "--postgres",
            "postgres://h",
            "--redis",
            "h",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
