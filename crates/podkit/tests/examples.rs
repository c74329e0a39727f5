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

/// Runs `examples/<name>/podkit.yaml` from a copy whose fixed `ports` are replaced by free
/// ones; `prepare` may add files beside it (certificates).
fn run_example(name: &str, fixed: &[u16], prepare: impl FnOnce(&Path)) -> Example {
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
    prepare(dir.path());
    // The example's own programs (dictionary-server) are built beside podkit.
    let bin_dir = Path::new(PODKIT).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let file = dir.path().join("podkit.yaml");
    let mut runner = Podkit::start_with_env(
        Path::new(PODKIT),
        &["up", file.to_str().unwrap(), "--log-format", "text"],
        &[("PATH", &path)],
    )
    .expect("podkit up starts");
    runner
        .wait_ready()
        .unwrap_or_else(|e| panic!("{e}\n{}", runner.output()));
    Example { runner, ports, dir }
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
