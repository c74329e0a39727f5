//! `podkit up`: replicas on distinct ports, readiness gating a service, restarts with
//! back-off, scaling through the admin endpoint with the service following, no process
//! left when the runner is killed, and bad files exiting 2.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use podkit_testkit::podkit::Podkit;
use podkit_testkit::probe::http_request;
use podkit_testkit::Signal;
use serde_json::Value;

const WEB: &str = r#"
pods:
  - name: web
    replicas: 3
    files:
      - path: site/index.html
        content: "replica {{ replica }}"
    containers:
      - name: server
        command: [python3, -m, http.server, "{{ port \"http\" }}", --bind, 127.0.0.1, --directory, "{{ dir }}/site"]
        ports: [{ name: http }]
        readinessProbe:
          exec: { command: [test, -f, "{{ dir }}/ready"] }
          interval: 100ms
services:
  - { name: web, pod: web, port: http, listen: "127.0.0.1:SERVICE_PORT" }
"#;

struct Up {
    runner: Podkit,
    service: SocketAddr,
    _dir: tempfile::TempDir,
    state: std::path::PathBuf,
}

fn up(topology: &str) -> Up {
    let dir = tempfile::tempdir().unwrap();
    let service = free_addr();
    let file = dir.path().join("podkit.yaml");
    std::fs::write(
        &file,
        topology.replace("SERVICE_PORT", &service.port().to_string()),
    )
    .unwrap();
    let state = dir.path().join("state");
    let runner = Podkit::start(
        Path::new(PODKIT),
        &[
            "up",
            file.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--grace",
            "2s",
        ],
    )
    .expect("podkit up starts");
    Up {
        runner,
        service,
        _dir: dir,
        state,
    }
}

impl Up {
    fn status(&self) -> Value {
        serde_json::from_slice(&get(self.runner.admin, "/status").body).unwrap()
    }

    fn replicas(&self, pod: &str) -> Vec<Value> {
        let status = self.status();
        status["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == pod)
            .map(|p| p["replicas"].as_array().unwrap().clone())
            .unwrap_or_default()
    }

    fn service_backends(&self, name: &str) -> u64 {
        let status = self.status();
        status["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["backends"].as_u64())
            .unwrap_or(0)
    }

    fn make_ready(&self, pod: &str, index: u64) {
        std::fs::write(
            self.state
                .join("pods")
                .join(format!("{pod}-{index}"))
                .join("ready"),
            "",
        )
        .unwrap();
    }
}

fn wait_replicas(up: &Up, pod: &str, count: usize) -> Vec<Value> {
    let mut replicas = Vec::new();
    assert!(
        eventually(Duration::from_secs(20), || {
            replicas = up.replicas(pod);
            replicas.len() == count
                && replicas.iter().all(|r| {
                    r["containers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|c| c["state"] == "running")
                })
        }),
        "{} replicas of {pod} running: {:?}",
        count,
        up.status()
    );
    replicas
}

#[test]
fn replicas_get_distinct_ports_and_their_own_files() {
    let up = up(WEB);
    let replicas = wait_replicas(&up, "web", 3);
    let ports: HashSet<u64> = replicas
        .iter()
        .map(|r| r["ports"]["http"].as_u64().unwrap())
        .collect();
    assert_eq!(ports.len(), 3);
    for replica in &replicas {
        let port = replica["ports"]["http"].as_u64().unwrap() as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(eventually(Duration::from_secs(10), || http_request(
            addr,
            "GET",
            "/index.html",
            &[],
            b""
        )
        .is_ok()));
        let page = get(addr, "/index.html");
        assert_eq!(page.text(), format!("replica {}", replica["index"]));
    }
}

#[test]
fn a_service_sends_only_to_ready_replicas() {
    let up = up(WEB);
    wait_replicas(&up, "web", 3);
    assert_eq!(up.service_backends("web"), 0);
    assert!(eventually(Duration::from_secs(10), || http_request(
        up.service,
        "GET",
        "/",
        &[],
        b""
    )
    .is_ok()));
    assert_eq!(
        get(up.service, "/index.html").status,
        503,
        "no replica is ready yet"
    );

    up.make_ready("web", 1);
    assert!(
        eventually(Duration::from_secs(10), || up.service_backends("web") == 1),
        "1 backend: {}",
        up.status()
    );
    assert!(eventually(Duration::from_secs(5), || get(
        up.service,
        "/index.html"
    )
    .text()
        == "replica 1"));
    for _ in 0..10 {
        assert_eq!(get(up.service, "/index.html").text(), "replica 1");
    }
    up.make_ready("web", 0);
    up.make_ready("web", 2);
    assert!(eventually(Duration::from_secs(10), || up
        .service_backends("web")
        == 3));
    let mut seen = HashSet::new();
    assert!(eventually(Duration::from_secs(10), || {
        seen.insert(get(up.service, "/index.html").text());
        seen.len() == 3
    }));
}

#[test]
fn a_crashing_process_is_restarted_with_back_off() {
    let up = up(r#"
pods:
  - name: crashy
    containers:
      - name: crash
        command: [sh, -c, "sleep 0.2; exit 3"]
"#);
    std::thread::sleep(Duration::from_millis(4500));
    let replicas = up.replicas("crashy");
    let crash = &replicas[0]["containers"][0];
    let restarts = crash["restarts"].as_u64().unwrap();
    // Back-off of 1 s, 2 s, 4 s: two or three restarts in 4.5 s, not one every 0.2 s.
    assert!((2..=3).contains(&restarts), "{restarts} restarts: {crash}");
    assert!(
        up.runner
            .output()
            .contains("exited (exit status: 3); restarting in 2s"),
        "{}",
        up.runner.output()
    );
}

#[test]
fn scaling_through_the_admin_endpoint_and_the_service_follows() {
    let up = up(WEB);
    wait_replicas(&up, "web", 3);
    let scaled = http_request(up.runner.admin, "POST", "/scale/web?replicas=5", &[], b"").unwrap();
    assert_eq!(scaled.status, 200, "{}", scaled.text());
    let replicas = wait_replicas(&up, "web", 5);
    for replica in &replicas {
        up.make_ready("web", replica["index"].as_u64().unwrap());
    }
    assert!(
        eventually(Duration::from_secs(10), || up.service_backends("web") == 5),
        "5 backends: {}",
        up.status()
    );
    let doomed: Vec<u64> = replicas[1..]
        .iter()
        .map(|r| r["containers"][0]["pid"].as_u64().unwrap())
        .collect();
    http_request(up.runner.admin, "POST", "/scale/web?replicas=1", &[], b"").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || up.service_backends("web") == 1),
        "1 backend: {}",
        up.status()
    );
    assert!(eventually(Duration::from_secs(10), || doomed
        .iter()
        .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())));
    for _ in 0..10 {
        assert_eq!(get(up.service, "/index.html").text(), "replica 0");
    }
    assert_eq!(
        http_request(up.runner.admin, "POST", "/scale/nope?replicas=1", &[], b"")
            .unwrap()
            .status,
        404
    );
}

/// Every process whose parent chain leads to `root`.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        parents.push((pid, ppid));
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

#[test]
fn killing_the_runner_leaves_no_child_alive() {
    let mut up = up(WEB);
    wait_replicas(&up, "web", 3);
    let runner_pid = up.runner.process().pid().unwrap();
    let children = descendants(runner_pid);
    assert!(
        children.len() >= 4,
        "three servers and the service's lb: {children:?}"
    );
    up.runner.process().signal_main(Signal::SIGKILL);
    assert!(
        eventually(Duration::from_secs(5), || children
            .iter()
            .all(|&pid| gone(pid))),
        "children still alive after the runner was killed"
    );
}

#[test]
fn sigterm_stops_everything_and_exits_0() {
    let mut up = up(WEB);
    wait_replicas(&up, "web", 3);
    let runner_pid = up.runner.process().pid().unwrap();
    let children = descendants(runner_pid);
    let status = up
        .runner
        .terminate(Duration::from_secs(20))
        .expect("the runner exits");
    assert_eq!(status.code(), Some(0), "{}", up.runner.output());
    assert!(eventually(Duration::from_secs(5), || children
        .iter()
        .all(|&pid| gone(pid))));
}

/// Whether a process has exited (a zombie waiting for its reaper counts as gone).
fn gone(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty() || stat.contains(") Z ")
}

fn check(topology: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("podkit.yaml");
    std::fs::write(&file, topology).unwrap();
    std::process::Command::new(PODKIT)
        .args(["up", "--check", file.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn bad_files_exit_2_naming_the_field() {
    let out = check("pods:\n  - name: a\n    containers:\n      - name: c\n        command: [x]\n        argz: []\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pods[0].containers[0]") && stderr.contains("argz"),
        "{stderr}"
    );
    let out = check("pods:\n  - name: a\n    containers:\n      - name: c\n        command: [x]\n        args: ['{{ service \"db\" }}']\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pods[0].containers[0].args[0]: no service named 'db'"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
    let ok = check(&WEB.replace("SERVICE_PORT", "1"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn a_failing_liveness_probe_restarts_the_process() {
    let up = up(r#"
pods:
  - name: sick
    containers:
      - name: server
        command: [python3, -m, http.server, "{{ port \"http\" }}", --bind, 127.0.0.1, --directory, "{{ dir }}"]
        ports: [{ name: http }]
        livenessProbe:
          httpGet: { path: /alive, port: http }
          interval: 200ms
          failureThreshold: 2
"#);
    assert!(
        eventually(Duration::from_secs(10), || up
            .replicas("sick")
            .first()
            .and_then(|r| r["containers"][0]["restarts"].as_u64())
            .unwrap_or(0)
            >= 1),
        "{}",
        up.runner.output()
    );
    assert!(up.runner.output().contains("liveness probe failed"));
}

#[test]
fn processes_of_a_pod_share_its_volumes() {
    let up = up(r#"
pods:
  - name: pair
    volumes: [shared]
    containers:
      - name: writer
        command: [sh, -c, "echo written by the sidecar > {{ volume \"shared\" }}/note.txt; exec sleep 300"]
      - name: server
        command: [python3, -m, http.server, "{{ port \"http\" }}", --bind, 127.0.0.1, --directory, "{{ volume \"shared\" }}"]
        ports: [{ name: http }]
"#);
    let replicas = wait_replicas(&up, "pair", 1);
    let port = replicas[0]["ports"]["http"].as_u64().unwrap() as u16;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(eventually(Duration::from_secs(10), || http_request(
        addr,
        "GET",
        "/note.txt",
        &[],
        b""
    )
    .map(|r| r.status == 200)
    .unwrap_or(false)));
    assert_eq!(get(addr, "/note.txt").text(), "written by the sidecar\n");
}
