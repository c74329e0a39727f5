//! `podkit lock` and `podkit elect` as processes, each test against both stores (a real
//! 3-member etcd cluster and `podkit store serve`): mutual exclusion of 8 contenders over
//! many rounds, a SIGKILLed holder's lock taken over after its TTL, the command's exit
//! status, leaders replaced after a kill, a resignation or a pause. Then what is proper to
//! each store: an etcd member stopped, the embedded store killed and restarted, etcdctl
//! against the embedded store.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::stores::OwnerStore;
use common::*;
use serde_json::Value;

on_both_stores!(
    eight_contenders_increment_a_shared_counter_exactly,
    the_commands_status_and_a_killed_holders_lock_after_its_ttl,
    a_new_leader_after_a_kill_and_after_a_resignation,
    a_paused_leader_is_replaced_fenced_off_and_stops_its_command_when_resumed,
);

/// A number unique to the test and store, for `sleep N` commands: cleaning up one test's
/// orphans leaves the others' alone.
fn sleep_for(base: u32, store: &OwnerStore) -> u32 {
    match store {
        OwnerStore::Etcd(_) => base,
        OwnerStore::Embedded(_) => base + 50,
    }
}

fn eight_contenders_increment_a_shared_counter_exactly(store: OwnerStore) {
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
                store = store.url(),
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

fn the_commands_status_and_a_killed_holders_lock_after_its_ttl(owner_store: OwnerStore) {
    let store = owner_store.url();
    let status = Command::new(PODKIT)
        .args([
            "lock", "status", "--store", &store, "--", "sh", "-c", "exit 7",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));

    let sleep = sleep_for(61, &owner_store).to_string();
    let mut holder = Command::new(PODKIT)
        .args([
            "lock", "held", "--store", &store, "--ttl", "2s", "--", "sleep", &sleep,
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
    let _ = Command::new("pkill")
        .args(["-f", &format!("^sleep {sleep}$")])
        .status();
}

/// One `podkit elect` replica.
struct Replica {
    child: Child,
    admin: std::net::SocketAddr,
}

impl Replica {
    /// A replica whose command is `sleep <sleep>`: each test picks its own number, so
    /// that cleaning up one test's orphans leaves the others' alone.
    fn start(store: &OwnerStore, id: &str, dir: &Path, sleep: u32) -> Replica {
        let admin = free_addr();
        let child = Command::new(PODKIT)
            .args([
                "elect", "leader", "--id", id, "--ttl", "2s", "--grace", "2s",
            ])
            .args(["--store", &store.url(), "--admin", &admin.to_string()])
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

fn a_new_leader_after_a_kill_and_after_a_resignation(store: OwnerStore) {
    let dir = tempfile::tempdir().unwrap();
    let sleep = sleep_for(601, &store);
    let mut replicas: Vec<Replica> = ["r0", "r1", "r2"]
        .iter()
        .map(|id| Replica::start(&store, id, dir.path(), sleep))
        .collect();
    let mut leader = None;
    assert!(eventually(Duration::from_secs(10), || {
        leader = the_leader(&replicas);
        leader.is_some()
    }));
    let view = replicas[leader.unwrap()].view();
    let mut token = view["leader"]["token"].as_i64().unwrap();
    // Every replica agrees on who leads.
    for r in &replicas {
        assert_eq!(r.view()["leader"]["id"], view["leader"]["id"]);
    }

    // Killed, three times over: each time a new leader within TTL + one retry, with a
    // higher token; a fresh replica takes the dead one's place.
    const KILLS: usize = 3;
    for round in 0..KILLS {
        let killed = the_leader(&replicas).expect("one leader");
        let killed_at = Instant::now();
        let _ = replicas[killed].child.kill();
        let _ = replicas[killed].child.wait();
        drop(replicas.remove(killed));
        let mut next = None;
        assert!(
            eventually(Duration::from_secs(8), || {
                next = the_leader(&replicas);
                next.is_some()
            }),
            "round {round}"
        );
        assert!(
            killed_at.elapsed() < Duration::from_secs(5),
            "round {round}: {:?}",
            killed_at.elapsed()
        );
        let new_token = replicas[next.unwrap()].view()["leader"]["token"]
            .as_i64()
            .unwrap();
        assert!(new_token > token, "round {round}");
        token = new_token;
        let id = format!("r{}", 3 + round);
        replicas.push(Replica::start(&store, &id, dir.path(), sleep));
    }

    // Resigned (SIGTERM): another replica leads within a second (as seen by polling the
    // replicas' /leader every 50 ms).
    let resigning = the_leader(&replicas).expect("one leader");
    let resigned_at = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &replicas[resigning].child.id().to_string()])
        .status();
    assert!(replicas[resigning].child.wait().unwrap().code().is_some());
    replicas.remove(resigning);
    assert!(eventually(Duration::from_secs(3), || the_leader(&replicas).is_some()));
    assert!(
        resigned_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        resigned_at.elapsed()
    );
    // Each leader's command wrote one line when it started (the last may still be on
    // its way): the first, one per kill, and the one after the resignation.
    let leaders = || std::fs::read_to_string(dir.path().join("leaders")).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(5), || leaders().lines().count()
            == KILLS + 2),
        "{}",
        leaders()
    );
    // Commands die with their podkit; this only tidies up after a failed assertion.
    let _ = Command::new("pkill")
        .args(["-f", &format!("^sleep {sleep}$")])
        .status();
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

fn a_paused_leader_is_replaced_fenced_off_and_stops_its_command_when_resumed(
    owner_store: OwnerStore,
) {
    use podkit_owner::fence::Fence;
    use podkit_owner::store::Store;
    use podkit_testkit::Signal;

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests");
    // The leader's command sends a request (its id and token) every 50 ms.
    let spawn = |id: &str| {
        Command::new(PODKIT)
            .args(["elect", "shard", "--id", id, "--ttl", "2s", "--grace", "1s"])
            .args(["--store", &owner_store.url(), "--admin", "127.0.0.1:0", "--log-format", "text", "--"])
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
    let first = spawn("r1");
    assert!(eventually(Duration::from_secs(10), || std::fs::metadata(
        &log
    )
    .is_ok()));
    let second = spawn("r2");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store_handle = runtime
        .block_on(Store::connect(&owner_store.url()))
        .unwrap();
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
    let mut leader_token = before[0].1;

    // Twice: the leader's sidecar is paused past its TTL while its command keeps
    // sending with its token; the other replica takes over; the paused one, resumed,
    // stops its command. Then the roles swap.
    let ids = ["r1", "r2"];
    let mut children = [first, second];
    let mut leader = 0;
    for round in 0..2 {
        let (paused, next) = (ids[leader], ids[1 - leader]);
        nix_signal(children[leader].id(), Signal::SIGSTOP);
        let mut seen = Vec::new();
        assert!(
            eventually(Duration::from_secs(10), || {
                seen.extend(admit_all(&mut offset));
                seen.iter().any(|(id, _, ok)| id == next && *ok)
            }),
            "round {round}: {seen:?}"
        );
        // Keep the paused leader's stale requests flowing for a while after the takeover.
        std::thread::sleep(Duration::from_millis(500));
        seen.extend(admit_all(&mut offset));
        let takeover = seen.iter().position(|(id, _, _)| id == next).unwrap();
        let stale: Vec<_> = seen[takeover..]
            .iter()
            .filter(|(id, _, _)| id == paused)
            .collect();
        assert!(
            !stale.is_empty(),
            "round {round}: {paused}'s command kept sending while its sidecar was paused"
        );
        assert_eq!(
            stale.iter().filter(|(_, _, ok)| *ok).count(),
            0,
            "round {round}: accepted stale writes: {stale:?}"
        );
        assert!(stale.iter().all(|(_, token, _)| *token == leader_token));
        let new_token = seen[takeover].1;
        assert!(new_token > leader_token, "round {round}");

        // Resumed: it learns it lost the lease and stops its command at once.
        nix_signal(children[leader].id(), Signal::SIGCONT);
        std::thread::sleep(Duration::from_millis(1500));
        admit_all(&mut offset);
        std::thread::sleep(Duration::from_millis(500));
        let after = admit_all(&mut offset);
        assert!(
            after.iter().all(|(id, _, _)| id == next),
            "round {round}: {after:?}"
        );
        assert!(
            after.iter().all(|(_, _, ok)| *ok),
            "round {round}: {after:?}"
        );
        leader = 1 - leader;
        leader_token = new_token;
    }

    for child in &mut children {
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
    let mut store = OwnerStore::etcd();
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::start(&store, "only", dir.path(), 602);
    assert!(eventually(Duration::from_secs(10), || replica.view()
        ["is_leader"]
        == true));
    let token = replica.view()["leader"]["token"].clone();
    let OwnerStore::Etcd(cluster) = &mut store else {
        unreachable!()
    };
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
        .args(["lock", "other", "--store", &store.url(), "--", "true"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    drop(replica);
    let _ = Command::new("pkill").args(["-f", "^sleep 602$"]).status();
}

#[test]
fn the_embedded_store_killed_mid_run_keeps_every_acknowledged_write_and_lease() {
    use podkit_owner::store::Store;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut owner_store = OwnerStore::embedded();
    let url = owner_store.url();
    // A leader whose lease must outlive the store's crash and restart.
    let dir = tempfile::tempdir().unwrap();
    let admin = free_addr();
    let mut leader = Command::new(PODKIT)
        .args(["elect", "steady", "--id", "steady", "--ttl", "6s"])
        .args(["--store", &url, "--admin", &admin.to_string()])
        .args(["--log-format", "text", "--", "sleep", "604"])
        .stdout(std::fs::File::create(dir.path().join("elect.log")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let view = || -> Value {
        podkit_testkit::probe::http_get(admin, "/leader")
            .map(|r| serde_json::from_slice(&r.body).unwrap_or_default())
            .unwrap_or_default()
    };
    assert!(eventually(Duration::from_secs(10), || view()["is_leader"] == true));
    let token = view()["leader"]["token"].clone();

    // A writer that records every write the store acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acknowledged, stop, url) = (acknowledged.clone(), stop.clone(), url.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let store = Store::connect(&url).await.unwrap();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("acked/{n:06}");
                    if store.create(&key, b"v", 0).await.is_ok() {
                        acknowledged.lock().unwrap().push(key);
                    }
                    n += 1;
                }
            });
        })
    };
    assert!(eventually(Duration::from_secs(10), || acknowledged
        .lock()
        .unwrap()
        .len()
        >= 50));
    let OwnerStore::Embedded(embedded) = &mut owner_store else {
        unreachable!()
    };
    embedded.server.process().kill();
    let acked_before_crash = acknowledged.lock().unwrap().len();
    embedded.server.process().restart_process().unwrap();
    embedded
        .server
        .wait_ready()
        .unwrap_or_else(|e| panic!("{e}\n{}", embedded.server.output()));
    assert!(eventually(Duration::from_secs(10), || acknowledged
        .lock()
        .unwrap()
        .len()
        >= acked_before_crash + 50));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(Store::connect(&url)).unwrap();
    let (entries, _) = runtime.block_on(store.prefix("acked/")).unwrap();
    let stored: std::collections::BTreeSet<String> = entries.into_iter().map(|e| e.key).collect();
    let acknowledged = acknowledged.lock().unwrap();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|k| !stored.contains(*k))
        .collect();
    assert!(lost.is_empty(), "acknowledged, then lost: {lost:?}");

    // The lease survived: the same leader, with the same token.
    let after = view();
    assert_eq!(after["is_leader"], true, "{after}");
    assert_eq!(after["leader"]["token"], token);
    let _ = leader.kill();
    let _ = leader.wait();
    let _ = Command::new("pkill").args(["-f", "^sleep 604$"]).status();
}

#[test]
fn etcdctl_puts_gets_transacts_and_leases_against_the_embedded_store() {
    let store = OwnerStore::embedded();
    let OwnerStore::Embedded(embedded) = &store else {
        unreachable!()
    };
    let endpoint = format!("--endpoints={}", embedded.listen);
    let etcdctl = |args: &[&str], input: Option<&str>| -> String {
        use std::io::Write;
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(&endpoint)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl (Debian package etcd-client)");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.unwrap_or("").as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(etcdctl(&["put", "greeting", "hello"], None), "OK\n");
    assert_eq!(etcdctl(&["get", "greeting"], None), "greeting\nhello\n");
    let json: Value =
        serde_json::from_str(&etcdctl(&["get", "greeting", "-w", "json"], None)).unwrap();
    assert_eq!(json["kvs"][0]["version"], 1);
    assert_eq!(json["count"], 1);

    // A transaction: compare on the value, then one branch.
    let txn = "value(\"greeting\") = \"hello\"\n\nput greeting bonjour\n\nput greeting nope\n\n";
    assert!(etcdctl(&["txn"], Some(txn)).starts_with("SUCCESS"));
    assert_eq!(
        etcdctl(&["get", "greeting", "--print-value-only"], None),
        "bonjour\n"
    );
    // The compare fails now: the failure branch runs.
    assert!(etcdctl(&["txn"], Some(txn)).starts_with("FAILURE"));
    assert_eq!(
        etcdctl(&["get", "greeting", "--print-value-only"], None),
        "nope\n"
    );

    // Reads and watches in the past, from the history the store keeps.
    assert_eq!(
        etcdctl(
            &["get", "greeting", "--rev", "1", "--print-value-only"],
            None
        ),
        "hello\n"
    );
    let mut watch = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&endpoint, "watch", "greeting", "--rev", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let _ = watch.kill();
    let watched = String::from_utf8(watch.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(
        watched,
        "PUT\ngreeting\nhello\nPUT\ngreeting\nbonjour\nPUT\ngreeting\nnope\n"
    );

    // A lease with a key attached; revoking it deletes the key.
    let granted = etcdctl(&["lease", "grant", "60"], None);
    let lease = granted.split_whitespace().nth(1).unwrap().to_string();
    assert!(granted.contains("granted with TTL(60s)"), "{granted}");
    assert_eq!(
        etcdctl(&["put", "--lease", &lease, "session", "s1"], None),
        "OK\n"
    );
    let ttl = etcdctl(&["lease", "timetolive", "--keys", &lease], None);
    assert!(ttl.contains("attached keys([session])"), "{ttl}");
    assert!(etcdctl(&["lease", "list"], None).contains(&lease));
    assert!(etcdctl(&["lease", "keep-alive", "--once", &lease], None).contains("TTL(60)"));
    etcdctl(&["lease", "revoke", &lease], None);
    assert_eq!(etcdctl(&["get", "session"], None), "");
    assert_eq!(etcdctl(&["del", "greeting"], None), "1\n");
    let status: Value =
        serde_json::from_str(&etcdctl(&["endpoint", "status", "-w", "json"], None)).unwrap();
    let status = &status[0]["Status"];
    assert_eq!(status["leader"], status["header"]["member_id"], "{status}");
    assert!(status["version"]
        .as_str()
        .unwrap()
        .starts_with("3.4.0+podkit"));
    // etcdctl's health check is a read; it reports on stderr.
    let health = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&endpoint, "endpoint", "health"])
        .output()
        .unwrap();
    assert!(health.status.success());
    assert!(String::from_utf8_lossy(&health.stderr).contains("is healthy"));
}

#[test]
fn the_embedded_store_keeps_the_component_contract() {
    let help = Command::new(PODKIT)
        .args(["store", "serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "PODKIT_STORE_DATA",
        "PODKIT_STORE_LISTEN",
        "not a replicated one",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
    let bad = Command::new(PODKIT)
        .args(["store", "serve", "--data", "/proc/podkit-nowhere"])
        .args(["--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("podkit: error: --data: "), "{stderr}");

    let mut store = OwnerStore::embedded();
    // A follower and a leader keep watch and keep-alive streams open.
    let dir = tempfile::tempdir().unwrap();
    let replicas: Vec<Replica> = ["c1", "c2"]
        .iter()
        .map(|id| Replica::start(&store, id, dir.path(), 605))
        .collect();
    assert!(eventually(Duration::from_secs(10), || the_leader(
        &replicas
    )
    .is_some()));
    let OwnerStore::Embedded(embedded) = &mut store else {
        unreachable!()
    };
    assert_promtool_clean(embedded.server.admin);
    let metrics = get(embedded.server.admin, "/metrics").text();
    assert!(metrics.contains("grpc_method=\"Watch\""), "{metrics}");
    // SIGTERM ends the open streams and exits 0 well within the drain timeout.
    let started = Instant::now();
    let status = embedded.server.terminate(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(replicas);
    let _ = Command::new("pkill").args(["-f", "^sleep 605$"]).status();
}
