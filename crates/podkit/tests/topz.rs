//! `podkit sidecar topz` (chapter 2): the readout lists the application's processes with
//! their command lines, measures CPU over an interval, filters a subtree, and serves JSON,
//! text and HTML.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use podkit_testkit::free_port;
use podkit_testkit::podkit::Podkit;
use podkit_testkit::probe::{http_get, http_request};
use serde_json::Value;

const PODKIT: &str = env!("CARGO_BIN_EXE_podkit");

/// A child process killed when dropped.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_topz(extra: &[&str]) -> (Podkit, SocketAddr) {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listen_s = listen.to_string();
    let mut args = vec![
        "sidecar",
        "topz",
        "--addr",
        &listen_s,
        "--interval",
        "250ms",
    ];
    args.extend_from_slice(extra);
    let mut topz = Podkit::start(Path::new(PODKIT), &args).expect("start topz");
    topz.wait_ready().expect("ready");
    (topz, listen)
}

fn processes(listen: SocketAddr, query: &str) -> Vec<Value> {
    let resp = http_get(listen, &format!("/topz?format=json{query}")).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    v["processes"].as_array().unwrap().clone()
}

fn find(rows: &[Value], pid: u32) -> Option<Value> {
    rows.iter().find(|r| r["pid"] == pid).cloned()
}

#[test]
fn lists_a_started_process_with_its_command_line() {
    let (_topz, listen) = start_topz(&[]);
    let app = Owned(Command::new("sleep").arg("317").spawn().unwrap());
    let pid = app.0.id();
    let row = (0..40)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            find(&processes(listen, ""), pid)
        })
        .expect("the app appears in /topz");
    assert_eq!(row["command"], "sleep 317");
    assert_eq!(row["ppid"], std::process::id());
    assert_eq!(row["state"], "S");
    assert!(row["rss_bytes"].as_u64().unwrap() > 0);
    assert!(row["vsize_bytes"].as_u64().unwrap() > 0);
    assert_eq!(row["threads"], 1);
    assert!(row["open_fds"].as_u64().unwrap() >= 3);
    assert!(row["user"].is_string());
    assert!(row["start_time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn cpu_percent_rises_while_a_process_burns_cpu() {
    let (_topz, listen) = start_topz(&[]);
    // Idle for two seconds, then a busy loop.
    let burner = Owned(
        Command::new("sh")
            .args(["-c", "sleep 2; while :; do :; done"])
            .spawn()
            .unwrap(),
    );
    let pid = burner.0.id();
    let idle = find(&processes(listen, "&interval=500ms"), pid).expect("burner listed");
    let idle_cpu = idle["cpu_percent"].as_f64().unwrap();
    assert!(idle_cpu < 10.0, "sleeping shell at {idle_cpu}%");
    std::thread::sleep(Duration::from_millis(2000));
    let busy = find(&processes(listen, "&interval=1s"), pid).expect("burner listed");
    let busy_cpu = busy["cpu_percent"].as_f64().unwrap();
    assert!(busy_cpu > 40.0, "busy loop at only {busy_cpu}%");
    assert!(busy_cpu > idle_cpu + 30.0);
}

#[test]
fn pid_filter_keeps_only_the_subtree() {
    let tree = Owned(
        Command::new("sh")
            .args(["-c", "sleep 311 & sleep 312 & wait"])
            .spawn()
            .unwrap(),
    );
    let root = tree.0.id();
    let outsider = Owned(Command::new("sleep").arg("313").spawn().unwrap());
    let root_s = root.to_string();
    let (_topz, listen) = start_topz(&["--pid-filter", &root_s]);
    let rows = (0..40)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            processes(listen, "")
        })
        .find(|rows| rows.len() >= 3)
        .expect("the subtree appears");
    let commands: Vec<&str> = rows
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{commands:?}");
    assert!(commands.contains(&"sleep 311") && commands.contains(&"sleep 312"));
    assert!(find(&rows, outsider.0.id()).is_none());
    assert!(find(&rows, root).is_some());
}

#[test]
fn formats_by_accept_and_query() {
    let (_topz, listen) = start_topz(&[]);
    let html = http_request(listen, "GET", "/topz", &[("Accept", "text/html")], b"").unwrap();
    assert!(html
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(html.text().contains("<table id=\"topz\">") && html.text().contains("<script>"));
    let json = http_request(
        listen,
        "GET",
        "/topz",
        &[("Accept", "application/json")],
        b"",
    )
    .unwrap();
    assert!(json
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let text = http_get(listen, "/topz").unwrap();
    assert!(text.text().starts_with("topz - "), "{}", text.text());
    assert!(text.text().contains("%CPU"));
    let forced = http_request(
        listen,
        "GET",
        "/topz?format=text",
        &[("Accept", "text/html")],
        b"",
    )
    .unwrap();
    assert!(forced.text().starts_with("topz - "));
    let sorted = processes(listen, "&sort=pid");
    let pids: Vec<i64> = sorted.iter().map(|r| r["pid"].as_i64().unwrap()).collect();
    assert!(pids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn bad_requests_get_errors_and_the_server_carries_on() {
    let (_topz, listen) = start_topz(&[]);
    assert_eq!(http_get(listen, "/topz?format=yaml").unwrap().status, 400);
    assert_eq!(http_get(listen, "/topz?sort=nope").unwrap().status, 400);
    assert_eq!(http_get(listen, "/topz?interval=5").unwrap().status, 400);
    assert_eq!(http_get(listen, "/elsewhere").unwrap().status, 404);
    assert_eq!(
        http_request(listen, "POST", "/topz", &[], b"x")
            .unwrap()
            .status,
        405
    );
    // Garbage instead of HTTP closes that connection only.
    let garbage = podkit_testkit::probe::line_exchange(listen, b"\x00\x01garbage\r\n\r\n").unwrap();
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage:?}");
    assert_eq!(http_get(listen, "/topz").unwrap().status, 200);
}
