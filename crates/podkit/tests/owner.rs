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
    // Anchored: other tests' processes mention other sleeps.
    let _ = Command::new("pkill").args(["-f", "^sleep 61.5$"]).status();
}

/// One `podkit elect` replica.
struct Replica {
    child: Child,
    admin: std::net::SocketAddr,
}

impl Replica {
    /// A replica whose command is `sleep <sleep>`: each test picks its own number, so
    /// that cleaning up one test's orphans leaves the others' alone.
    fn start(cluster: &EtcdCluster, id: &str, dir: &Path, sleep: u32) -> Replica {
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
                &format!(
                    "echo $PODKIT_LEADER_ID $PODKIT_FENCING_TOKEN >> leaders; exec sleep {sleep}"
                ),
            ])
            .current_dir(dir)
            .stdout(std::fs::File::create(dir.join(format!("{id}.log"))).unwrap())
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
        .map(|id| Replica::start(&cluster, id, dir.path(), 601))
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
    // Each leader's command wrote one line when it started (the last may still be on
    // its way).
    let leaders = || std::fs::read_to_string(dir.path().join("leaders")).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(5), || leaders().lines().count() == 3),
        "{}",
        leaders()
    );
    // Commands die with their podkit; this only tidies up after a failed assertion.
    let _ = Command::new("pkill").args(["-f", "^sleep 601$"]).status();
}

/// Lines `id token` the leaders' commands wrote, from `offset` on.
fn requests(file: &Path, offset: &mut usize) -> Vec<(String, i64)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let complete = text[*offset..].rfind('\n').map_or(0, |n| n + 1);
    let new = &text[*offset..*offset + complete];
    *offset += complete;
    new.lines()
        .filter_map(|l| {
            let (id, token) = l.split_once(' ')?;
            Some((id.to_string(), token.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_paused_leader_is_replaced_fenced_off_and_stops_its_command_when_resumed() {
    use podkit_owner::fence::Fence;
    use podkit_owner::store::Store;
    use podkit_testkit::Signal;

    let cluster = EtcdCluster::start(3).expect("etcd-server");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests");
    // The leader's command sends a request (its id and token) every 50 ms.
    let spawn = |id: &str| {
        Command::new(PODKIT)
            .args(["elect", "shard", "--id", id, "--ttl", "2s", "--grace", "1s"])
            .args(["--store", &store(&cluster), "--admin", "127.0.0.1:0", "--log-format", "text", "--"])
            .args([
                "sh",
                "-c",
                &format!(
                    "while true; do echo \"$PODKIT_LEADER_ID $PODKIT_FENCING_TOKEN\" >> {}; sleep 0.05; done",
                    log.display()
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = spawn("r1");
    assert!(eventually(Duration::from_secs(10), || std::fs::metadata(
        &log
    )
    .is_ok()));
    let mut second = spawn("r2");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store_handle = runtime.block_on(Store::connect(&store(&cluster))).unwrap();
    let fence = Fence::new(store_handle.clone(), "shard");
    let mut offset = 0;
    let admit_all = |offset: &mut usize| -> Vec<(String, i64, bool)> {
        requests(&log, offset)
            .into_iter()
            .map(|(id, token)| {
                let ok = runtime.block_on(fence.admit(&id, token)).unwrap();
                (id, token, ok)
            })
            .collect()
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = admit_all(&mut offset);
    assert!(!before.is_empty() && before.iter().all(|(id, _, ok)| id == "r1" && *ok));
    let old_token = before[0].1;

    // r1's sidecar is paused past its TTL; its command keeps sending with the old token.
    nix_signal(first.id(), Signal::SIGSTOP);
    let mut seen = Vec::new();
    assert!(eventually(Duration::from_secs(10), || {
        seen.extend(admit_all(&mut offset));
        seen.iter().any(|(id, _, ok)| id == "r2" && *ok)
    }));
    // Keep r1's stale requests flowing for a while after r2 took over.
    std::thread::sleep(Duration::from_millis(500));
    seen.extend(admit_all(&mut offset));
    let takeover = seen.iter().position(|(id, _, _)| id == "r2").unwrap();
    let stale: Vec<_> = seen[takeover..]
        .iter()
        .filter(|(id, _, _)| id == "r1")
        .collect();
    assert!(
        !stale.is_empty(),
        "r1's command kept sending while its sidecar was paused"
    );
    assert_eq!(
        stale.iter().filter(|(_, _, ok)| *ok).count(),
        0,
        "accepted stale writes: {stale:?}"
    );
    assert!(stale.iter().all(|(_, token, _)| *token == old_token));

    // Resumed: r1 learns it lost the lease and stops its command at once.
    nix_signal(first.id(), Signal::SIGCONT);
    std::thread::sleep(Duration::from_millis(1500));
    admit_all(&mut offset);
    std::thread::sleep(Duration::from_millis(500));
    let after = admit_all(&mut offset);
    assert!(after.iter().all(|(id, _, _)| id == "r2"), "{after:?}");
    assert!(after.iter().all(|(_, _, ok)| *ok));

    for child in [&mut first, &mut second] {
        nix_signal(child.id(), Signal::SIGTERM);
        let _ = child.wait();
    }
}

fn nix_signal(pid: u32, signal: podkit_testkit::Signal) {
    let _ = Command::new("kill")
        .args([&format!("-{}", signal as i32), &pid.to_string()])
        .status();
}

#[test]
fn stopping_one_etcd_member_of_three_changes_nothing_visible() {
    let mut cluster = EtcdCluster::start(3).expect("etcd-server");
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::start(&cluster, "only", dir.path(), 602);
    assert!(eventually(Duration::from_secs(10), || replica.view()
        ["is_leader"]
        == true));
    let token = replica.view()["leader"]["token"].clone();
    cluster.members[0].process().stop();
    // Longer than the TTL: the lease keeps being renewed through the other members.
    std::thread::sleep(Duration::from_secs(4));
    let log = std::fs::read_to_string(dir.path().join("only.log")).unwrap_or_default();
    let view = serde_json::from_slice::<Value>(
        &podkit_testkit::probe::http_get(replica.admin, "/leader")
            .unwrap_or_else(|e| panic!("{e}\n{log}"))
            .body,
    )
    .unwrap();
    assert_eq!(view["is_leader"], true, "{view}");
    assert_eq!(view["leader"]["token"], token);
    let status = Command::new(PODKIT)
        .args(["lock", "other", "--store", &store(&cluster), "--", "true"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    drop(replica);
    let _ = Command::new("pkill").args(["-f", "^sleep 602$"]).status();
}
