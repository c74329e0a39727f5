//! `podkit-bench NAME [--quick]`: runs one side-by-side benchmark of podkit and the tool it
//! replaces, on pinned cores, and writes its results file. `scripts/bench` builds and runs
//! it; see `bench/README.md`.

mod cache;
mod harness;
mod httprate;
mod kv;
mod lb;
mod loadgen;
mod memload;
mod owner;
mod queue;
mod tls;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The benchmarks, by name.
const BENCHMARKS: [(&str, &str); 6] = [
    (
        "cache",
        "podkit cache vs Varnish: small and 1 MiB hits, and the miss path (wrk, httprate)",
    ),
    (
        "kv",
        "podkit ambassador shard vs nutcracker: Redis and memcache, idle-client memory",
    ),
    (
        "lb",
        "podkit lb vs nginx vs haproxy, round-robin over two backends (wrk)",
    ),
    (
        "owner",
        "podkit lock/elect vs etcdctl lock on 3-member etcd: cycles/s, failover",
    ),
    (
        "queue",
        "podkit queue run vs xargs -P: items/s with a trivial worker",
    ),
    (
        "tls",
        "podkit sidecar tls vs nginx: handshakes/s and keep-alive requests/s (wrk)",
    ),
];

/// The podkit binary built beside this one.
pub fn podkit_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("podkit")))
        .unwrap_or_else(|| PathBuf::from("podkit"))
}

/// Prints a load generator's summary line (what the `kv` and `cache` benchmarks read
/// back), or its error.
fn report_load(name: &str, result: Result<loadgen::Summary, String>) -> ExitCode {
    match result {
        Ok(summary) => {
            println!("{}", summary.line());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("podkit-bench: error: {name}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        // The load generators, run pinned by the benchmarks.
        Some("memload") => {
            let result = memload::Load::from_args(&args[1..]).and_then(|l| memload::run(&l));
            return report_load("memload", result);
        }
        Some("httprate") => {
            let result = httprate::Rate::from_args(&args[1..]).and_then(|r| httprate::run(&r));
            return report_load("httprate", result);
        }
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let names: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    if args
        .iter()
        .any(|a| a == "--help" || a == "-h" || a == "--list")
    {
        println!("usage: scripts/bench [NAME...] [--quick]\n\nbenchmarks:");
        for (name, about) in BENCHMARKS {
            println!("  {name:<8} {about}");
        }
        return ExitCode::SUCCESS;
    }
    let selected: Vec<&str> = if names.is_empty() {
        BENCHMARKS.iter().map(|(n, _)| *n).collect()
    } else {
        names
    };
    harness::revision();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().unwrap_or(root);
    for name in selected {
        let report = match name {
            "cache" => cache::run(quick),
            "kv" => kv::run(quick),
            "lb" => lb::run(quick),
            "owner" => owner::run(quick),
            "queue" => queue::run(quick),
            "tls" => tls::run(quick),
            other => {
                eprintln!("podkit-bench: error: unknown benchmark '{other}' (try --list)");
                return ExitCode::from(2);
            }
        };
        match report.and_then(|r| r.write(&root).map(|path| (r, path))) {
            Ok((report, path)) => {
                println!("{}", report.markdown());
                println!("written to {}", path.display());
            }
            Err(err) => {
                eprintln!("podkit-bench: error: {name}: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
