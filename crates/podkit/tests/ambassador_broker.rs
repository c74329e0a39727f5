//! `podkit ambassador broker` with real MariaDB servers and a real DNS server (dnsmasq):
//! the MariaDB client reaches the server mapped for the environment, a changed mapping
//! moves new connections while open ones stay, SRV records are followed as they change,
//! and an address that refuses connections is passed over.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use podkit_testkit::podkit::Podkit;
use podkit_testkit::servers::{Dnsmasq, MariaDb};
use serde_json::Value;

/// `SELECT @@port` through `addr` with the MariaDB command-line client.
fn server_port(addr: SocketAddr) -> Result<u16, String> {
    let out = Command::new("mariadb")
        .args([
            "--protocol=TCP",
            "-h",
            "127.0.0.1",
            "-P",
            &addr.port().to_string(),
        ])
        .args([
            "-u",
            "podkit",
            "-ppodkit",
            "-N",
            "-B",
            "--connect-timeout=5",
        ])
        .args(["-e", "SELECT @@port"])
        .output()
        .map_err(|e| format!("mariadb (Debian package mariadb-client): {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("{e}"))
}

fn broker(args: &[&str], env: &[(&str, &str)]) -> (Podkit, SocketAddr) {
    let listen = free_addr();
    let listen_s = listen.to_string();
    let mut all = vec![
        "ambassador",
        "broker",
        "--listen",
        &listen_s,
        "--log-format",
        "text",
    ];
    all.extend(args);
    let mut p = Podkit::start_with_env(Path::new(PODKIT), &all, env).expect("podkit starts");
    p.wait_ready()
        .unwrap_or_else(|e| panic!("{e}\n{}", p.output()));
    (p, listen)
}

fn endpoint(broker: &Podkit) -> Value {
    serde_json::from_slice(&get(broker.admin, "/endpoint").body).unwrap()
}

#[test]
fn the_environments_database_and_a_mapping_that_changes() {
    let dev = MariaDb::start().expect("mariadb-server");
    let prod = MariaDb::start().expect("mariadb-server");
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("services.yaml");
    let write_map = |dev_addr: SocketAddr| {
        std::fs::write(
            &map,
            format!(
                "dev:\n  mysql: {dev_addr}\nprod:\n  mysql: [{}]\n",
                prod.addr
            ),
        )
        .unwrap();
    };
    write_map(dev.addr);
    let map_s = map.to_str().unwrap();
    let (dev_broker, dev_listen) = broker(
        &["--map", map_s, "--environment", "dev", "--service", "mysql"],
        &[],
    );
    let (_prod_broker, prod_listen) = broker(
        &["--map", map_s, "--service", "mysql"],
        &[("PODKIT_ENVIRONMENT", "prod")],
    );
    assert_eq!(server_port(dev_listen), Ok(dev.addr.port()));
    assert_eq!(server_port(prod_listen), Ok(prod.addr.port()));
    let shown = endpoint(&dev_broker);
    assert_eq!(shown["environment"], "dev");
    assert_eq!(shown["addresses"][0], dev.addr.to_string());
    assert_eq!(shown["last_connected"], dev.addr.to_string());

    // A connection opened before the change stays on its server.
    let mut open = std::process::Command::new("mariadb")
        .args([
            "--protocol=TCP",
            "-h",
            "127.0.0.1",
            "-P",
            &dev_listen.port().to_string(),
        ])
        .args(["-u", "podkit", "-ppodkit", "-N", "-B"])
        .args(["-e", "SELECT SLEEP(3), @@port"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // dev now points at prod's server: new connections follow within a second or two.
    write_map(prod.addr);
    assert!(
        eventually(Duration::from_secs(10), || server_port(dev_listen)
            == Ok(prod.addr.port())),
        "{}",
        dev_broker.output()
    );
    let mut out = String::new();
    use std::io::Read;
    open.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(open.wait().unwrap().success());
    assert_eq!(
        out.split_whitespace().last(),
        Some(dev.addr.port().to_string().as_str())
    );

    // An invalid mapping is refused and the last good one kept.
    std::fs::write(&map, "dev: [not, a, map]\n").unwrap();
    assert!(eventually(Duration::from_secs(10), || dev_broker
        .output()
        .contains("the mapping file is invalid")));
    assert_eq!(server_port(dev_listen), Ok(prod.addr.port()));
    assert_promtool_clean(dev_broker.admin);
}

#[test]
fn srv_records_are_followed_as_they_change() {
    let first = MariaDb::start().expect("mariadb-server");
    let second = MariaDb::start().expect("mariadb-server");
    let srv = |port: u16| format!("srv-host=_mysql._tcp.db.test,db1.test,{port},10,0");
    let mut dns = Dnsmasq::start(&[&srv(first.addr.port()), "host-record=db1.test,127.0.0.1"])
        .expect("dnsmasq");
    let (broker, listen) = broker(
        &[
            "--target",
            "srv:_mysql._tcp.db.test",
            "--dns-server",
            &dns.addr.to_string(),
        ],
        &[],
    );
    assert_eq!(server_port(listen), Ok(first.addr.port()));
    dns.replace_records(&[&srv(second.addr.port()), "host-record=db1.test,127.0.0.1"])
        .unwrap();
    // The records' TTL is one second.
    assert!(
        eventually(Duration::from_secs(10), || server_port(listen)
            == Ok(second.addr.port())),
        "{}",
        broker.output()
    );
    assert_eq!(endpoint(&broker)["endpoint"], "srv:_mysql._tcp.db.test");
}

#[test]
fn a_refused_connection_makes_the_broker_resolve_again_at_once() {
    let db = MariaDb::start().expect("mariadb-server");
    let dead = free_addr();
    let srv = |port: u16| format!("srv-host=_mysql._tcp.db.test,db1.test,{port},10,0");
    // An hour's TTL, and no periodic re-resolution: only a failure can make it ask again.
    let mut dns =
        Dnsmasq::start_with_ttl(&[&srv(dead.port()), "host-record=db1.test,127.0.0.1"], 3600)
            .expect("dnsmasq");
    let (broker, listen) = broker(
        &[
            "--target",
            "srv:_mysql._tcp.db.test",
            "--dns-server",
            &dns.addr.to_string(),
            "--resolve-every",
            "1h",
        ],
        &[],
    );
    assert_eq!(endpoint(&broker)["addresses"][0], dead.to_string());
    dns.replace_records(&[&srv(db.addr.port()), "host-record=db1.test,127.0.0.1"])
        .unwrap();
    // The first connection finds the old address refusing, resolves again and goes on.
    assert_eq!(
        server_port(listen),
        Ok(db.addr.port()),
        "{}",
        broker.output()
    );
    assert_eq!(endpoint(&broker)["addresses"][0], db.addr.to_string());
}

#[test]
fn an_address_that_refuses_is_passed_over_and_env_vars_work() {
    let db = MariaDb::start().expect("mariadb-server");
    let dead = free_addr();
    let (broker, listen) = broker(
        &["--target", "env:DATABASE_ADDRS"],
        &[("DATABASE_ADDRS", &format!("{dead},{}", db.addr))],
    );
    assert_eq!(server_port(listen), Ok(db.addr.port()));
    assert!(metric(
        broker.admin,
        "podkit_broker_connect_failures_total",
        &[&dead.to_string()]
    )
    .is_some_and(|n| n >= 1.0));
}

#[test]
fn bad_mappings_exit_2_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("services.yaml");
    std::fs::write(&map, "dev:\n  mysql: 127.0.0.1:3306\n").unwrap();
    for (args, needle) in [
        (
            vec![
                "--map",
                map.to_str().unwrap(),
                "--environment",
                "qa",
                "--service",
                "mysql",
            ],
            "no environment 'qa'",
        ),
        (vec!["--target", "db-without-port"], "--target"),
        (vec!["--map", map.to_str().unwrap()], "--environment"),
    ] {
        let out = Command::new(PODKIT)
            .args(["ambassador", "broker", "--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}
