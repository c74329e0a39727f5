//! `podkit sidecar git-sync` against real git repositories: a local bare repository
//! pushed to while a reader reads through the link (never a missing or half-written
//! file), a webhook seen by nginx, tags and commit ids, and an HTTPS repository served by
//! nginx + fcgiwrap + git-http-backend behind basic auth with a private CA.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use podkit_testkit::podkit::Podkit;
use podkit_testkit::servers::Nginx;

/// Runs git in `dir`; returns its stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=podkit",
            "-c",
            "user.email=podkit@example.com",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .output()
        .expect("git (Debian package git)");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository `site.git` in `dir` and a clone of it to commit from.
fn repository(dir: &Path) -> (PathBuf, PathBuf) {
    let bare = dir.join("site.git");
    let work = dir.join("work");
    git(dir, &["init", "-q", "--bare", "site.git"]);
    git(dir, &["clone", "-q", "site.git", "work"]);
    (bare, work)
}

/// Commits `index.html` with `text` and pushes; returns the commit id.
fn publish(work: &Path, text: &str) -> String {
    std::fs::write(work.join("index.html"), text).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", text]);
    git(work, &["push", "-q", "origin", "HEAD:main"]);
    git(work, &["rev-parse", "HEAD"])
}

fn sync(args: &[&str]) -> Podkit {
    let mut all = vec!["sidecar", "git-sync", "--log-format", "text"];
    all.extend(args);
    let mut p = Podkit::start(Path::new(PODKIT), &all).expect("podkit starts");
    p.wait_ready()
        .unwrap_or_else(|e| panic!("{e}\n{}", p.output()));
    p
}

#[test]
fn pushes_arrive_atomically_with_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let (bare, work) = repository(dir.path());
    std::fs::write(work.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("index.html", work.join("link.html")).unwrap();
    publish(&work, "v1");
    let log = dir.path().join("hooks.log");
    let nginx = Nginx::start(&format!(
        "log_format hook '$request $http_gitsync_hash'; server {{ listen 127.0.0.1:{{port}}; \
         access_log {} hook; location = /hook {{ return 204; }} }}",
        log.display()
    ))
    .expect("nginx");
    let root = dir.path().join("root");
    let sidecar = sync(&[
        "--repo",
        bare.to_str().unwrap(),
        "--ref",
        "main",
        "--root",
        root.to_str().unwrap(),
        "--interval",
        "100ms",
        "--webhook",
        &format!("http://{}/hook", nginx.addr),
    ]);
    let page = root.join("current/index.html");
    assert_eq!(std::fs::read_to_string(&page).unwrap(), "v1");
    let meta = std::fs::metadata(root.join("current/run.sh")).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o111,
        0o111,
        "executable bit kept"
    );
    assert_eq!(
        std::fs::read_link(root.join("current/link.html")).unwrap(),
        Path::new("index.html")
    );
    assert!(root.join(".cache/shallow").exists(), "a depth-1 fetch");

    // A reader reads all along while new commits are pushed: it never finds the file
    // missing or holding anything but a whole version.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, page) = (stop.clone(), page.clone());
        std::thread::spawn(move || {
            let mut bad = Vec::new();
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                match std::fs::read_to_string(&page) {
                    Ok(text) if text.starts_with('v') && text.len() == 2 => {}
                    other => bad.push(format!("{other:?}")),
                }
                reads += 1;
            }
            (reads, bad)
        })
    };
    let mut last = String::new();
    for n in 2..=6 {
        last = publish(&work, &format!("v{n}"));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        eventually(Duration::from_secs(10), || std::fs::read_to_string(&page)
            .is_ok_and(|t| t == "v6")),
        "{}",
        sidecar.output()
    );
    stop.store(true, Ordering::Relaxed);
    let (reads, bad) = reader.join().unwrap();
    assert!(reads > 100, "{reads} reads");
    assert!(bad.is_empty(), "{bad:?}");
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(&format!("POST /hook HTTP/1.1 {last}"))
    }));
    let published = metric(sidecar.admin, "podkit_git_sync_published_total", &[]);
    assert!(
        published.is_some_and(|n| (2.0..=6.0).contains(&n)),
        "{published:?}"
    );
    assert_eq!(
        metric(sidecar.admin, "podkit_git_sync_commit_info", &[&last]),
        Some(1.0)
    );
    // Old checkouts are pruned: the current one and one before it.
    assert_eq!(
        std::fs::read_dir(root.join(".worktrees")).unwrap().count(),
        2
    );
}

#[test]
fn tags_and_commit_ids_in_once_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (bare, work) = repository(dir.path());
    let first = publish(&work, "v1");
    git(&work, &["tag", "-a", "release-1", "-m", "first release"]);
    git(&work, &["push", "-q", "origin", "release-1"]);
    publish(&work, "v2");
    for (reference, expected) in [("release-1", "v1"), (first.as_str(), "v1"), ("main", "v2")] {
        let root = dir.path().join(format!("root-{reference}"));
        let status = Command::new(PODKIT)
            .args(["sidecar", "git-sync", "--once", "--admin", "127.0.0.1:0"])
            .args(["--repo", &format!("file://{}", bare.display())])
            .args(["--ref", reference, "--root", root.to_str().unwrap()])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{reference}");
        assert_eq!(
            std::fs::read_to_string(root.join("current/index.html")).unwrap(),
            expected,
            "{reference}"
        );
    }
    let status = Command::new(PODKIT)
        .args(["sidecar", "git-sync", "--once", "--admin", "127.0.0.1:0"])
        .args(["--repo", bare.to_str().unwrap(), "--ref", "no-such-branch"])
        .args(["--root", dir.path().join("root-bad").to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
}

/// fcgiwrap on a free TCP port, running git-http-backend for nginx.
struct Fcgiwrap(std::process::Child);

impl Drop for Fcgiwrap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_https_repository_behind_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let (bare, work) = repository(dir.path());
    publish(&work, "secret site");
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
    );
    private_ca_and_leaf(&ca, &cert, &key);
    let hash = Command::new("openssl")
        .args(["passwd", "-apr1", "pa55-w0rd"])
        .output()
        .expect("openssl");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("deploy:{}", String::from_utf8_lossy(&hash.stdout)),
    )
    .unwrap();
    let fcgi = free_addr();
    let _fcgiwrap = Fcgiwrap(
        Command::new(
            podkit_testkit::process::find_binary("fcgiwrap", "fcgiwrap").expect("fcgiwrap"),
        )
        .args(["-s", &format!("tcp:{fcgi}")])
        .spawn()
        .unwrap(),
    );
    assert!(eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(fcgi).is_ok()
    }));
    let backend = podkit_testkit::process::find_binary("git-http-backend", "git")
        .unwrap_or_else(|_| PathBuf::from("/usr/lib/git-core/git-http-backend"));
    let nginx = Nginx::start(&format!(
        "server {{ listen 127.0.0.1:{{port}} ssl; ssl_certificate {cert}; \
         ssl_certificate_key {key}; location / {{ auth_basic git; \
         auth_basic_user_file {htpasswd}; include /etc/nginx/fastcgi_params; \
         fastcgi_pass {fcgi}; fastcgi_param SCRIPT_FILENAME {backend}; \
         fastcgi_param GIT_PROJECT_ROOT {root}; fastcgi_param GIT_HTTP_EXPORT_ALL 1; \
         fastcgi_param PATH_INFO $uri; fastcgi_param REMOTE_USER $remote_user; }} }}",
        cert = cert.display(),
        key = key.display(),
        htpasswd = htpasswd.display(),
        backend = backend.display(),
        root = bare.parent().unwrap().display(),
    ))
    .expect("nginx");
    let url = format!("https://localhost:{}/site.git", nginx.addr.port());
    let run_trusting = |trust_ca: bool, credentials: Option<&str>, name: &str| {
        let root = dir.path().join(name);
        let mut command = Command::new(PODKIT);
        command
            .args(["sidecar", "git-sync", "--once", "--admin", "127.0.0.1:0"])
            .args(["--log-format", "text", "--repo", &url, "--ref", "main"])
            .args(["--root", root.to_str().unwrap()]);
        if trust_ca {
            command.arg("--ca-file").arg(&ca);
        }
        if let Some(text) = credentials {
            let file = dir.path().join(format!("{name}.credentials"));
            std::fs::write(&file, text).unwrap();
            command.arg("--credentials-file").arg(file);
        }
        let out = command.output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), said, root)
    };
    let run = |credentials: Option<&str>, name: &str| run_trusting(true, credentials, name);
    let (code, said, root) = run(Some("deploy:pa55-w0rd\n"), "good");
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(
        std::fs::read_to_string(root.join("current/index.html")).unwrap(),
        "secret site"
    );
    assert!(!said.contains("pa55-w0rd"));

    let (code, said, _) = run(Some("deploy:wrong-Passw0rd"), "wrong");
    assert_eq!(code, Some(1), "{said}");
    assert!(!said.contains("wrong-Passw0rd"), "{said}");
    let (code, _, _) = run(None, "anonymous");
    assert_eq!(code, Some(1));
    // The private CA is trusted only when named.
    let (code, said, _) = run_trusting(false, Some("deploy:pa55-w0rd\n"), "untrusted");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.to_lowercase().contains("certificate"), "{said}");
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        &["--repo", "x", "--root", "/tmp/r", "--link", "a/b"][..],
        &["--repo", "x", "--root", "/tmp/r", "--signal", "HUP"],
        &[
            "--repo",
            "x",
            "--root",
            "/tmp/r",
            "--credentials-file",
            "/nonexistent",
        ],
    ] {
        let out = Command::new(PODKIT)
            .args(["sidecar", "git-sync"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    }
}
