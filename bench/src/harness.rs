//! What every benchmark shares: core pinning, the machine description, and the results
//! file (the command, the machine, each figure, and the ratios).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Core that servers and proxies are pinned to.
pub const SERVER_CORES: &str = "0";
/// Core that the load generator is pinned to.
pub const CLIENT_CORES: &str = "1";

/// Pins every thread of a running process, and of every process it has started, to
/// `cores` (`taskset -a -p -c`): a server that forks its workers (nginx's master, Varnish's
/// manager) is pinned whole, not only its parent process.
pub fn pin(pid: u32, cores: &str) -> Result<(), String> {
    for pid in process_tree(pid) {
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", cores, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("taskset (Debian package util-linux): {e}"))?;
        if !status.success() {
            return Err(format!("taskset -p {pid} failed: {status}"));
        }
    }
    Ok(())
}

/// `pid` and its descendants, parents first (from `/proc/PID/task/TID/children`).
fn process_tree(pid: u32) -> Vec<u32> {
    let mut tree = vec![pid];
    let mut next = 0;
    while let Some(&parent) = tree.get(next) {
        next += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            tree.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    tree
}

/// Starts `podkit <args>` (built beside this binary), waits until it is ready, and pins
/// every thread of it to `cores`.
pub fn start_podkit(args: &[&str], cores: &str) -> Result<podkit_testkit::podkit::Podkit, String> {
    let mut podkit = podkit_testkit::podkit::Podkit::start(&crate::podkit_binary(), args)
        .map_err(|e| e.to_string())?;
    podkit.wait_ready().map_err(|e| e.to_string())?;
    pin(podkit.process().pid().unwrap_or(0), cores)?;
    Ok(podkit)
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// `VmRSS` of a process and of every process it started (Varnish's manager and child),
/// in KiB.
pub fn tree_rss_kib(pid: u32) -> Result<u64, String> {
    process_tree(pid).into_iter().map(rss_kib).sum()
}

/// A command prefixed with `taskset -c cores`.
pub fn pinned(cores: &str, program: &str) -> Command {
    let mut command = Command::new("taskset");
    command.args(["-c", cores, program]);
    command
}

/// Runs a command and returns its stdout, or an error with its stderr.
pub fn output(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The middle value (the upper one of an even count); `None` when there is none.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// One measured figure set: a target (podkit, nginx, direct...) on one case.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub target: String,
    pub case: String,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Measurement {
    /// Each figure's median over `runs` of one target on one case (named as the first
    /// run); `None` when there are no runs.
    pub fn median_of(runs: &[Measurement]) -> Option<Measurement> {
        let figure = |get: fn(&Measurement) -> f64| median(runs.iter().map(get).collect());
        Some(Measurement {
            requests_per_second: figure(|m| m.requests_per_second)?,
            p50_ms: figure(|m| m.p50_ms)?,
            p99_ms: figure(|m| m.p99_ms)?,
            ..runs.first()?.clone()
        })
    }
}

/// Measures every target `rounds` times, interleaved so that slow drifts of the machine
/// fall on every target alike, with the order reversed every other round so that no
/// target always runs right after another's load. Returns each target's runs, in the
/// order of `targets`.
pub fn alternating_rounds<T, R>(
    targets: &[T],
    rounds: usize,
    mut measure: impl FnMut(&T) -> Result<R, String>,
) -> Result<Vec<Vec<R>>, String> {
    let mut runs: Vec<Vec<R>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds.max(1) {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            runs[i].push(measure(&targets[i])?);
        }
    }
    Ok(runs)
}

/// How long each CPU has been busy and in all, from `/proc/stat`: two snapshots around a
/// run tell which side of it filled its core.
#[derive(Debug, Clone, Default)]
pub struct CpuTimes(std::collections::BTreeMap<String, (u64, u64)>);

impl CpuTimes {
    /// The counters now.
    pub fn now() -> Result<CpuTimes, String> {
        let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
        Ok(CpuTimes::parse(&stat))
    }

    /// The `cpuN` lines of `/proc/stat`: busy is everything but idle and iowait.
    pub fn parse(stat: &str) -> CpuTimes {
        let mut cpus = std::collections::BTreeMap::new();
        for line in stat.lines() {
            let mut fields = line.split_whitespace();
            let Some(name) = fields
                .next()
                .filter(|n| n.len() > 3 && n.starts_with("cpu"))
            else {
                continue;
            };
            // user nice system idle iowait irq softirq steal
            let ticks: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
            if ticks.len() == 8 {
                let total: u64 = ticks.iter().sum();
                cpus.insert(name[3..].to_string(), (total - ticks[3] - ticks[4], total));
            }
        }
        CpuTimes(cpus)
    }

    /// The percentage of `core`'s time (its number, as in [`SERVER_CORES`]) spent busy
    /// between `earlier` and these counters.
    pub fn busy_percent(&self, earlier: &CpuTimes, core: &str) -> Option<f64> {
        let (busy, total) = self.0.get(core)?;
        let (busy_before, total_before) = earlier.0.get(core)?;
        let total = total.checked_sub(*total_before).filter(|t| *t > 0)?;
        Some(100.0 * busy.saturating_sub(*busy_before) as f64 / total as f64)
    }
}

/// The machine's TCP counters that tell a loopback run's trouble: segments retransmitted
/// (`/proc/net/snmp`) and segments that arrived out of order (`/proc/net/netstat`). Two
/// snapshots around a run give what happened during it, for every process alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounters {
    pub retransmitted: u64,
    pub out_of_order: u64,
}

impl TcpCounters {
    /// The counters now.
    pub fn now() -> Result<TcpCounters, String> {
        let read = |path: &str| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
        Ok(TcpCounters::parse(
            &read("/proc/net/snmp")?,
            &read("/proc/net/netstat")?,
        ))
    }

    /// Reads `Tcp: RetransSegs` and `TcpExt: TCPOFOQueue` (0 when absent).
    pub fn parse(snmp: &str, netstat: &str) -> TcpCounters {
        TcpCounters {
            retransmitted: proc_net_counter(snmp, "Tcp", "RetransSegs").unwrap_or(0),
            out_of_order: proc_net_counter(netstat, "TcpExt", "TCPOFOQueue").unwrap_or(0),
        }
    }

    /// What changed from `earlier` to these counters.
    pub fn since(&self, earlier: &TcpCounters) -> TcpCounters {
        TcpCounters {
            retransmitted: self.retransmitted.saturating_sub(earlier.retransmitted),
            out_of_order: self.out_of_order.saturating_sub(earlier.out_of_order),
        }
    }
}

/// One counter of a `/proc/net` table: a line `Group: Name Name ...` followed by a line
/// `Group: value value ...`.
fn proc_net_counter(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let index = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(index)?.parse().ok()
}

/// The TCP congestion control the machine's sockets start with.
pub fn congestion_control() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// A benchmark's report, written as markdown.
#[derive(Debug)]
pub struct Report {
    pub name: String,
    pub title: String,
    pub quick: bool,
    /// How the load was generated and what was configured, in prose.
    pub setup: Vec<String>,
    pub measurements: Vec<Measurement>,
    /// Pairs (target, baseline) whose ratios are reported for every case.
    pub ratios: Vec<(String, String)>,
    /// Further sections, (heading, markdown body), printed before the notes.
    pub sections: Vec<(String, String)>,
    pub notes: Vec<String>,
    /// What the throughput counts (`requests/s` unless a benchmark says otherwise).
    pub unit: &'static str,
    /// How processes were pinned, when not the usual server/client split.
    pub pinning: Option<String>,
}

impl Report {
    /// An empty report for benchmark `name`.
    pub fn new(name: &str, title: &str, quick: bool) -> Report {
        Report {
            name: name.to_string(),
            title: title.to_string(),
            quick,
            setup: Vec::new(),
            measurements: Vec::new(),
            ratios: Vec::new(),
            sections: Vec::new(),
            notes: Vec::new(),
            unit: "requests/s",
            pinning: None,
        }
    }

    fn find(&self, target: &str, case: &str) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.target == target && m.case == case)
    }

    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {}: {}\n", self.name, self.title);
        let quick = if self.quick { " --quick" } else { "" };
        let _ = writeln!(md, "- Command: `scripts/bench {}{quick}`", self.name);
        let _ = writeln!(md, "- Date: {}", today());
        let _ = writeln!(md, "- Machine: {}", machine());
        let _ = writeln!(md, "- podkit: {}", revision());
        let pinning = self.pinning.clone().unwrap_or_else(|| {
            format!("servers and proxies on core {SERVER_CORES}, load generator on core {CLIENT_CORES} (taskset)")
        });
        let _ = writeln!(md, "- Pinning: {pinning}");
        for line in &self.setup {
            let _ = writeln!(md, "- {line}");
        }
        if self.quick {
            let _ = writeln!(
                md,
                "- Quick smoke run: short and noisy; not for comparison."
            );
        }
        let _ = writeln!(md, "\n## Figures\n");
        let _ = writeln!(md, "| case | target | {} | p50 ms | p99 ms |", self.unit);
        let _ = writeln!(md, "|---|---|---:|---:|---:|");
        // A latency that was not measured (NaN) shows as a dash.
        let ms = |v: f64| {
            if v.is_nan() {
                "-".to_string()
            } else {
                format!("{v:.3}")
            }
        };
        for m in &self.measurements {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {} |",
                m.case,
                m.target,
                m.requests_per_second,
                ms(m.p50_ms),
                ms(m.p99_ms)
            );
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(md, "\n## Ratios\n");
            let _ = writeln!(md, "| case | ratio | {} | p99 |", self.unit);
            let _ = writeln!(md, "|---|---|---:|---:|");
            let mut cases: Vec<&str> = Vec::new();
            for m in &self.measurements {
                if !cases.contains(&m.case.as_str()) {
                    cases.push(&m.case);
                }
            }
            for (target, baseline) in &self.ratios {
                for case in &cases {
                    if let (Some(t), Some(b)) = (self.find(target, case), self.find(baseline, case))
                    {
                        let p99 = t.p99_ms / b.p99_ms;
                        let p99 = if p99.is_nan() {
                            "-".to_string()
                        } else {
                            format!("{p99:.2}×")
                        };
                        let _ = writeln!(
                            md,
                            "| {case} | {target} / {baseline} | {:.2}× | {p99} |",
                            t.requests_per_second / b.requests_per_second,
                        );
                    }
                }
            }
        }
        for (heading, body) in &self.sections {
            let _ = writeln!(md, "\n## {heading}\n\n{}", body.trim_end());
        }
        if !self.notes.is_empty() {
            let _ = writeln!(md, "\n## Notes\n");
            for note in &self.notes {
                let _ = writeln!(md, "- {note}");
            }
        }
        md
    }

    /// Writes the report: `bench/results/<name>.md`, or `target/bench-quick/<name>.md` for
    /// a quick run (which must not replace committed results).
    pub fn write(&self, root: &Path) -> Result<PathBuf, String> {
        let dir = if self.quick {
            root.join("target").join("bench-quick")
        } else {
            root.join("bench").join("results")
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{}.md", self.name));
        std::fs::write(&path, self.markdown()).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// CPU model, core count and kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}

/// The revision of the tree this run started from (read once, at the first call, which
/// `main` makes before any benchmark runs: results files written later in the run do not
/// make it look modified).
pub fn revision() -> String {
    static REVISION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    REVISION.get_or_init(read_revision).clone()
}

fn read_revision() -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, rps: f64, p99: f64) -> Measurement {
        Measurement {
            target: target.into(),
            case: "c".into(),
            requests_per_second: rps,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
        }
    }

    #[test]
    fn each_figure_is_the_median_of_its_own_runs() {
        let runs = [
            run("a", 10.0, 9.0),
            run("a", 30.0, 1.0),
            run("a", 20.0, 5.0),
        ];
        let m = Measurement::median_of(&runs).unwrap();
        assert_eq!(
            (m.requests_per_second, m.p99_ms, m.p50_ms),
            (20.0, 5.0, 2.5)
        );
        assert_eq!(m.target, "a");
        assert!(Measurement::median_of(&[]).is_none());
    }

    #[test]
    fn cpu_busy_time_leaves_out_idle_and_iowait() {
        let before = CpuTimes::parse(
            "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 100 0 50 800 10 0 40 0 0 0\ncpu1 0 0 0 10 0 0 0 0 0 0\n",
        );
        let after = CpuTimes::parse(
            "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 160 0 70 810 10 0 50 0 0 0\ncpu1 0 0 0 10 0 0 0 0 0 0\n",
        );
        assert_eq!(after.busy_percent(&before, "0"), Some(90.0));
        assert_eq!(after.busy_percent(&before, "1"), None, "no time passed");
        assert_eq!(after.busy_percent(&before, "7"), None);
    }

    #[test]
    fn tcp_counters_come_from_the_named_columns() {
        let snmp = "Ip: Forwarding\nIp: 1\nTcp: RtoAlgorithm InSegs RetransSegs\nTcp: 1 500 42\n";
        let netstat =
            "TcpExt: SyncookiesSent TCPOFOQueue\nTcpExt: 0 7\nIpExt: InNoRoutes\nIpExt: 3\n";
        let counters = TcpCounters::parse(snmp, netstat);
        assert_eq!((counters.retransmitted, counters.out_of_order), (42, 7));
        let later = TcpCounters {
            retransmitted: 50,
            out_of_order: 7,
        };
        assert_eq!(
            later.since(&counters),
            TcpCounters {
                retransmitted: 8,
                out_of_order: 0
            }
        );
        assert_eq!(TcpCounters::parse("", ""), TcpCounters::default());
    }

    #[test]
    fn a_process_tree_holds_the_children_a_process_started() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let tree = process_tree(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tree[0], std::process::id());
        assert!(tree.contains(&child.id()), "{tree:?} lacks {}", child.id());
    }

    #[test]
    fn rounds_alternate_which_target_goes_first() {
        let mut order = Vec::new();
        let runs = alternating_rounds(&["a", "b", "c"], 3, |t| {
            order.push(*t);
            Ok(order.len())
        })
        .unwrap();
        assert_eq!(order, ["a", "b", "c", "c", "b", "a", "a", "b", "c"]);
        assert_eq!(runs, [vec![1, 6, 7], vec![2, 5, 8], vec![3, 4, 9]]);
    }
}
