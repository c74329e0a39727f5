//! Each server of the kit starts, really answers, and leaves no process behind.

use podkit_testkit::probe::{http_get, line_exchange, memcached_version, redis_ping};
use podkit_testkit::process::{group_alive, ServerProcess};
use podkit_testkit::servers::*;
use podkit_testkit::{free_port, Result};

/// Drops `server` and asserts that its whole process group is gone.
fn assert_leaves_nothing<T>(server: T, pid: Option<u32>) {
    let pid = pid.expect("server has a pid") as i32;
    assert!(
        group_alive(pid),
        "server group {pid} should be alive before drop"
    );
    drop(server);
    assert!(
        !group_alive(pid),
        "process group {pid} still has members after drop"
    );
}

fn pid_of(process: &mut ServerProcess) -> Option<u32> {
    process.pid()
}

#[test]
fn redis_starts_answers_and_stops() -> Result<()> {
    let mut redis = Redis::start()?;
    assert!(redis_ping(redis.addr));
    let set = line_exchange(redis.addr, b"SET k v\r\n").unwrap();
    assert_eq!(set, "+OK\r\n");
    let pid = pid_of(redis.process());
    assert_leaves_nothing(redis, pid);
    Ok(())
}

#[test]
fn redis_restarts_on_the_same_port() -> Result<()> {
    let mut redis = Redis::start()?;
    let addr = redis.addr;
    redis.process().kill();
    assert!(!redis_ping(addr));
    redis.restart()?;
    assert!(redis_ping(addr));
    Ok(())
}

#[test]
fn memcached_starts_answers_and_stops() -> Result<()> {
    let mut mc = Memcached::start()?;
    assert!(memcached_version(mc.addr));
    let pid = pid_of(mc.process());
    assert_leaves_nothing(mc, pid);
    Ok(())
}

#[test]
fn nutcracker_routes_to_redis_and_stops() -> Result<()> {
    let redis = Redis::start()?;
    let listen = free_port();
    let config = format!(
        "alpha:\n  listen: 127.0.0.1:{listen}\n  hash: fnv1a_64\n  distribution: ketama\n  \
         redis: true\n  servers:\n   - {}:1\n",
        redis.addr
    );
    let mut nc = Nutcracker::start(&config)?;
    let proxy = std::net::SocketAddr::from(([127, 0, 0, 1], listen));
    // nutcracker speaks RESP only (no inline commands).
    let set = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n";
    assert_eq!(line_exchange(proxy, set).unwrap(), "+OK\r\n");
    assert_eq!(line_exchange(redis.addr, b"GET a\r\n").unwrap(), "$1\r\n");
    assert!(nc.stats().unwrap().contains("\"alpha\""));
    let pid = pid_of(nc.process());
    assert_leaves_nothing(nc, pid);
    Ok(())
}

#[test]
fn etcd_cluster_of_three_is_healthy_and_stops() -> Result<()> {
    let mut cluster = EtcdCluster::start(3)?;
    assert_eq!(cluster.endpoints().split(',').count(), 3);
    for member in &cluster.members {
        let health = http_get(member.client_addr, "/health").unwrap();
        assert!(health.text().contains("true"), "{}", health.text());
    }
    let pids: Vec<u32> = cluster
        .members
        .iter_mut()
        .map(|m| m.process().pid().unwrap())
        .collect();
    drop(cluster);
    for pid in pids {
        assert!(!group_alive(pid as i32));
    }
    Ok(())
}

#[test]
fn nginx_starts_answers_and_stops_with_its_workers() -> Result<()> {
    let mut nginx = Nginx::start_with_workers(
        "server { listen 127.0.0.1:{port}; location / { return 200 \"hello\"; } }",
        2,
    )?;
    let resp = http_get(nginx.addr, "/").unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "hello"));
    let pid = pid_of(nginx.process());
    assert_leaves_nothing(nginx, pid);
    Ok(())
}

#[test]
fn haproxy_starts_answers_and_stops() -> Result<()> {
    let mut haproxy = Haproxy::start_default()?;
    let resp = http_get(haproxy.addr, "/").unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    let pid = pid_of(haproxy.process());
    assert_leaves_nothing(haproxy, pid);
    Ok(())
}

#[test]
fn varnish_starts_answers_and_stops_with_its_child() -> Result<()> {
    let mut varnish = Varnish::start_default()?;
    let resp = http_get(varnish.addr, "/").unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("server"), Some("Varnish"), "{resp:?}");
    assert!(resp.header("x-varnish").is_some(), "{resp:?}");
    let pid = pid_of(varnish.process());
    assert_leaves_nothing(varnish, pid);
    Ok(())
}

#[test]
fn mariadb_starts_greets_and_stops() -> Result<()> {
    let mut db = MariaDb::start()?;
    let greeting = podkit_testkit::probe::greeting(db.addr, 5).unwrap();
    assert_eq!(greeting[4], 10, "protocol version 10 handshake");
    assert!(db.url().starts_with("mysql://podkit:podkit@127.0.0.1:"));
    let pid = pid_of(db.process());
    assert_leaves_nothing(db, pid);
    Ok(())
}

#[test]
fn postgres_starts_accepts_and_stops() -> Result<()> {
    let mut pg = Postgres::start()?;
    let pg_isready = podkit_testkit::process::find_binary("pg_isready", "postgresql-client")?;
    let status = std::process::Command::new(pg_isready)
        .args(["-h", "127.0.0.1", "-p", &pg.addr.port().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "pg_isready: {status}");
    assert!(pg.url().starts_with("postgres://podkit@127.0.0.1:"));
    let pid = pid_of(pg.process());
    assert_leaves_nothing(pg, pid);
    Ok(())
}

#[test]
fn nats_starts_greets_and_stops() -> Result<()> {
    let mut nats = Nats::start()?;
    let info = line_exchange(nats.addr, b"").unwrap();
    assert!(info.starts_with("INFO {"), "{info}");
    assert!(info.contains("\"jetstream\":true"), "{info}");
    let pid = pid_of(nats.process());
    assert_leaves_nothing(nats, pid);
    Ok(())
}

#[test]
fn a_missing_binary_names_its_package() {
    let err = podkit_testkit::process::find_binary("no-such-server-binary", "no-such-package")
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("no-such-package"), "{message}");
    assert!(message.contains("scripts/setup"), "{message}");
}
