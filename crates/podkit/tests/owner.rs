//! `podkit lock` and `podkit elect` as processes against a real 3-member etcd cluster:
//! mutual exclusion of 8 contenders over many rounds, a SIGKILLed holder's lock taken
//! over after its TTL, the command's exit status, and leaders replaced after a kill or a
//! resignation.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use podkit_testkit::servers::EtcdCluster;
use serde_json::Value;

fn store(cluster: &EtcdCluster) -> String {
    format!("etcd://{}", cluster.endpoints())
}

#[test]
fn eight_contenders_increment_a_shared_counter_exactly() {
    let cluster = EtcdCluster::start(3).expect("etcd-server");
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("counter");
    std::fs::write(&counter, "0").unwrap();
    let rounds = 6;
    // Read, pause, write: without the lock, increments would be lost.
    let body = format!(
        "n=$(cat {c}); sleep 0.01; echo $((n+1)) > {c}",
        c = counter.display()
    );
    let contenders: Vec<Child> = (0..8)
        .map(|_| {
            let script = format!(
                "for i in $(seq {rounds}); do {podkit} lock counter --store {store} \
                 --log-format text -- sh -c '{body}' || exit 1; done",
                podkit = PODKIT,
                store = store(&cluster),
            );
            Command::new("sh")
                .args(["-c", &script])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in contenders {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().trim(),
        (8 * rounds).to_string()
    );
}

#[test]
fn the_commands_status_and_a_killed_holders_lock_after_its_ttl() {
    let cluster = EtcdCluster::start(3).expect("etcd-server");
    let store = store(&cluster);
    let status = Command::new(PODKIT)
        .args([
            "lock", "status", "--store", &store, "--", "sh", "-c", "exit 7",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));

    let mut holder = Command::new(PODKIT)
        .args([
            "lock", "held", "--store", &store, "--ttl", "2s", "--", "sleep", "60",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let _ = holder.kill();
    let _ = holder.wait();
    let started = Instant::now();
    let out = Command::new(PODKIT)
        .args(["lock", "held", "--store", &store, "--ttl", "2s", "--"])
        .args(["sh", "-c", "echo token=$PODKIT_FENCING_TOKEN"])
        .output()
        .unwrap();
    let waited = started.elapsed();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("token="));
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    let _ = Command::new("pkill").args(["-f", "sleep 60"]).status();
}

/// One `podkit elect` replica.
struct Replica {
    child: Child,
    admin: std::net::SocketAddr,
}

impl Replica {
    fn start(cluster: &EtcdCluster, id: &str, dir: &Path) -> Replica {
        let admin = free_addr();
        let child = Command::new(PODKIT)
            .args([
                "elect", "leader", "--id", id, "--ttl", "2s", "--grace", "2s",
            ])
            .args(["--store", &store(cluster), "--admin", &admin.to_string()])
            .args(["--log-format", "text", "--"])
            .args([
                "sh",
                "-c",
                "echo $PODKIT_LEADER_ID $PODKIT_FENCING_TOKEN >> leaders; exec sleep 601",
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(eventually(Duration::from_secs(10), || {
            podkit_testkit::probe::http_get(admin, "/readyz").is_ok_and(|r| r.status == 200)
        }));
        Replica { child, admin }
    }

    fn view(&self) -> Value {
        serde_json::from_slice(&get(self.admin, "/leader").body).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The replica that says it leads, once exactly one does.
fn the_leader(replicas: &[Replica]) -> Option<usize> {
    let leading: Vec<usize> = (0..replicas.len())
        .filter(|&i| replicas[i].view()["is_leader"] == true)
        .collect();
    (leading.len() == 1).then(|| leading[0])
}

#[test]
fn a_new_leader_after_a_kill_and_after_a_resignation() {
    let cluster = EtcdCluster::start(3).expect("etcd-server");
    let dir = tempfile::tempdir().unwrap();
    let mut replicas: Vec<Replica> = ["r0", "r1", "r2"]
        .iter()
        .map(|id| Replica::start(&cluster, id, dir.path()))
        .collect();
    let mut leader = None;
    assert!(eventually(Duration::from_secs(10), || {
        leader = the_leader(&replicas);
        leader.is_some()
    }));
    let first = leader.unwrap();
    let view = replicas[first].view();
    let token = view["leader"]["token"].as_i64().unwrap();
    // Every replica agrees on who leads.
    for r in &replicas {
        assert_eq!(r.view()["leader"]["id"], view["leader"]["id"]);
    }

    // Killed: a new leader within TTL + one retry.
    let killed_at = Instant::now();
    let _ = replicas[first].child.kill();
    let _ = replicas[first].child.wait();
    let dead = replicas.remove(first);
    drop(dead);
    let mut second = None;
    assert!(eventually(Duration::from_secs(8), || {
        second = the_leader(&replicas);
        second.is_some()
    }));
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed_at.elapsed()
    );
    let second = second.unwrap();
    let new_token = replicas[second].view()["leader"]["token"].as_i64().unwrap();
    assert!(new_token > token);

    // Resigned (SIGTERM): the other replica leads within a second.
    let resigned_at = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &replicas[second].child.id().to_string()])
        .status();
    assert!(replicas[second].child.wait().unwrap().code().is_some());
    replicas.remove(second);
    assert!(eventually(Duration::from_secs(3), || the_leader(&replicas).is_some()));
    assert!(
        resigned_at.elapsed() < Duration::from_millis(2500),
        "{:?}",
        resigned_at.elapsed()
    );
    let leaders = std::fs::read_to_string(dir.path().join("leaders")).unwrap();
    assert_eq!(leaders.lines().count(), 3, "{leaders}");
    // The killed replica's command outlived it (SIGKILL leaves no chance to stop it).
    let _ = Command::new("pkill").args(["-f", "sleep 601"]).status();
}
