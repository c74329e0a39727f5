//! The book's hands-on examples, run with `podkit up` exactly as their folders hold them
//! (fixed ports moved to free ones), checking what the book says each one does.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use podkit_testkit::podkit::Podkit;
use serde_json::Value;

/// The workspace's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

struct Example {
    runner: Podkit,
    ports: HashMap<u16, SocketAddr>,
    dir: tempfile::TempDir,
}

/// Starts `examples/<name>/podkit.yaml` from a copy whose fixed `ports` are replaced by
/// free ones; `prepare` may add files beside it (certificates).
fn start_example(name: &str, fixed: &[u16], prepare: impl FnOnce(&Path)) -> Example {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml =
        std::fs::read_to_string(root().join("examples").join(name).join("podkit.yaml")).unwrap();
    let mut ports = HashMap::new();
    for &port in fixed {
        let free = free_addr();
        yaml = yaml.replace(&port.to_string(), &free.port().to_string());
        ports.insert(port, free);
    }
    std::fs::write(dir.path().join("podkit.yaml"), yaml).unwrap();
    // The example's other files (an application's script) go beside it.
    for entry in std::fs::read_dir(root().join("examples").join(name)).unwrap() {
        let path = entry.unwrap().path();
        let file_name = path.file_name().unwrap();
        if path.is_file() && file_name != "podkit.yaml" {
            std::fs::copy(&path, dir.path().join(file_name)).unwrap();
        }
    }
    prepare(dir.path());
    // The example's own programs (dictionary-server) are built beside podkit.
    let bin_dir = Path::new(PODKIT).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let file = dir.path().join("podkit.yaml");
    let runner = Podkit::start_with_env(
        Path::new(PODKIT),
        &["up", file.to_str().unwrap(), "--log-format", "text"],
        &[("PATH", &path)],
    )
    .expect("podkit up starts");
    Example { runner, ports, dir }
}

/// [`start_example`], then waits until every replica is ready.
fn run_example(name: &str, fixed: &[u16], prepare: impl FnOnce(&Path)) -> Example {
    let mut example = start_example(name, fixed, prepare);
    example
        .runner
        .wait_ready()
        .unwrap_or_else(|e| panic!("{e}\n{}", example.runner.output()));
    example
}

impl Example {
    fn status(&self) -> Value {
        serde_json::from_slice(&get(self.runner.admin, "/status").body).unwrap()
    }
}

#[test]
fn topz_finds_the_application_in_its_pod() {
    let example = run_example("topz", &[8080], |_| {});
    let topz = example.ports[&8080];
    let mut rows = Vec::new();
    assert!(eventually(Duration::from_secs(10), || {
        let body = get(topz, "/topz?format=json").body;
        let snapshot: Value = serde_json::from_slice(&body).unwrap_or_default();
        rows = snapshot["processes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        rows.len() >= 2
    }));
    let commands: Vec<&str> = rows
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert!(
        commands.iter().any(|c| c.contains("http.server")),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| c.contains("sidecar topz")),
        "{commands:?}"
    );
    assert!(
        rows.iter().all(|r| r["pod"] == "app"),
        "only the pod's processes: {commands:?}"
    );
}

fn certificate(dir: &Path) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(certs.join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(certs.join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
}

fn curl_https(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-D", "-"])
        .arg(format!("https://127.0.0.1:{}{path}", addr.port()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let x_cache = head
        .lines()
        .find_map(|l| l.strip_prefix("x-cache: "))
        .unwrap_or("")
        .trim()
        .to_string();
    (status, x_cache, body.to_string())
}

#[test]
fn dictionary_answers_through_tls_cache_and_replicas() {
    let example = run_example("dictionary", &[8443], certificate);
    let frontend = example.ports[&8443];
    let (status, x_cache, body) = curl_https(frontend, "/dog");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("a member of the genus Canis"), "{body}");
    assert_eq!(x_cache, "MISS");
    let (_, x_cache, again) = curl_https(frontend, "/dog");
    assert_eq!(
        (x_cache.as_str(), again.as_str()),
        ("HIT", body.as_str()),
        "the second fetch is a cache hit"
    );

    // Kill a dictionary replica: answers keep coming (retried on the others, then the
    // replica restarts and rejoins).
    let status = example.status();
    let pid = status["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "dictionary")
        .unwrap()["replicas"][0]["containers"][0]["pid"]
        .as_u64()
        .unwrap();
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    for word in [
        "cat", "bird", "house", "tree", "river", "mountain", "music", "bread", "stone", "cloud",
    ] {
        let (status, _, body) = curl_https(frontend, &format!("/{word}"));
        assert_eq!(status, 200, "/{word}: {body}");
    }
    assert!(eventually(Duration::from_secs(15), || {
        let status = example.status();
        let dictionary = status["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "dictionary")
            .unwrap()
            .clone();
        let first = &dictionary["replicas"][0];
        first["ready"] == true && first["containers"][0]["restarts"] == 1
    }));
    let (status, _, _) = curl_https(frontend, "/unknownwordxyz");
    assert_eq!(status, 404);
    drop(example.dir);
}

#[test]
fn experiments_send_a_tenth_of_users_to_the_experiment() {
    let example = run_example("experiments", &[8080], |_| {});
    let ambassador = example.ports[&8080];
    let mut sides: HashMap<String, String> = HashMap::new();
    for user in 0..400 {
        let id = format!("user-{user}");
        let side = get_with(ambassador, "/", &[("X-User", &id)])
            .text()
            .trim()
            .to_string();
        sides.insert(id, side);
    }
    for user in (0..400).step_by(7) {
        let id = format!("user-{user}");
        let side = get_with(ambassador, "/", &[("X-User", &id)])
            .text()
            .trim()
            .to_string();
        assert_eq!(side, sides[&id], "{id} stays on its side");
    }
    let experiment = sides.values().filter(|s| *s == "experiment").count();
    assert!(
        (24..=56).contains(&experiment),
        "{experiment} of 400 users on the experiment"
    );
    assert!(sides.values().all(|s| s == "web" || s == "experiment"));
}

#[test]
fn sharded_http_keeps_each_key_on_one_replicated_shard() {
    let example = run_example("sharded-http", &[8081], |_| {});
    let proxy = example.ports[&8081];
    let mut owner: HashMap<String, String> = HashMap::new();
    for round in 0..2 {
        for key in 0..90 {
            let path = format!("/index.html?key={key}");
            let shard = get(proxy, &path).text().trim().to_string();
            if round == 0 {
                owner.insert(path, shard);
            } else {
                assert_eq!(owner[&path], shard, "{path} moved");
            }
        }
    }
    let shards: HashSet<&String> = owner.values().collect();
    assert_eq!(
        shards.len(),
        3,
        "keys spread over the three shards: {shards:?}"
    );
}

/// Sends `text` on a new connection and reads until the peer closes it (the text ends
/// with a quit command).
fn exchange(addr: SocketAddr, text: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn sharded_redis_app_counts_through_its_ambassador_over_three_shards() {
    let example = run_example("sharded-redis", &[7001, 7002, 7003, 8090], |_| {});
    let app = example.ports[&8090];
    // Keys that differ in their first characters: under fnv1a_64 as nutcracker computes
    // it, keys differing only at the end cluster (counter-0 .. counter-99 all land on
    // two of the three shards, with nutcracker as with podkit).
    let names: Vec<String> = (0..100).map(|i| format!("{i}-counter")).collect();
    for round in 1..=2 {
        for name in &names {
            let reply = get(app, &format!("/incr/{name}"));
            assert_eq!(
                (reply.status, reply.text().trim().to_string()),
                (200, round.to_string()),
                "{name}"
            );
        }
    }
    let both = get(app, "/get/0-counter,1-counter,missing");
    let values: Value = serde_json::from_slice(&both.body).unwrap();
    assert_eq!(
        values,
        serde_json::json!({"0-counter": "2", "1-counter": "2", "missing": null})
    );
    // The counters are spread over the three shards, each key on exactly one.
    let mut total = 0;
    for port in [7001, 7002, 7003] {
        let reply = exchange(example.ports[&port], "DBSIZE\r\nQUIT\r\n");
        let size: usize = reply
            .strip_prefix(':')
            .and_then(|r| r.split("\r\n").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("DBSIZE answered {reply:?}"));
        assert!(size > 0, "shard {port} holds none of the counters");
        total += size;
    }
    assert_eq!(total, names.len());
}

#[test]
fn sharded_memcache_ambassador_and_shared_router_place_keys_alike() {
    let example = run_example("sharded-memcache", &[7101, 7102, 7103, 7111, 7211], |_| {});
    let ambassador = example.ports[&7111];
    let router = example.ports[&7211];
    let status = example.status();
    let routers = status["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "shared-twemproxy")
        .unwrap()["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ready"] == true)
        .count();
    assert_eq!(routers, 3, "three ready shard routers: {status}");
    let keys: Vec<String> = (0..200).map(|i| format!("{i}-key")).collect();
    let sets: String = keys
        .iter()
        .map(|k| format!("set {k} 0 0 {} noreply\r\n{k}\r\n", k.len()))
        .collect();
    exchange(ambassador, &format!("{sets}quit\r\n"));
    // Read back through the shared router, over several connections (the service
    // spreads them over the routers).
    // The book's configuration ejects a shard after one failure (auto_eject_hosts,
    // server_failure_limit 1, timeout 400 ms): on a loaded machine a router may eject one
    // for two seconds, and its keys read as misses meanwhile. Read until they are found.
    for chunk in keys.chunks(20) {
        let mut reply = String::new();
        let found = eventually(Duration::from_secs(10), || {
            reply = exchange(router, &format!("get {}\r\nquit\r\n", chunk.join(" ")));
            chunk
                .iter()
                .all(|k| reply.contains(&format!("VALUE {k} 0 {}\r\n{k}\r\n", k.len())))
        });
        assert!(
            found,
            "not all of {chunk:?} found through the router: {reply}\n{}",
            example.runner.output()
        );
    }
    let mut total = 0;
    for port in [7101, 7102, 7103] {
        let reply = exchange(
            example.ports[&port],
            &format!("get {}\r\nquit\r\n", keys.join(" ")),
        );
        let held = reply.matches("VALUE ").count();
        assert!(held > 0, "memcached {port} holds none of the keys");
        total += held;
    }
    assert_eq!(total, keys.len(), "each key on exactly one shard");
}

/// The thumbnails made for `video` (`clip-1`), by file name.
fn thumbnails(dir: &Path, video: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("thumbnails").join(video))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn video_thumbnailer_thumbnails_every_video_and_then_a_new_one() {
    let make_videos = |dir: &Path, count: &str| {
        let status = Command::new(dir.join("make-videos.sh"))
            .arg(dir.join("videos"))
            .arg(count)
            .status()
            .expect("make-videos.sh (needs ffmpeg, Debian package ffmpeg)");
        assert!(status.success());
    };
    let example = run_example("video-thumbnailer", &[], |dir| make_videos(dir, "3"));
    let dir = example.dir.path().to_path_buf();
    let expected = ["thumb1.png", "thumb2.png", "thumb3.png"]
        .map(String::from)
        .to_vec();
    for clip in ["clip-1", "clip-2", "clip-3"] {
        assert!(
            eventually(Duration::from_secs(60), || thumbnails(&dir, clip)
                == expected),
            "{clip}: {:?}\n{}",
            thumbnails(&dir, clip),
            example.runner.output()
        );
        let png = std::fs::read(dir.join("thumbnails").join(clip).join("thumb2.png")).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{clip}/thumb2.png is a PNG"
        );
    }
    // A video added later is picked up at the next poll.
    make_videos(&dir, "4");
    assert!(
        eventually(Duration::from_secs(60), || thumbnails(&dir, "clip-4")
            == expected),
        "clip-4: {:?}\n{}",
        thumbnails(&dir, "clip-4"),
        example.runner.output()
    );
    // The manager's status (a snapshot it refreshes as it works) catches up.
    let mut report = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            let status = Command::new(PODKIT)
                .args(["queue", "status", "--state"])
                .arg(dir.join("state"))
                .output()
                .unwrap();
            report = String::from_utf8_lossy(&status.stdout).into_owned();
            report.contains("4 listed, 0 pending, 0 running, 4 done, 0 failed")
        }),
        "{report}"
    );
}

#[test]
fn redis_metrics_reach_prometheus_under_redis_exporter_names() {
    let example = run_example("redis-metrics", &[7301, 9121, 9090], |_| {});
    let adapter = example.ports[&9121];
    let prometheus = example.ports[&9090];
    let text = get(adapter, "/metrics").text();
    assert!(text.lines().any(|l| l == "redis_up 1"), "{text}");
    // Prometheus scrapes the adapter every second; the series appear under the names
    // redis_exporter's dashboards query.
    for (query, check) in [
        ("redis_up", "1"),
        ("redis_db_keys%7Bdb%3D%22db0%22%7D", "0"),
        ("redis_instance_info%7Brole%3D%22master%22%7D", "1"),
    ] {
        let mut last = Value::Null;
        assert!(
            eventually(Duration::from_secs(30), || {
                last = serde_json::from_slice(
                    &get(prometheus, &format!("/api/v1/query?query={query}")).body,
                )
                .unwrap_or_default();
                last["data"]["result"][0]["value"][1] == check
            }),
            "{query}: {last}\n{}",
            example.runner.output()
        );
    }
}

#[test]
fn mysql_health_adapter_follows_the_database_through_a_crash() {
    let example = run_example("mysql-health", &[3306, 8080], |_| {});
    let health = example.ports[&8080];
    assert_eq!(get(health, "/").text(), "OK");
    let pid = example.status()["pods"][0]["replicas"][0]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "mysql")
        .and_then(|c| c["pid"].as_i64())
        .expect("mariadbd's pid");
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The adapter reports the crash; the runner restarts MariaDB and the adapter sees it.
    let mut error = String::new();
    assert!(eventually(Duration::from_secs(20), || {
        let r = get(health, "/");
        error = r.text();
        r.status == 503
    }));
    assert!(!error.is_empty());
    assert!(
        eventually(Duration::from_secs(60), || get(health, "/").status == 200),
        "{}",
        example.runner.output()
    );
    assert!(!example.runner.output().contains("n0t-in-the-logs"));
}

#[test]
fn config_sync_reconfigures_nginx_from_etcd() {
    let example = run_example("config-sync", &[2379, 8080], |_| {});
    let etcd = example.ports[&2379];
    let web = example.ports[&8080];
    assert_eq!(get(web, "/").text(), "hello from the first configuration\n");
    let put = |value: &str| {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={etcd}"))
            .args(["put", "/config/site", value])
            .output()
            .expect("etcdctl (Debian package etcd-client)");
        assert!(out.status.success(), "{out:?}");
    };
    put("default_type text/plain; return 200 \"configured through etcd\\n\";");
    // After SIGHUP, nginx's old worker answers until it sees its QUIT: wait until
    // every answer comes from the new configuration.
    assert!(
        eventually(Duration::from_secs(10), || (0..10)
            .all(|_| get(web, "/").text() == "configured through etcd\n")),
        "{}",
        example.runner.output()
    );
    // nginx -t refuses this one: nginx keeps the last good configuration.
    put("return 200");
    assert!(eventually(Duration::from_secs(10), || example
        .runner
        .output()
        .contains("validation failed")));
    assert_eq!(get(web, "/").text(), "configured through etcd\n");
}

#[test]
fn log_adapter_normalizes_redis_log_and_slowlog() {
    let example = run_example("log-adapter", &[7401], |_| {});
    let redis = example.ports[&7401];
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.port().to_string()])
        .args(["SET", "greeting", "hello"])
        .output()
        .expect("redis-cli (Debian package redis-tools)");
    assert!(out.status.success());
    // The adapter's records, as JSON lines in the runner's output.
    let records = || -> Vec<Value> {
        example
            .runner
            .output()
            .lines()
            .filter_map(|l| l.find('{').map(|at| &l[at..]))
            .filter_map(|json| serde_json::from_str::<Value>(json).ok())
            .filter(|r| r.get("format").is_some())
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(15), || {
            let all = records();
            all.iter()
                .any(|r| r["format"] == "redis" && r["msg"] == "Ready to accept connections")
                && all.iter().any(|r| {
                    r["msg"] == "SET greeting hello"
                        && r["source"]
                            .as_str()
                            .is_some_and(|s| s.starts_with("redis-slowlog:"))
                })
        }),
        "{}",
        example.runner.output()
    );
}

#[test]
fn service_broker_follows_the_mapping() {
    let example = run_example("service-broker", &[7306, 7307, 3306], |_| {});
    let broker = example.ports[&3306];
    let which = || {
        let out = Command::new("mariadb")
            .args([
                "--protocol=TCP",
                "-h",
                "127.0.0.1",
                "-P",
                &broker.port().to_string(),
            ])
            .args([
                "-u",
                "app",
                "-papp",
                "-N",
                "-B",
                "-e",
                "SELECT name FROM env.here",
            ])
            .output()
            .expect("mariadb (Debian package mariadb-client)");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(which(), "dev", "{}", example.runner.output());
    let app = example.status()["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "app")
        .map(|p| p["replicas"][0]["dir"].as_str().unwrap().to_string())
        .unwrap();
    let map = Path::new(&app).join("services.yaml");
    let text = std::fs::read_to_string(&map).unwrap();
    let prod = example.ports[&7307].to_string();
    let dev = example.ports[&7306].to_string();
    std::fs::write(&map, text.replacen(&dev, &prod, 1)).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || which() == "prod"),
        "{}",
        example.runner.output()
    );
}

#[test]
fn git_sync_deploys_a_push() {
    let example = run_example("git-sync", &[8080], |dir| {
        let made = Command::new(dir.join("make-repo.sh"))
            .arg(dir)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
    });
    let site = example.ports[&8080];
    assert_eq!(get(site, "/").text().trim(), "<h1>version 1</h1>");
    let work = example.dir.path().join("site-work");
    std::fs::write(work.join("index.html"), "<h1>version 2</h1>\n").unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(&work)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    git(&["commit", "-qam", "version 2"]);
    git(&["push", "-q", "origin", "main"]);
    assert!(
        eventually(Duration::from_secs(15), || get(site, "/").text().trim()
            == "<h1>version 2</h1>"),
        "{}",
        example.runner.output()
    );
}

#[test]
fn leader_election_survives_killing_the_leader() {
    // Only the leader's replica is ever ready: wait for it to serve, not for all.
    let example = start_example("leader-election", &[2379, 8080], |_| {});
    let web = example.ports[&8080];
    let serving = || {
        let text = podkit_testkit::probe::http_get(web, "/")
            .map(|r| r.text())
            .unwrap_or_default();
        let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        (words.len() == 4 && words[0] == "leader")
            .then(|| (words[1].clone(), words[3].parse::<i64>().unwrap_or(0)))
    };
    let mut first = None;
    assert!(
        eventually(Duration::from_secs(60), || {
            first = serving();
            first.is_some()
        }),
        "{}",
        example.runner.output()
    );
    let (leader, token) = first.unwrap();
    let index: usize = leader.trim_start_matches("app-").parse().unwrap();
    let pid = example.status()["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "app")
        .and_then(|p| {
            p["replicas"]
                .as_array()?
                .iter()
                .find(|r| r["index"] == index)
                .map(|r| r["containers"][0]["pid"].as_i64().unwrap())
        })
        .expect("the leader's pid");
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut next = None;
    assert!(
        eventually(Duration::from_secs(15), || {
            next = serving().filter(|(id, _)| *id != leader);
            next.is_some()
        }),
        "{}",
        example.runner.output()
    );
    assert!(next.unwrap().1 > token);
}
