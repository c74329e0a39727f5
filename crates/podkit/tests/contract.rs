//! The component contract (DESIGN.md), checked on a running component (`podkit sidecar
//! topz`): exit 2 with one line on bad input, admin endpoints, metrics that pass
//! promtool, JSON logs, and a graceful drain on SIGTERM.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use podkit_testkit::podkit::Podkit;
use podkit_testkit::probe::{http_get, http_request};
use podkit_testkit::process::find_binary;
use podkit_testkit::{free_port, Signal};

const PODKIT: &str = env!("CARGO_BIN_EXE_podkit");

fn podkit(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(PODKIT)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run podkit")
}

fn assert_one_line_exit_2(output: &Output, names: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line expected, got: {stderr}"
    );
    assert!(stderr.starts_with("podkit: error: "), "{stderr}");
    assert!(stderr.contains(names), "{stderr} should name {names}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
    stderr
}

#[test]
fn bare_number_duration_exits_2_naming_the_flag() {
    let out = podkit(&["sidecar", "topz", "--interval", "10"], &[]);
    let line = assert_one_line_exit_2(&out, "--interval");
    assert!(line.contains("bare number"), "{line}");
}

#[test]
fn bad_env_value_exits_2_naming_the_variable() {
    let out = podkit(&["sidecar", "topz"], &[("PODKIT_DRAIN_TIMEOUT", "30")]);
    assert_one_line_exit_2(&out, "PODKIT_DRAIN_TIMEOUT");
}

#[test]
fn unknown_flag_exits_2() {
    let out = podkit(&["sidecar", "topz", "--intervall", "1s"], &[]);
    assert_one_line_exit_2(&out, "--intervall");
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn unknown_config_key_exits_2_naming_file_and_field() {
    let file = config_file("listen: 127.0.0.1:0\nintreval: 1s\n");
    let path = file.path().to_str().unwrap();
    let out = podkit(&["sidecar", "topz", "--config", path], &[]);
    let line = assert_one_line_exit_2(&out, path);
    assert!(line.contains("intreval"), "{line}");
}

#[test]
fn bad_config_value_exits_2_naming_file_and_field() {
    let file = config_file("interval: 5\n");
    let path = file.path().to_str().unwrap();
    let out = podkit(&["sidecar", "topz", "--config", path], &[]);
    let line = assert_one_line_exit_2(&out, &format!("{path}: interval"));
    assert!(line.contains("bare number"), "{line}");
}

#[test]
fn busy_port_exits_1_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let admin = format!("127.0.0.1:{}", free_port());
    let out = podkit(
        &["sidecar", "topz", "--listen", &addr, "--admin", &admin],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("--listen {addr}")), "{stderr}");
}

#[test]
fn help_shows_env_twins_and_defaults() {
    let out = podkit(&["sidecar", "topz", "--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "PODKIT_LISTEN",
        "[default: 0.0.0.0:8080]",
        "PODKIT_INTERVAL",
        "PODKIT_ADMIN",
        "[default: 127.0.0.1:9901]",
        "PODKIT_DRAIN_TIMEOUT",
        "[default: 30s]",
        "PODKIT_LOG_FORMAT",
        "PODKIT_LOG_LEVEL",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
    let top = podkit(&["--help"], &[]);
    let top = String::from_utf8_lossy(&top.stdout);
    assert!(top.contains("sidecar") && top.contains("ch9"), "{top}");
}

fn topz(extra: &[&str]) -> (Podkit, std::net::SocketAddr) {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listen_s = listen.to_string();
    let mut args = vec![
        "sidecar",
        "topz",
        "--listen",
        &listen_s,
        "--interval",
        "200ms",
    ];
    args.extend_from_slice(extra);
    let mut p = Podkit::start(Path::new(PODKIT), &args).expect("start topz");
    p.wait_ready().expect("topz ready");
    (p, listen)
}

#[test]
fn admin_endpoints_answer() {
    let (p, _) = topz(&[]);
    assert_eq!(http_get(p.admin, "/healthz").unwrap().status, 200);
    let ready = http_get(p.admin, "/readyz").unwrap();
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
    assert_eq!(http_get(p.admin, "/nope").unwrap().status, 404);
    let metrics = http_get(p.admin, "/metrics").unwrap();
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let om = http_request(
        p.admin,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        b"",
    )
    .unwrap();
    assert!(om
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(om.text().ends_with("# EOF\n"));
}

#[test]
fn metrics_pass_promtool() {
    let (p, listen) = topz(&[]);
    // Make the labelled request counters appear too.
    http_get(listen, "/topz").unwrap();
    http_get(listen, "/topz?format=json").unwrap();
    let metrics = http_get(p.admin, "/metrics").unwrap();
    assert!(
        metrics.text().contains("podkit_topz_requests_total{"),
        "{}",
        metrics.text()
    );
    assert!(metrics.text().contains("process_resident_memory_bytes"));
    let promtool = find_binary("promtool", "prometheus").expect("promtool");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(&metrics.body)
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool's lint findings are printed but do not fail it; there must be none.
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}

#[test]
fn logs_are_json_lines() {
    let (mut p, _) = topz(&[]);
    p.terminate(Duration::from_secs(10)).expect("exits");
    let output = p.output();
    let lines: Vec<&str> = output.lines().collect();
    assert!(lines.len() >= 2, "{output}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string());
    }
}

#[test]
fn sigterm_lets_a_slow_request_finish_then_exits_0() {
    let (mut p, listen) = topz(&["--drain-timeout", "20s"]);
    // `?interval=2s` measures CPU over two seconds: a slow request.
    let slow = std::thread::spawn(move || http_get(listen, "/topz?interval=2s&format=json"));
    std::thread::sleep(Duration::from_millis(500));
    let admin = p.admin;
    p.process().signal_main(Signal::SIGTERM);
    // While draining: not ready, and no new connections on the listener.
    std::thread::sleep(Duration::from_millis(200));
    let ready = http_get(admin, "/readyz").unwrap();
    assert_eq!((ready.status, ready.text().as_str()), (503, "draining\n"));
    assert!(
        std::net::TcpStream::connect(listen).is_err(),
        "listener still open while draining"
    );
    let resp = slow.join().unwrap().expect("the slow request completes");
    assert_eq!(resp.status, 200);
    let snapshot: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert!(snapshot["interval_seconds"].as_f64().unwrap() >= 1.9);
    let status = p
        .terminate(Duration::from_secs(10))
        .expect("exits after the drain");
    assert_eq!(status.code(), Some(0), "{}", p.output());
}

#[test]
fn drain_timeout_bounds_the_wait() {
    let (mut p, listen) = topz(&["--drain-timeout", "300ms"]);
    let slow = std::thread::spawn(move || http_get(listen, "/topz?interval=5s"));
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let status = p.terminate(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "exited only after {:?}",
        started.elapsed()
    );
    assert!(
        slow.join().unwrap().is_err(),
        "the cut request sees its connection close"
    );
    assert!(p.output().contains("drain timeout passed"));
}
