//! `podkit sidecar tls` (chapter 2): HTTPS for a legacy service — h2 and http/1.1 by ALPN,
//! `X-Forwarded-Proto: https`, certificate files swapped without dropping a download in
//! progress, and the plain listener's 308 redirect.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use podkit_testkit::backend::Backend;

struct Cert {
    cert_pem: String,
    key_pem: String,
}

fn new_cert() -> Cert {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    Cert {
        cert_pem: generated.cert.pem(),
        key_pem: generated.signing_key.serialize_pem(),
    }
}

/// Writes a cert and key into `dir`, replacing the files atomically (as Kubernetes does).
fn install(dir: &Path, cert: &Cert) {
    let tmp_cert = dir.join("cert.pem.tmp");
    let tmp_key = dir.join("key.pem.tmp");
    std::fs::write(&tmp_cert, &cert.cert_pem).unwrap();
    std::fs::write(&tmp_key, &cert.key_pem).unwrap();
    std::fs::rename(&tmp_key, dir.join("key.pem")).unwrap();
    std::fs::rename(&tmp_cert, dir.join("cert.pem")).unwrap();
}

/// Runs curl against `url`; returns (stdout, success).
fn curl(args: &[&str], url: &str) -> (String, bool) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "20"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl (Debian package curl)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

/// The base64 body of the first PEM certificate in `text`, without line breaks.
fn first_cert_body(text: &str) -> String {
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate")
        + 27;
    let end = start + text[start..].find("-----END CERTIFICATE-----").unwrap();
    text[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn sidecar(
    app: &Backend,
    dir: &Path,
    extra: &[&str],
) -> (podkit_testkit::podkit::Podkit, std::net::SocketAddr) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let upstream = app.addr.to_string();
    let mut args = vec![
        "sidecar",
        "tls",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--upstream",
        &upstream,
    ];
    args.extend_from_slice(extra);
    start(&args)
}

#[test]
fn serves_h2_and_http11_and_marks_https() {
    let app = Backend::start("legacy");
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), &new_cert());
    let (_tls, addr) = sidecar(&app, dir.path(), &[]);
    let url = format!("https://{addr}/");
    let (v2, ok) = curl(
        &[
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ],
        &url,
    );
    assert!(ok);
    assert_eq!(v2, "2 200");
    let (v1, ok) = curl(
        &[
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ],
        &url,
    );
    assert!(ok);
    assert_eq!(v1, "1.1 200");
    let (body, _) = curl(&[], &url);
    assert_eq!(body, "legacy");
    let headers: std::collections::HashMap<String, String> =
        app.last_headers().into_iter().collect();
    assert_eq!(headers["x-forwarded-proto"], "https");
}

#[test]
fn swapping_cert_files_changes_the_certificate_without_cutting_a_download() {
    let app = Backend::start("legacy");
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (new_cert(), new_cert());
    install(dir.path(), &old);
    let (_tls, addr) = sidecar(&app, dir.path(), &[]);
    let url = format!("https://{addr}/");
    let (shown, _) = curl(&["-o", "/dev/null", "-w", "%{certs}"], &url);
    assert_eq!(first_cert_body(&shown), first_cert_body(&old.cert_pem));

    // 4 MB in 40 chunks, 50 ms apart: about two seconds on the old certificate.
    let download_url = format!("https://{addr}/download?bytes=4000000&chunk=100000&chunk_ms=50");
    let download = std::thread::spawn(move || {
        curl(
            &["-o", "/dev/null", "-w", "%{size_download} %{http_code}"],
            &download_url,
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    install(dir.path(), &new);
    assert!(
        eventually(Duration::from_secs(10), || {
            let (shown, _) = curl(&["-o", "/dev/null", "-w", "%{certs}"], &url);
            shown.contains("BEGIN CERTIFICATE")
                && first_cert_body(&shown) == first_cert_body(&new.cert_pem)
        }),
        "the new certificate is served"
    );
    let (result, ok) = download.join().unwrap();
    assert!(ok, "download failed: {result}");
    assert_eq!(result, "4000000 200");
}

#[test]
fn a_broken_cert_swap_keeps_the_old_certificate() {
    let app = Backend::start("legacy");
    let dir = tempfile::tempdir().unwrap();
    let old = new_cert();
    install(dir.path(), &old);
    let (tls, addr) = sidecar(&app, dir.path(), &[]);
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let (shown, ok) = curl(
        &["-o", "/dev/null", "-w", "%{certs}"],
        &format!("https://{addr}/"),
    );
    assert!(ok);
    assert_eq!(first_cert_body(&shown), first_cert_body(&old.cert_pem));
    assert!(
        tls.output().contains("keeping the old one"),
        "{}",
        tls.output()
    );
}

#[test]
fn plain_listener_redirects_to_https() {
    let app = Backend::start("legacy");
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), &new_cert());
    let plain = free_addr();
    let plain_s = plain.to_string();
    let (_tls, addr) = sidecar(&app, dir.path(), &["--redirect-http", &plain_s]);
    let resp = get(plain, "/some/page?x=1");
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header("location"),
        Some(format!("https://127.0.0.1:{}/some/page?x=1", addr.port()).as_str())
    );
    assert_eq!(app.requests(), 0);
}

#[test]
fn bad_cert_files_exit_2() {
    let app = Backend::start("legacy");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "junk").unwrap();
    std::fs::write(dir.path().join("key.pem"), "junk").unwrap();
    let out = Command::new(PODKIT)
        .args([
            "sidecar",
            "tls",
            "--listen",
            &free_addr().to_string(),
            "--admin",
            &free_addr().to_string(),
        ])
        .args(["--cert", dir.path().join("cert.pem").to_str().unwrap()])
        .args(["--key", dir.path().join("key.pem").to_str().unwrap()])
        .args(["--upstream", &app.addr.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cert.pem"), "{stderr}");
}
