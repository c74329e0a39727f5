//! Chapter 10's work queue: the sources' API, and the manager run as a batch job against
//! real sources and real worker processes (retries, timeouts, failed items, crash safety,
//! a large source).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use podkit_testkit::podkit::Podkit;
use serde_json::{json, Value};

fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let response = get(addr, path);
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, value)
}

fn start_source(kind: &str, path: &Path, extra: &[&str]) -> (Podkit, SocketAddr) {
    let mut args = vec!["source", kind, "--path", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    start(&args)
}

/// Writes an items file of `names`, each with data `{"n": i}`.
fn items_file(path: &Path, names: &[String]) {
    let mut text = String::new();
    for (i, name) in names.iter().enumerate() {
        text.push_str(&json!({"name": name, "data": {"n": i}}).to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// A temporary directory with an items file of `names`, served by `podkit source file`.
fn items_source(names: &[String]) -> (tempfile::TempDir, Podkit, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let items = dir.path().join("items.jsonl");
    items_file(&items, names);
    let (source, addr) = start_source("file", &items, &[]);
    (dir, source, addr)
}

/// `podkit queue run` as a batch job (`--exit-when-done`), killed if it runs past
/// `limit` (a hang is a failure, not a timing claim).
fn run_batch(
    source: SocketAddr,
    state: &Path,
    worker: &str,
    extra: &[&str],
    limit: Duration,
) -> Output {
    let mut command = Command::new(PODKIT);
    command
        .args(["queue", "run", "--source", &format!("http://{source}")])
        .args(["--state", state.to_str().unwrap(), "--worker", worker])
        .args([
            "--poll",
            "200ms",
            "--exit-when-done",
            "--admin",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "text"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("podkit queue run");
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return false;
            }
        }
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        true
    });
    let output = child.wait_with_output().unwrap();
    let killed = watchdog.join().unwrap();
    assert!(
        !killed,
        "the manager did not finish within {limit:?}: {}",
        text(&output)
    );
    output
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `podkit queue run` as a service (no `--exit-when-done`), ready.
fn start_manager(source: &str, state: &Path, worker: &str, extra: &[&str]) -> Podkit {
    let state = state.to_str().unwrap();
    let mut args = vec!["queue", "run", "--source", source, "--state", state];
    args.extend(["--worker", worker, "--log-format", "text"]);
    args.extend_from_slice(extra);
    let mut manager = Podkit::start(Path::new(PODKIT), &args).expect("podkit queue run");
    manager
        .wait_ready()
        .unwrap_or_else(|e| panic!("{e}\n{}", manager.output()));
    manager
}

fn queue_command(args: &[&str]) -> (ExitStatus, String) {
    let output = Command::new(PODKIT)
        .arg("queue")
        .args(args)
        .output()
        .unwrap();
    (output.status, text(&output))
}

#[test]
fn source_dir_serves_matching_files_with_their_metadata() {
    let dir = tempfile::tempdir().unwrap();
    for (name, size) in [
        ("a.mp4", 10),
        ("b c.mp4", 3),
        ("notes.txt", 5),
        (".hidden.mp4", 1),
    ] {
        std::fs::write(dir.path().join(name), vec![b'x'; size]).unwrap();
    }
    std::fs::create_dir(dir.path().join("sub.mp4")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("a.mp4"), dir.path().join("link.mp4")).unwrap();
    let (_source, addr) = start_source("dir", dir.path(), &["--glob", "*.mp4"]);
    let (status, list) = get_json(addr, "/api/v1/items");
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!({"kind": "ItemList", "apiVersion": "v1", "items": ["a.mp4", "b c.mp4", "link.mp4"]})
    );
    let (status, item) = get_json(addr, "/api/v1/items/b%20c.mp4");
    assert_eq!(status, 200, "{item}");
    assert_eq!(
        (item["kind"].clone(), item["apiVersion"].clone()),
        (json!("Item"), json!("v1"))
    );
    let data = &item["data"];
    assert_eq!(data["size"], 3);
    let canonical = std::fs::canonicalize(dir.path().join("b c.mp4")).unwrap();
    assert_eq!(data["path"], json!(canonical.to_str().unwrap()));
    assert!(
        humantime::parse_rfc3339(data["modified"].as_str().unwrap()).is_ok(),
        "{data}"
    );
    for missing in [
        "notes.txt",
        "sub.mp4",
        ".hidden.mp4",
        "..%2Fetc%2Fpasswd",
        "nope.mp4",
    ] {
        assert_eq!(
            get(addr, &format!("/api/v1/items/{missing}")).status,
            404,
            "{missing}"
        );
    }
    // A file added later is listed.
    std::fs::write(dir.path().join("c.mp4"), b"x").unwrap();
    let (_, list) = get_json(addr, "/api/v1/items");
    assert_eq!(
        list["items"],
        json!(["a.mp4", "b c.mp4", "c.mp4", "link.mp4"])
    );
}

#[test]
fn source_file_serves_items_and_follows_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.jsonl");
    items_file(&path, &["one".into(), "two/2".into()]);
    let (_source, addr) = start_source("file", &path, &[]);
    let (_, list) = get_json(addr, "/api/v1/items");
    assert_eq!(list["items"], json!(["one", "two/2"]));
    let (status, item) = get_json(addr, "/api/v1/items/two%2F2");
    assert_eq!((status, item["data"].clone()), (200, json!({"n": 1})));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    writeln!(file, "{}", json!({"name": "three", "data": {"x": true}})).unwrap();
    let (_, list) = get_json(addr, "/api/v1/items");
    assert_eq!(list["items"], json!(["one", "two/2", "three"]));
    assert_eq!(get(addr, "/api/v1/items/four").status, 404);
}

#[test]
fn a_bad_items_file_or_glob_exits_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.jsonl");
    std::fs::write(&path, "{\"name\": \"a\"}\nnot json\n").unwrap();
    let output = Command::new(PODKIT)
        .args(["source", "file", "--path", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("podkit: error: --path: ") && stderr.contains("items.jsonl:2"),
        "{stderr}"
    );
    let output = Command::new(PODKIT)
        .args([
            "source",
            "dir",
            "--path",
            dir.path().to_str().unwrap(),
            "--glob",
            "[ab",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--glob"));
}

#[test]
fn every_item_runs_once_with_its_data_in_a_private_file() {
    let names: Vec<String> = (0..20).map(|i| format!("item {i}")).collect();
    let (dir, _source, addr) = items_source(&names);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let state = dir.path().join("state");
    // The worker records the file's mode and content, and where it was.
    let worker = format!(
        "stat -c %a \"$WORK_ITEM_FILE\" > \"{out}/$WORK_ITEM_NAME.mode\" && \
         cat \"$WORK_ITEM_FILE\" >> \"{out}/$WORK_ITEM_NAME.data\" && \
         echo \"$WORK_ITEM_FILE\" > \"{out}/$WORK_ITEM_NAME.path\"",
        out = out.display()
    );
    let output = run_batch(
        addr,
        &state,
        &worker,
        &["--parallelism", "4"],
        Duration::from_secs(60),
    );
    assert!(output.status.success(), "{}", text(&output));
    for (i, name) in names.iter().enumerate() {
        let read = |ext: &str| std::fs::read_to_string(out.join(format!("{name}.{ext}"))).unwrap();
        assert_eq!(read("mode").trim(), "600", "{name}");
        let data: Value = serde_json::from_str(read("data").trim()).unwrap();
        assert_eq!(data, json!({"n": i}), "{name} ran once, with its data");
        assert!(
            !Path::new(read("path").trim()).exists(),
            "the item file is removed"
        );
    }
    // Run again: everything is remembered as done, nothing runs.
    let output = run_batch(addr, &state, &worker, &[], Duration::from_secs(60));
    assert!(output.status.success(), "{}", text(&output));
    for name in &names {
        let data = std::fs::read_to_string(out.join(format!("{name}.data"))).unwrap();
        assert_eq!(data.lines().count(), 1, "{name} ran again");
    }
    let (status, report) = queue_command(&["status", "--state", state.to_str().unwrap()]);
    assert!(status.success());
    assert!(report.contains("20 done, 0 failed"), "{report}");
}

#[test]
fn managers_sharing_a_work_dir_keep_their_item_files_apart() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let sides = ["a", "b"];
    let sources: Vec<(Podkit, SocketAddr)> = sides
        .iter()
        .map(|side| {
            let items = dir.path().join(format!("{side}.jsonl"));
            let text: String = (0..12)
                .map(|n| {
                    let item =
                        json!({"name": format!("{side}-{n}"), "data": {"side": side, "n": n}});
                    format!("{item}\n")
                })
                .collect();
            std::fs::write(&items, text).unwrap();
            start_source("file", &items, &[])
        })
        .collect();
    // Each worker reads its item file a moment after it starts, while the other
    // manager's workers run beside it in the same directory.
    let worker = format!(
        "sleep 0.05; cat \"$WORK_ITEM_FILE\" > \"{out}/$WORK_ITEM_NAME.data\"",
        out = out.display()
    );
    let runs: Vec<_> = sources
        .iter()
        .zip(sides)
        .map(|((_, addr), side)| {
            let (addr, worker, work) = (*addr, worker.clone(), work.clone());
            let state = dir.path().join(format!("state-{side}"));
            std::thread::spawn(move || {
                let work_dir = ["--work-dir", work.to_str().unwrap(), "--parallelism", "3"];
                run_batch(addr, &state, &worker, &work_dir, Duration::from_secs(60))
            })
        })
        .collect();
    for run in runs {
        let output = run.join().unwrap();
        assert!(output.status.success(), "{}", text(&output));
    }
    for side in sides {
        for n in 0..12 {
            let name = format!("{side}-{n}");
            let data = std::fs::read_to_string(out.join(format!("{name}.data"))).unwrap();
            let data: Value = serde_json::from_str(data.trim()).unwrap();
            assert_eq!(
                data,
                json!({"side": side, "n": n}),
                "{name} read its own data"
            );
        }
    }
}

#[test]
fn failures_are_retried_then_parked_and_retry_revives_them() {
    let names: Vec<String> = ["good-1", "bad-1", "good-2", "bad-2"]
        .map(String::from)
        .to_vec();
    let (dir, _source, addr) = items_source(&names);
    let state = dir.path().join("state");
    let fail_bad = "case \"$WORK_ITEM_NAME\" in bad-*) echo broken >&2; exit 3;; esac";
    let output = run_batch(
        addr,
        &state,
        fail_bad,
        &["--max-attempts", "2", "--retry-backoff", "100ms"],
        Duration::from_secs(60),
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("2 item(s) failed after 2 attempt(s): bad-1, bad-2"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(state.join("logs/bad-1.log")).unwrap();
    assert_eq!(log.matches("failed: exit status 3").count(), 2, "{log}");
    assert_eq!(
        log.lines().filter(|l| *l == "broken").count(),
        2,
        "the worker's stderr: {log}"
    );
    let state_s = state.to_str().unwrap();
    let (_, report) = queue_command(&["status", "--state", state_s, "--max-attempts", "2"]);
    assert!(report.contains("2 done, 2 failed"), "{report}");
    assert!(report.contains("failed: bad-1 (exit status 3)"), "{report}");
    let (status, said) = queue_command(&["retry", "--state", state_s, "--max-attempts", "2"]);
    assert!(status.success(), "{said}");
    assert!(said.starts_with("2 item(s)"), "{said}");
    // Fixed worker: the revived items run and the batch ends well.
    let output = run_batch(
        addr,
        &state,
        "true",
        &["--max-attempts", "2"],
        Duration::from_secs(60),
    );
    assert!(output.status.success(), "{}", text(&output));
    let (_, report) = queue_command(&["status", "--state", state_s, "--max-attempts", "2"]);
    assert!(report.contains("4 done, 0 failed"), "{report}");
}

#[test]
fn retry_reaches_a_running_manager() {
    let names: Vec<String> = ["ok-1", "flaky-1", "ok-2"].map(String::from).to_vec();
    let (dir, _source, addr) = items_source(&names);
    let state = dir.path().join("state");
    let fixed = dir.path().join("fixed");
    // flaky-1 fails until the file `fixed` exists.
    let worker = format!(
        "case \"$WORK_ITEM_NAME\" in flaky-*) test -e {} || exit 5;; esac",
        fixed.display()
    );
    let _manager = start_manager(
        &format!("http://{addr}"),
        &state,
        &worker,
        &["--poll", "200ms", "--max-attempts", "1"],
    );
    let state_s = state.to_str().unwrap();
    // A mistyped state directory is an error, not a new empty one.
    let typo = dir.path().join("stat");
    let (status, said) = queue_command(&["status", "--state", typo.to_str().unwrap()]);
    assert!(
        !status.success() && said.contains("no such state directory"),
        "{said}"
    );
    assert!(!typo.exists());
    let counts = |want: &str| {
        eventually(Duration::from_secs(20), || {
            queue_command(&["status", "--state", state_s])
                .1
                .contains(want)
        })
    };
    assert!(counts("2 done, 1 failed"), "flaky-1 is parked as failed");
    std::fs::write(&fixed, "").unwrap();
    let (status, said) = queue_command(&["retry", "--state", state_s, "flaky-1"]);
    assert!(status.success(), "{said}");
    assert!(
        said.contains("1 item(s): recorded by the running manager"),
        "{said}"
    );
    assert!(
        counts("3 done, 0 failed"),
        "the revived item ran and passed"
    );
    let log = std::fs::read_to_string(state.join("logs/flaky-1.log")).unwrap();
    assert!(log.contains("failed: exit status 5"), "{log}");
}

#[test]
fn a_worker_past_its_timeout_is_stopped_with_its_children() {
    let (dir, _source, addr) = items_source(&["slow".to_string()]);
    let state = dir.path().join("state");
    let marker = dir.path().join("child-survived");
    // A worker whose child would write the marker if it outlived the timeout.
    let worker = format!("(sleep 3; touch {}) & sleep 60", marker.display());
    let output = run_batch(
        addr,
        &state,
        &worker,
        &["--timeout", "500ms", "--max-attempts", "1"],
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let log = std::fs::read_to_string(state.join("logs/slow.log")).unwrap();
    assert!(log.contains("timed out after 500ms"), "{log}");
    std::thread::sleep(Duration::from_secs(4));
    assert!(!marker.exists(), "the worker's child was left running");
}

#[test]
fn a_killed_manager_takes_its_workers_with_it() {
    let (dir, _source, addr) = items_source(&["long".to_string()]);
    let pids = dir.path().join("pids");
    // The worker, and a child it leaves in the background.
    let worker = format!(
        "sleep 3008 & echo $! $$ > {}; exec sleep 3007",
        pids.display()
    );
    let mut manager = start_manager(
        &format!("http://{addr}"),
        &dir.path().join("state"),
        &worker,
        &[],
    );
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&pids).is_ok_and(|t| t.ends_with('\n'))
    }));
    let pids: Vec<String> = std::fs::read_to_string(&pids)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    // Running, and not dead (a zombie counts as dead).
    let alive = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| !s.trim_start().starts_with('Z'))
        })
    };
    assert!(pids.iter().all(|p| alive(p)), "{pids:?}");
    // SIGKILL to the manager's whole process group, as a crash or an OOM kill.
    manager.process().kill();
    assert!(
        eventually(Duration::from_secs(5), || !pids.iter().any(|p| alive(p))),
        "workers {pids:?} outlived their manager"
    );
    let _ = Command::new("pkill")
        .args(["-f", "^sleep 300[78]$"])
        .status();
}

#[test]
fn a_malformed_source_is_reported_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    // A static site whose /api/v1/items is not an ItemList.
    std::fs::create_dir_all(dir.path().join("site/api/v1")).unwrap();
    std::fs::write(
        dir.path().join("site/api/v1/items"),
        r#"{"kind":"Pods","apiVersion":"v1","items":[]}"#,
    )
    .unwrap();
    let site = free_addr();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &site.port().to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(dir.path().join("site"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 (Debian package python3)");
    assert!(eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(site).is_ok()
    }));
    let state = dir.path().join("state");
    let manager = start_manager(
        &format!("http://{site}"),
        &state,
        "true",
        &["--poll", "200ms"],
    );
    assert!(eventually(Duration::from_secs(10), || {
        metric(manager.admin, "podkit_queue_source_errors", &[]).unwrap_or(0.0) >= 2.0
    }));
    let output = manager.output();
    assert!(
        output.contains("\"kind\" is \"Pods\", expected \"ItemList\""),
        "{output}"
    );
    assert_promtool_clean(manager.admin);
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_manager_killed_at_any_moment_loses_nothing_and_reruns_only_running_items() {
    let names: Vec<String> = (0..120).map(|i| format!("job-{i:03}")).collect();
    let (dir, _source, addr) = items_source(&names);
    let state = dir.path().join("state");
    let runs = dir.path().join("runs.log");
    let parallelism = 4;
    let worker = format!("sleep 0.05; echo \"$WORK_ITEM_NAME\" >> {}", runs.display());
    let mut kills = 0;
    let mut rng = fastrand::Rng::with_seed(7);
    loop {
        let mut child = Command::new(PODKIT)
            .args(["queue", "run", "--source", &format!("http://{addr}")])
            .args(["--state", state.to_str().unwrap(), "--worker", &worker])
            .args([
                "--poll",
                "100ms",
                "--exit-when-done",
                "--admin",
                "127.0.0.1:0",
            ])
            .args(["--parallelism", &parallelism.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(150..600)));
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "the batch failed: {status}");
                break;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                // The worker of a killed manager may still be finishing its line.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        assert!(kills < 200, "the batch never finished");
    }
    let log = std::fs::read_to_string(&runs).unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in log.lines() {
        *counts.entry(line).or_default() += 1;
    }
    for name in &names {
        assert!(
            counts.get(name.as_str()).copied().unwrap_or(0) >= 1,
            "{name} never ran"
        );
    }
    // Only items running, or finished but not yet synced, when a kill came may run
    // twice: besides the running ones, one batch being synced and one waiting for the
    // next sync, so at most three times the parallelism per kill.
    let reruns: usize = counts.values().map(|c| c - 1).sum();
    assert!(
        reruns <= kills * 3 * parallelism,
        "{reruns} reruns after {kills} kills: completed items ran again"
    );
    assert!(
        kills >= 2,
        "the test killed the manager {kills} time(s) only"
    );
    let (_, report) = queue_command(&["status", "--state", state.to_str().unwrap()]);
    assert!(report.contains("120 done, 0 failed"), "{report}");
}

#[test]
fn a_source_of_100000_items_is_diffed_against_the_state_without_trouble() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..100_000).map(|i| format!("item-{i:06}")).collect();
    let items = dir.path().join("items.jsonl");
    items_file(&items, &names);
    // The first 99,990 are already done, as the journal of an earlier podkit recorded
    // them: the manager imports it into its database, then diffs the listing against it.
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mut journal = String::new();
    for name in &names[..99_990] {
        journal.push_str(
            &json!({"event": "done", "item": name, "attempt": 1, "secs": 0.01}).to_string(),
        );
        journal.push('\n');
    }
    std::fs::write(state.join("journal.jsonl"), journal).unwrap();
    let (_source, addr) = start_source("file", &items, &[]);
    let ran = dir.path().join("ran.log");
    let worker = format!("echo \"$WORK_ITEM_NAME\" >> {}", ran.display());
    let output = run_batch(
        addr,
        &state,
        &worker,
        &["--parallelism", "4"],
        Duration::from_secs(120),
    );
    assert!(output.status.success(), "{}", text(&output));
    let ran = std::fs::read_to_string(&ran).unwrap();
    let mut ran: Vec<&str> = ran.lines().collect();
    ran.sort();
    let expected: Vec<&str> = names[99_990..].iter().map(String::as_str).collect();
    assert_eq!(ran, expected, "only the ten new items ran");
}

#[test]
fn filter_and_merge_wrap_other_sources() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.jsonl");
    let second = dir.path().join("second.jsonl");
    std::fs::write(
        &first,
        [
            json!({"name": "a1", "data": {"size": 10, "path": "/v/a1.mp4"}}),
            json!({"name": "a2", "data": {"size": 5000, "path": "/v/a2.mp4"}}),
            json!({"name": "a3", "data": {"size": 9000, "path": "/v/a3.mov"}}),
        ]
        .map(|v| v.to_string() + "\n")
        .concat(),
    )
    .unwrap();
    std::fs::write(
        &second,
        [
            json!({"name": "b1", "data": {"size": 2000, "path": "/w/b1.mp4"}}),
            json!({"name": "a1", "data": {"size": 99999, "path": "/w/a1.mp4"}}),
        ]
        .map(|v| v.to_string() + "\n")
        .concat(),
    )
    .unwrap();
    let (_s1, first) = start_source("file", &first, &[]);
    let (_s2, second) = start_source("file", &second, &[]);
    let (_merge, merged) = start(&[
        "source",
        "merge",
        "--upstream",
        &format!("http://{first}"),
        "--upstream",
        &format!("http://{second}"),
    ]);
    let (_, list) = get_json(merged, "/api/v1/items");
    assert_eq!(
        list,
        json!({"kind": "ItemList", "apiVersion": "v1", "items": ["a1", "a2", "a3", "b1"]})
    );
    let (_, a1) = get_json(merged, "/api/v1/items/a1");
    assert_eq!(
        a1["data"]["size"], 10,
        "a name in both comes from the first upstream"
    );
    assert_eq!(get_json(merged, "/api/v1/items/b1").1["data"]["size"], 2000);
    assert_eq!(get(merged, "/api/v1/items/zz").status, 404);

    let (_filter, filtered) = start(&[
        "source",
        "filter",
        "--upstream",
        &format!("http://{merged}"),
        "--where",
        r#"data.size > 1000 && data.path ~ "\.mp4$""#,
    ]);
    let (_, list) = get_json(filtered, "/api/v1/items");
    assert_eq!(list["items"], json!(["a2", "b1"]));
    assert_eq!(
        get_json(filtered, "/api/v1/items/a2").1["data"]["size"],
        5000
    );
    assert_eq!(
        get(filtered, "/api/v1/items/a1").status,
        404,
        "filtered out"
    );
    assert_eq!(
        get(filtered, "/api/v1/items/a3").status,
        404,
        "filtered out"
    );

    let output = Command::new(PODKIT)
        .args([
            "source",
            "filter",
            "--upstream",
            "http://127.0.0.1:1",
            "--where",
            "data.size >",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "podkit: error: --where: column 12: expected a value, found the end"
    );
}

#[test]
fn the_multi_worker_runs_steps_in_order_and_stops_at_a_failure() {
    let (dir, _source, addr) = items_source(&["ok".to_string(), "stop".to_string()]);
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let steps = [
        r#"cp "$WORK_ITEM_FILE" "$WORK_DIR/copy.json""#.to_string(),
        r#"[ "$WORK_ITEM_NAME" != stop ] || exit 4"#.to_string(),
        format!(
            r#"cat "$WORK_DIR/copy.json" > {}/"$WORK_ITEM_NAME".json"#,
            out.display()
        ),
    ];
    let worker = format!(
        "{} worker multi {}",
        PODKIT,
        steps
            .iter()
            .map(|s| format!("--step {}", quote(s)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output = run_batch(
        addr,
        &state,
        &worker,
        &["--max-attempts", "1"],
        Duration::from_secs(60),
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let ok: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("ok.json")).unwrap()).unwrap();
    assert_eq!(
        ok,
        json!({"n": 0}),
        "the last step saw the first step's output"
    );
    assert!(
        !out.join("stop.json").exists(),
        "no step after the failing one"
    );
    let log = std::fs::read_to_string(state.join("logs/stop.log")).unwrap();
    assert!(
        log.contains("step 2 failed") && log.contains("failed: exit status 4"),
        "{log}"
    );
}

#[test]
fn auto_parallelism_follows_the_arrival_rate_up_and_down() {
    let dir = tempfile::tempdir().unwrap();
    let items = dir.path().join("items.jsonl");
    std::fs::write(&items, "").unwrap();
    let (_source, addr) = start_source("file", &items, &[]);
    let state = dir.path().join("state");
    let manager = start_manager(
        &format!("http://{addr}"),
        &state,
        "sleep 0.5",
        &[
            "--parallelism",
            "auto",
            "--min",
            "1",
            "--max",
            "8",
            "--poll",
            "100ms",
        ],
    );
    let parallelism = || metric(manager.admin, "podkit_queue_parallelism", &[]).unwrap_or(-1.0);
    assert_eq!(parallelism(), 1.0, "starts at --min");
    // Rising: an item every 100 ms, each taking half a second: about six workers needed.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&items)
        .unwrap();
    let mut highest: f64 = 0.0;
    for i in 0..40 {
        writeln!(
            file,
            "{}",
            json!({"name": format!("burst-{i}"), "data": {}})
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        highest = highest.max(parallelism());
    }
    // About six by the rule; at least four even when this machine is slow to append.
    assert!(
        highest >= 4.0,
        "parallelism rose to {highest} only\n{}",
        manager.output()
    );
    assert!(highest <= 8.0, "--max holds");
    // Falling: no more arrivals; the count comes back down to --min.
    assert!(
        eventually(Duration::from_secs(10), || parallelism() == 1.0),
        "parallelism stayed at {}\n{}",
        parallelism(),
        manager.output()
    );
    assert!(eventually(Duration::from_secs(20), || {
        metric(manager.admin, "podkit_queue_items", &["state=\"done\""]) == Some(40.0)
    }));
}

#[test]
fn status_watch_follows_the_manager_until_it_stops() {
    let names: Vec<String> = (0..10).map(|i| format!("w{i}")).collect();
    let (dir, _source, addr) = items_source(&names);
    let state = dir.path().join("state");
    let mut manager = Command::new(PODKIT)
        .args(["queue", "run", "--source", &format!("http://{addr}")])
        .args(["--state", state.to_str().unwrap(), "--worker", "sleep 0.3"])
        .args([
            "--poll",
            "100ms",
            "--exit-when-done",
            "--admin",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || state
        .join("status.json")
        .exists()));
    // A second manager on the same state directory is refused.
    let second = Command::new(PODKIT)
        .args(["queue", "run", "--source", &format!("http://{addr}")])
        .args(["--state", state.to_str().unwrap(), "--worker", "true"])
        .args(["--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another manager is running"),
        "{}",
        text(&second)
    );
    let reaper = std::thread::spawn(move || manager.wait().unwrap());
    let watch = Command::new(PODKIT)
        .args([
            "queue",
            "status",
            "--watch",
            "--interval",
            "200ms",
            "--state",
        ])
        .arg(&state)
        .output()
        .unwrap();
    assert!(reaper.join().unwrap().success());
    let out = String::from_utf8_lossy(&watch.stdout);
    assert!(watch.status.success(), "{out}");
    let progress: Vec<&str> = out.lines().filter(|l| l.contains("/10 finished")).collect();
    assert!(
        progress.len() >= 3,
        "a line per interval while it ran: {out}"
    );
    assert!(
        out.trim_end().ends_with(
            "no manager running; the state holds 10 done, 0 failed, 0 waiting to be retried"
        ),
        "{out}"
    );
}
