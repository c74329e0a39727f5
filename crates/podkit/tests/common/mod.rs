//! Helpers shared by the podkit binary's integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use podkit_testkit::free_port;
use podkit_testkit::podkit::Podkit;
use podkit_testkit::probe::{http_get, http_request, HttpResponse};

pub mod stores;

pub const PODKIT: &str = env!("CARGO_BIN_EXE_podkit");

/// A loopback address on a free port.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Starts `podkit <args> --listen <free>` and waits until it is ready.
pub fn start(args: &[&str]) -> (Podkit, SocketAddr) {
    let listen = free_addr();
    let listen_s = listen.to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--listen", &listen_s, "--log-format", "text"]);
    let mut p = Podkit::start(Path::new(PODKIT), &all).expect("start podkit");
    p.wait_ready()
        .unwrap_or_else(|e| panic!("not ready: {e}\n{}", p.output()));
    (p, listen)
}

/// GET `path`, returning the response.
pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// GET with headers.
pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_request(addr, "GET", path, headers, b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The backend that answered.
pub fn backend_of(resp: &HttpResponse) -> String {
    resp.header("x-backend").unwrap_or("").to_string()
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// The value of a metric line `name{labels...} value` whose text contains every needle.
pub fn metric(admin: SocketAddr, name: &str, needles: &[&str]) -> Option<f64> {
    let text = get(admin, "/metrics").text();
    text.lines()
        .filter(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Asserts that `/metrics` of the component at `admin` passes `promtool check metrics`
/// without a single lint finding.
pub fn assert_promtool_clean(admin: SocketAddr) {
    use std::io::Write;
    let body = get(admin, "/metrics").body;
    let promtool =
        podkit_testkit::process::find_binary("promtool", "prometheus").expect("promtool");
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(&body)
        .expect("write metrics");
    let out = check.wait_with_output().expect("promtool output");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a certificate for `localhost` signed by it.
pub fn private_ca_and_leaf(ca: &Path, cert: &Path, key: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: with the default one for both, OpenSSL takes the leaf as self-signed.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "podkit test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(ca, ca_cert.pem()).unwrap();
    std::fs::write(cert, leaf.pem()).unwrap();
    std::fs::write(key, leaf_key.serialize_pem()).unwrap();
}
