//! `podkit sidecar config-sync` against real servers: nginx serving the configuration
//! (ETags, 304s, HTTPS with a private CA, a reload endpoint), a file, and etcd (watched,
//! not polled). A legacy application that reloads on SIGHUP sees every valid version; an
//! invalid one and a source that is down leave the file as it was.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use podkit_testkit::podkit::Podkit;
use podkit_testkit::servers::{Etcd, Nginx};

/// nginx serving `root` with access logged to `root/../access.log`, and `POST /reload`
/// answered 204.
fn nginx_serving(root: &Path, tls: Option<(&Path, &Path)>) -> Nginx {
    let log = root.parent().unwrap().join("access.log");
    let listen = match tls {
        Some((cert, key)) => format!(
            "listen 127.0.0.1:{{port}} ssl; ssl_certificate {}; ssl_certificate_key {};",
            cert.display(),
            key.display()
        ),
        None => "listen 127.0.0.1:{port};".to_string(),
    };
    Nginx::start(&format!(
        "server {{ {listen} access_log {} ; root {}; \
         location = /reload {{ return 204; }} }}",
        log.display(),
        root.display()
    ))
    .expect("nginx")
}

/// A legacy application: writes its pid, and on each SIGHUP appends the file it reads to
/// `seen`.
fn legacy_app(dir: &Path, config: &Path) -> (std::process::Child, PathBuf, PathBuf) {
    let pid_file = dir.join("app.pid");
    let seen = dir.join("seen.log");
    let script = format!(
        "import os, signal, time\n\
         open({pid:?}, 'w').write(str(os.getpid()))\n\
         def reload(*_):\n    open({seen:?}, 'a').write(open({config:?}).read() + '\\n')\n\
         signal.signal(signal.SIGHUP, reload)\n\
         while True: time.sleep(1)\n",
        pid = pid_file.display().to_string(),
        seen = seen.display().to_string(),
        config = config.display().to_string(),
    );
    let child = Command::new("python3")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || pid_file.exists()));
    (child, pid_file, seen)
}

fn sync(args: &[&str]) -> Podkit {
    let mut all = vec!["sidecar", "config-sync", "--log-format", "text"];
    all.extend(args);
    Podkit::start(Path::new(PODKIT), &all).expect("podkit starts")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn http_source_with_etags_validation_sighup_and_a_source_that_goes_down() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("app.conf"), "valid 1").unwrap();
    let mut nginx = nginx_serving(&root, None);
    let dest = dir.path().join("app.conf");
    std::fs::write(&dest, "valid 0").unwrap();
    let (mut app, pid_file, seen) = legacy_app(dir.path(), &dest);
    let url = format!("http://{}/app.conf", nginx.addr);
    let mut sidecar = sync(&[
        "--source",
        &url,
        "--dest",
        dest.to_str().unwrap(),
        "--interval",
        "200ms",
        "--validate-cmd",
        "grep -q '^valid' \"$CONFIG_FILE\" || { echo \"not valid: $(cat $CONFIG_FILE)\"; exit 1; }",
        "--signal",
        "HUP",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--keep",
        "2",
    ]);
    sidecar.wait_ready().unwrap();
    assert!(eventually(Duration::from_secs(10), || read(&seen) == "valid 1\n"));
    assert_eq!(read(&dest), "valid 1");

    // Unchanged: conditional GETs get 304 and the app is not signalled again.
    let log = dir.path().join("access.log");
    assert!(eventually(Duration::from_secs(10), || read(&log)
        .matches("\" 304 ")
        .count()
        >= 3));
    assert_eq!(read(&seen), "valid 1\n");
    let etag = metric(
        sidecar.admin,
        "podkit_config_sync_version_info",
        &["version=\"\\\""],
    );
    assert_eq!(etag, Some(1.0), "{}", get(sidecar.admin, "/metrics").text());

    // An invalid version is refused: the file stays, the failure is counted and logged.
    std::fs::write(root.join("app.conf"), "broken").unwrap();
    assert!(eventually(Duration::from_secs(10), || metric(
        sidecar.admin,
        "podkit_config_sync_failures_total",
        &["validate"]
    )
    .is_some_and(|n| n >= 1.0)));
    assert_eq!(read(&dest), "valid 1");
    assert!(sidecar.output().contains("not valid: broken"));

    std::fs::write(root.join("app.conf"), "valid 2").unwrap();
    assert!(eventually(Duration::from_secs(10), || read(&seen)
        == "valid 1\nvalid 2\n"));
    // Replaced versions are kept: 0 and 1.
    let kept = dir.path().join(".app.conf.versions");
    let mut versions: Vec<String> = std::fs::read_dir(&kept)
        .unwrap()
        .map(|e| read(&e.unwrap().path()))
        .collect();
    versions.sort();
    assert_eq!(versions, ["valid 0", "valid 1"]);

    // The source goes down: the file is left alone; back up, the next change arrives.
    nginx.process().stop();
    assert!(eventually(Duration::from_secs(10), || metric(
        sidecar.admin,
        "podkit_config_sync_failures_total",
        &["source"]
    )
    .is_some_and(|n| n >= 2.0)));
    assert_eq!(read(&dest), "valid 2");
    // nginx's ETag is the mtime in seconds and the size: "valid 3", as long as "valid 2",
    // written in the same second would look unchanged (to any client, not only ours).
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(root.join("app.conf"), "valid 3").unwrap();
    nginx.process().restart_process().unwrap();
    assert!(eventually(Duration::from_secs(15), || read(&dest) == "valid 3"));
    assert_eq!(
        metric(sidecar.admin, "podkit_config_sync_updates_total", &[]),
        Some(3.0)
    );
    assert_promtool_clean(sidecar.admin);
    assert_eq!(
        sidecar
            .terminate(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
    app.kill().unwrap();
    let _ = app.wait();
}

#[test]
fn https_source_with_a_private_ca_and_a_reload_url() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
    );
    private_ca_and_leaf(&ca, &cert, &key);
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("app.conf"), "over tls").unwrap();
    let nginx = nginx_serving(&root, Some((&cert, &key)));
    let dest = dir.path().join("app.conf");
    let base = format!("https://localhost:{}", nginx.addr.port());
    let mut sidecar = sync(&[
        "--source",
        &format!("{base}/app.conf"),
        "--dest",
        dest.to_str().unwrap(),
        "--ca-file",
        ca.to_str().unwrap(),
        "--reload-url",
        &format!("{base}/reload"),
        "--interval",
        "200ms",
    ]);
    sidecar.wait_ready().unwrap();
    assert_eq!(read(&dest), "over tls");
    let log = dir.path().join("access.log");
    assert!(eventually(Duration::from_secs(10), || read(&log)
        .contains("\"POST /reload HTTP/1.1\" 204")));

    // Without the CA the server is not trusted, and the file is never written.
    let other = dir.path().join("other.conf");
    let untrusted = sync(&[
        "--source",
        &format!("{base}/app.conf"),
        "--dest",
        other.to_str().unwrap(),
        "--interval",
        "200ms",
    ]);
    assert!(eventually(Duration::from_secs(10), || metric(
        untrusted.admin,
        "podkit_config_sync_failures_total",
        &["source"]
    )
    .is_some_and(|n| n >= 1.0)));
    assert!(!other.exists());
    assert_eq!(get(untrusted.admin, "/readyz").status, 503);
}

#[test]
fn etcd_changes_arrive_by_watch_not_by_polling() {
    let cluster = Etcd::start().expect("etcd-server");
    let endpoint = cluster.members[0].client_addr;
    let etcdctl = |args: &[&str]| {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .output()
            .expect("etcdctl (Debian package etcd-client)");
        assert!(out.status.success(), "{out:?}");
    };
    etcdctl(&["put", "/config/app", "first"]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("app.conf");
    // A poll every minute: a change seen within seconds came by the watch.
    let mut sidecar = sync(&[
        "--source",
        &format!("etcd://{endpoint}/config/app"),
        "--dest",
        dest.to_str().unwrap(),
        "--interval",
        "60s",
    ]);
    sidecar.wait_ready().unwrap();
    assert_eq!(read(&dest), "first");
    etcdctl(&["put", "/config/app", "second"]);
    assert!(eventually(Duration::from_secs(5), || read(&dest) == "second"));
    let version = get(sidecar.admin, "/metrics").text();
    assert!(version.contains("version=\"etcd-revision:"), "{version}");
    // A deleted key leaves the file as it is.
    etcdctl(&["del", "/config/app"]);
    assert!(eventually(Duration::from_secs(5), || sidecar
        .output()
        .contains("was deleted")));
    assert_eq!(read(&dest), "second");
    etcdctl(&["put", "/config/app", "third"]);
    assert!(eventually(Duration::from_secs(5), || read(&dest) == "third"));
}

#[test]
fn file_source_and_once_mode() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("source.conf");
    std::fs::write(&src, "from a file").unwrap();
    let dest = dir.path().join("dest.conf");
    let status = Command::new(PODKIT)
        .args([
            "sidecar",
            "config-sync",
            "--once",
            "--admin",
            &free_addr().to_string(),
        ])
        .arg("--source")
        .arg(format!("file://{}", src.display()))
        .arg("--dest")
        .arg(&dest)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(read(&dest), "from a file");
    // A missing source: exit 1, the file untouched.
    let status = Command::new(PODKIT)
        .args([
            "sidecar",
            "config-sync",
            "--once",
            "--admin",
            &free_addr().to_string(),
        ])
        .args(["--source", "file:///nonexistent/podkit.conf"])
        .arg("--dest")
        .arg(&dest)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert_eq!(read(&dest), "from a file");
}

#[test]
fn a_notice_that_failed_is_sent_again_and_success_keeps_being_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("source.conf");
    std::fs::write(&src, "version 1").unwrap();
    let dest = dir.path().join("app.conf");
    let pid_file = dir.path().join("app.pid");
    // The application is not up yet: no pid file, so the first SIGHUP cannot be sent.
    let sidecar = sync(&[
        "--source",
        &format!("file://{}", src.display()),
        "--dest",
        dest.to_str().unwrap(),
        "--interval",
        "200ms",
        "--signal",
        "HUP",
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    assert!(eventually(Duration::from_secs(10), || metric(
        sidecar.admin,
        "podkit_config_sync_failures_total",
        &["notify"]
    )
    .is_some_and(|n| n >= 1.0)));
    assert_eq!(read(&dest), "version 1");
    std::fs::remove_file(&pid_file).ok();
    let (mut app, _, seen) = legacy_app(dir.path(), &dest);
    assert!(eventually(Duration::from_secs(10), || read(&seen) == "version 1\n"));
    // Nothing new: the last success keeps moving.
    let first = metric(
        sidecar.admin,
        "podkit_config_sync_last_success_timestamp_seconds",
        &[],
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let later = metric(
        sidecar.admin,
        "podkit_config_sync_last_success_timestamp_seconds",
        &[],
    )
    .unwrap();
    assert!(later > first, "{first} then {later}");
    assert_eq!(read(&seen), "version 1\n", "told once");
    app.kill().unwrap();
    let _ = app.wait();
}

#[test]
fn sigkill_by_process_name_lets_the_supervisor_restart_the_app() {
    let dir = tempfile::tempdir().unwrap();
    // A process with a name nothing else on the machine has.
    let name = format!("legacy-{}", std::process::id());
    let program = dir.path().join(&name);
    std::fs::copy("/bin/sleep", &program).unwrap();
    let mut app = Command::new(&program).arg("300").spawn().unwrap();
    let src = dir.path().join("source.conf");
    std::fs::write(&src, "v1").unwrap();
    let dest = dir.path().join("app.conf");
    std::fs::write(&dest, "v0").unwrap();
    let _sidecar = sync(&[
        "--source",
        &format!("file://{}", src.display()),
        "--dest",
        dest.to_str().unwrap(),
        "--interval",
        "200ms",
        "--signal",
        "KILL",
        "--process-name",
        &name,
    ]);
    assert!(eventually(Duration::from_secs(10), || read(&dest) == "v1"));
    let status = app.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        &["--source", "ftp://x/y", "--dest", "/tmp/x"][..],
        &[
            "--source",
            "file:///x",
            "--dest",
            "/tmp/x",
            "--signal",
            "HUP",
        ],
        &[
            "--source",
            "file:///x",
            "--dest",
            "/tmp/x",
            "--signal",
            "NOPE",
            "--pid-file",
            "p",
        ],
        &["--source", "etcd://h:2379", "--dest", "/tmp/x"],
    ] {
        let out = Command::new(PODKIT)
            .args(["sidecar", "config-sync"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
