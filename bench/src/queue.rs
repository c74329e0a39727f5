//! `queue`: items per second through `podkit queue run` (durable state on) against
//! `xargs -P N` over the same item list, with a trivial worker (`true`), both on the same
//! two cores.

use crate::harness::start_podkit;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use podkit_testkit::free_port;

use crate::harness::{median, Measurement, Report};
use crate::podkit_binary;

const CORES: &str = "0,1";

/// Runs the benchmark.
pub fn run(quick: bool) -> Result<Report, String> {
    let items = if quick { 200 } else { 3_000 };
    // Rounds interleave podkit and xargs so that both see the same machine; each figure
    // is the median round.
    let rounds = if quick { 1 } else { 5 };
    let mut report = Report::new(
        "queue",
        "a work queue with a trivial worker: podkit queue run vs xargs -P",
        quick,
    );
    report.unit = "items/s";
    report.pinning = Some(format!(
        "everything on cores {CORES} (taskset): the manager, its source and workers; xargs and its workers"
    ));
    report.setup.push(format!(
        "{items} items, {rounds} rounds interleaved (podkit, then xargs), the median round reported; worker `true` run by `sh -c` for each item in both; podkit queue run \
         --parallelism N --exit-when-done with its state database synced on every batch of outcomes, \
         item files under /dev/shm and per-item logs (made when a worker writes), fetching \
         each item from `podkit source file`; \
         xargs -P N -I{{}} sh -c true _ {{}} over the list of names"
    ));
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let names: Vec<String> = (0..items).map(|i| format!("item-{i:06}")).collect();
    let items_file = dir.path().join("items.jsonl");
    let lines: String = names
        .iter()
        .map(|n| format!("{{\"name\":\"{n}\",\"data\":{{\"n\":1}}}}\n"))
        .collect();
    std::fs::write(&items_file, lines).map_err(|e| e.to_string())?;
    let names_file = dir.path().join("names.txt");
    std::fs::write(&names_file, names.join("\n") + "\n").map_err(|e| e.to_string())?;

    let listen = format!("127.0.0.1:{}", free_port());
    let _source = start_podkit(
        &[
            "source",
            "file",
            "--path",
            &items_file.to_string_lossy(),
            "--listen",
            &listen,
            "--threads",
            "1",
            "--log-level",
            "warn",
        ],
        CORES,
    )?;

    for parallelism in [1, 4] {
        let mut podkit_seconds = Vec::new();
        let mut xargs_seconds = Vec::new();
        for round in 0..rounds {
            let state = dir.path().join(format!("state-{parallelism}-{round}"));
            podkit_seconds.push(timed(
                Command::new("taskset")
                    .args(["-c", CORES])
                    .arg(podkit_binary())
                    .args(["queue", "run", "--source", &format!("http://{listen}")])
                    .args(["--worker", "true", "--state", &state.to_string_lossy()])
                    .args(["--parallelism", &parallelism.to_string()])
                    .args([
                        "--poll",
                        "100ms",
                        "--exit-when-done",
                        "--admin",
                        "127.0.0.1:0",
                    ])
                    .args(["--log-level", "warn"]),
            )?);
            check_done(&state, items)?;
            xargs_seconds.push(timed(
                Command::new("taskset")
                    .args(["-c", CORES, "xargs", "-P", &parallelism.to_string()])
                    .args(["-I{}", "sh", "-c", "true", "_", "{}"])
                    .stdin(std::fs::File::open(&names_file).map_err(|e| e.to_string())?),
            )?);
        }
        report.measurements.push(measurement(
            "podkit",
            parallelism,
            items,
            median(podkit_seconds).unwrap_or(f64::NAN),
        ));
        report.measurements.push(measurement(
            "xargs",
            parallelism,
            items,
            median(xargs_seconds).unwrap_or(f64::NAN),
        ));
    }
    report.ratios.push(("podkit".into(), "xargs".into()));
    report.notes.push(
        "podkit's figure includes its start, the first listing of the source, an HTTP fetch \
         per item and the state database's fsyncs; xargs keeps no state and retries nothing."
            .into(),
    );
    report.notes.push(
        "The manager fetches the next items' data while workers run, and a reaper process \
         beside it (told of each worker's process group over a pipe) stops the workers if \
         the manager dies, so workers are spawned without forking the manager."
            .into(),
    );
    Ok(report)
}

/// The figure of `items` run in `seconds` by `target` at `parallelism`.
fn measurement(target: &str, parallelism: usize, items: usize, seconds: f64) -> Measurement {
    Measurement {
        target: target.to_string(),
        case: format!("true, parallelism {parallelism}"),
        requests_per_second: items as f64 / seconds,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    }
}

/// Runs `command` to completion and returns the seconds it took.
fn timed(command: &mut Command) -> Result<f64, String> {
    let started = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{command:?} failed: {status}"));
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Checks that the manager recorded every item as done, as `podkit queue status` reads
/// its state.
fn check_done(state: &Path, items: usize) -> Result<(), String> {
    let output = Command::new(podkit_binary())
        .args(["queue", "status", "--json", "--state"])
        .arg(state)
        .output()
        .map_err(|e| format!("podkit queue status: {e}"))?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("podkit queue status --json: {e}"))?;
    let done = report["done"].as_u64().unwrap_or(0) as usize;
    if done == items {
        Ok(())
    } else {
        Err(format!("the state records {done} of {items} items done"))
    }
}
