//! `owner`: ownership on a 3-member etcd cluster — lock acquire+release cycles per second
//! with `podkit lock` against `etcdctl lock` (etcd's own recipe), and leader failover time
//! after the owner is killed, `podkit elect` against `etcdctl lock` with the same TTL
//! (`etcdctl elect` in etcd 3.4 has no TTL flag: its sessions last 60 s).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podkit_testkit::servers::EtcdCluster;

use crate::harness::{pin, pinned, Measurement, Report, CLIENT_CORES, SERVER_CORES};
use crate::podkit_binary;

/// Runs the benchmark.
pub fn run(quick: bool) -> Result<Report, String> {
    let cycles = if quick { 5 } else { 60 };
    let failovers = if quick { 1 } else { 5 };
    let mut report = Report::new(
        "owner",
        "ownership on a 3-member etcd cluster: podkit lock/elect vs etcdctl lock",
        quick,
    );
    report.unit = "per second";
    report.pinning = Some(format!(
        "the three etcd members on core {SERVER_CORES}, the lock commands on core {CLIENT_CORES} (taskset)"
    ));
    report.setup.push(format!(
        "etcd 3.4 (Debian's etcd-server), three members on loopback; {cycles} sequential \
         `podkit lock bench --ttl 10s -- true` and as many `etcdctl lock --ttl 10 bench true` \
         (each a whole process: connect, lease, lock, run, unlock, revoke); failover: an owner \
         holding with TTL 2 s is SIGKILLed while a second one waits, {failovers} times each, \
         timed from the kill until the second one's command starts"
    ));
    report.setup.push(format!(
        "The same {cycles} cycles by both clients on `podkit store serve` (one member, \
         fsync per write, pinned like the etcd members): rows marked `· podkit store`"
    ));
    let mut cluster = EtcdCluster::start(3).map_err(|e| e.to_string())?;
    for member in &mut cluster.members {
        if let Some(pid) = member.process().pid() {
            pin(pid, SERVER_CORES)?;
        }
    }
    let endpoints = cluster.endpoints();
    let store = format!("etcd://{endpoints}");
    let etcdctl = |args: &[&str]| {
        let mut command = pinned(CLIENT_CORES, "etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(args);
        command
    };

    let podkit = podkit_binary().to_string_lossy().into_owned();
    let (ours, theirs) = lock_cycles(&podkit, &endpoints, cycles)?;
    report
        .measurements
        .push(rate("podkit lock", "acquire+release", cycles, ours));
    report
        .measurements
        .push(rate("etcdctl lock", "acquire+release", cycles, theirs));

    // The same cycles on the embedded store, by both clients.
    let embedded = EmbeddedStore::start(&podkit)?;
    let (ours, theirs) = lock_cycles(&podkit, &embedded.listen.to_string(), cycles)?;
    drop(embedded);
    report.measurements.push(rate(
        "podkit lock · podkit store",
        "acquire+release",
        cycles,
        ours,
    ));
    report.measurements.push(rate(
        "etcdctl lock · podkit store",
        "acquire+release",
        cycles,
        theirs,
    ));

    // Failover.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (mut ours, mut theirs) = (Duration::ZERO, Duration::ZERO);
    for round in 0..failovers {
        ours += failover(dir.path(), &format!("p{round}"), |marker, name| {
            let mut command = pinned(CLIENT_CORES, &podkit);
            command.args([
                "elect",
                name,
                "--store",
                &store,
                "--ttl",
                "2s",
                "--admin",
                "127.0.0.1:0",
            ]);
            command.args(["--log-level", "warn", "--", "sh", "-c"]);
            command.arg(format!("touch {}; exec sleep 600", marker.display()));
            command
        })?;
        theirs += failover(dir.path(), &format!("e{round}"), |marker, name| {
            let mut command = etcdctl(&["lock", "--ttl", "2", name, "--", "sh", "-c"]);
            command.arg(format!("touch {}; exec sleep 600", marker.display()));
            command
        })?;
    }
    report.measurements.push(rate(
        "podkit elect",
        "failovers after a kill",
        failovers,
        ours,
    ));
    report.measurements.push(rate(
        "etcdctl lock",
        "failovers after a kill",
        failovers,
        theirs,
    ));
    report
        .ratios
        .push(("podkit lock".into(), "etcdctl lock".into()));
    report
        .ratios
        .push(("podkit elect".into(), "etcdctl lock".into()));
    report
        .ratios
        .push(("podkit lock · podkit store".into(), "etcdctl lock".into()));
    report
        .ratios
        .push(("etcdctl lock · podkit store".into(), "etcdctl lock".into()));
    report.notes.push(
        "An uncontended `podkit lock` cycle sends three requests: a lease grant, one \
         transaction that creates its key and reads the oldest key of the lock, and the \
         revoke that deletes its key. Process start counts too: podkit links no system \
         TLS or HTTP library."
            .into(),
    );
    report.notes.push(format!(
        "Failover is bounded by the TTL in both: mean {:.2} s for podkit elect, {:.2} s for \
         etcdctl lock, against a 2 s TTL.",
        ours.as_secs_f64() / failovers as f64,
        theirs.as_secs_f64() / failovers as f64
    ));
    Ok(report)
}

/// `podkit store serve` on a free port, pinned to the server cores; stopped on drop.
struct EmbeddedStore {
    child: Child,
    listen: std::net::SocketAddr,
    _data: tempfile::TempDir,
}

impl EmbeddedStore {
    fn start(podkit: &str) -> Result<EmbeddedStore, String> {
        let data = tempfile::tempdir().map_err(|e| e.to_string())?;
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], podkit_testkit::free_port()));
        let admin = std::net::SocketAddr::from(([127, 0, 0, 1], podkit_testkit::free_port()));
        let child = pinned(SERVER_CORES, podkit)
            .args(["store", "serve", "--log-level", "warn"])
            .arg("--data")
            .arg(data.path())
            .args([
                "--listen",
                &listen.to_string(),
                "--admin",
                &admin.to_string(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("podkit store serve: {e}"))?;
        let store = EmbeddedStore {
            child,
            listen,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if podkit_testkit::probe::http_get(admin, "/readyz").is_ok_and(|r| r.status == 200) {
                return Ok(store);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("podkit store serve did not become ready".into())
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cycles` whole-process lock cycles by `podkit lock` and by `etcdctl lock` against the
/// store at `endpoints`, alternating so that drift in the machine touches both alike;
/// the total time of each.
fn lock_cycles(
    podkit: &str,
    endpoints: &str,
    cycles: usize,
) -> Result<(Duration, Duration), String> {
    let store = format!("etcd://{endpoints}");
    let (mut ours, mut theirs) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..cycles {
        ours += timed(pinned(CLIENT_CORES, podkit).args([
            "lock",
            "bench",
            "--store",
            &store,
            "--ttl",
            "10s",
            "--log-level",
            "warn",
            "--",
            "true",
        ]))?;
        theirs += timed(
            pinned(CLIENT_CORES, "etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={endpoints}"))
                .args(["lock", "--ttl", "10", "bench", "true"]),
        )?;
    }
    Ok((ours, theirs))
}

fn rate(target: &str, case: &str, count: usize, total: Duration) -> Measurement {
    Measurement {
        target: target.to_string(),
        case: case.to_string(),
        requests_per_second: count as f64 / total.as_secs_f64(),
        p50_ms: total.as_secs_f64() * 1000.0 / count as f64,
        p99_ms: f64::NAN,
    }
}

fn timed(command: &mut Command) -> Result<Duration, String> {
    let started = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{command:?} failed: {status}"));
    }
    Ok(started.elapsed())
}

/// Starts an owner and a waiter made by `owner(marker, name)`, kills the owner's whole
/// process group once it runs its command, and returns how long the waiter took to run
/// its own.
fn failover(
    dir: &Path,
    name: &str,
    owner: impl Fn(&Path, &str) -> Command,
) -> Result<Duration, String> {
    use std::os::unix::process::CommandExt;
    let first_marker = dir.join(format!("{name}-first"));
    let second_marker = dir.join(format!("{name}-second"));
    let spawn = |marker: &Path| -> Result<Child, String> {
        owner(marker, name)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())
    };
    let mut first = spawn(&first_marker)?;
    wait_for(&first_marker, Duration::from_secs(20))?;
    let mut second = spawn(&second_marker)?;
    // Let the second one reach its wait.
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    kill_group(&first);
    let _ = first.wait();
    wait_for(&second_marker, Duration::from_secs(30))?;
    let took = killed.elapsed();
    kill_group(&second);
    let _ = second.wait();
    Ok(took)
}

fn kill_group(child: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
}

fn wait_for(path: &Path, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if path.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!(
        "{} did not appear within {timeout:?}",
        path.display()
    ))
}
