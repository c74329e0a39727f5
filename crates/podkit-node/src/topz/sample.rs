//! Reading the process table from `/proc` (I/O) and turning two readings into rows with
//! CPU % over the interval between them (pure).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// One process as read from `/proc`, before any computation.
#[derive(Debug, Clone, PartialEq)]
pub struct RawProcess {
    pub pid: i32,
    pub ppid: i32,
    pub uid: Option<u32>,
    /// The short name (`comm`), used when the command line is empty (kernel threads, zombies).
    pub comm: String,
    pub cmdline: Vec<String>,
    pub state: char,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
    pub rss_bytes: u64,
    pub vsize_bytes: u64,
    pub threads: i64,
    /// Open file descriptors; `None` when not permitted to look.
    pub open_fds: Option<usize>,
    /// The `PODKIT_POD` of its environment: the pod `podkit up` started it in.
    pub pod: Option<String>,
}

/// A reading of the whole process table at one instant.
#[derive(Debug, Clone)]
pub struct Reading {
    /// Monotonic time of the reading.
    pub at: std::time::Instant,
    pub processes: Vec<RawProcess>,
}

/// Machine facts needed to turn ticks into times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    pub ticks_per_second: u64,
    /// Boot time, seconds since the Unix epoch.
    pub boot_time: u64,
}

/// One row of `/topz`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessRow {
    pub pid: i32,
    pub ppid: i32,
    pub user: String,
    pub command: String,
    /// One-letter state as in `ps` (R, S, D, Z, T, I...).
    pub state: String,
    /// CPU use over the sampling interval; 100 is one core fully busy.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    pub vsize_bytes: u64,
    pub threads: i64,
    pub open_fds: Option<usize>,
    /// Start time, RFC 3339 UTC.
    pub start_time: String,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// The pod it runs in under `podkit up`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// Reads every process visible in this PID namespace. Processes that exit while being
/// read are skipped.
pub fn read_processes() -> std::io::Result<Reading> {
    let at = std::time::Instant::now();
    let all = procfs::process::all_processes().map_err(std::io::Error::other)?;
    let page_size = procfs::page_size();
    let mut processes = Vec::new();
    for process in all.flatten() {
        let Ok(stat) = process.stat() else { continue };
        processes.push(RawProcess {
            pid: stat.pid,
            ppid: stat.ppid,
            uid: process.uid().ok(),
            comm: stat.comm.clone(),
            cmdline: process.cmdline().unwrap_or_default(),
            state: stat.state,
            cpu_ticks: stat.utime + stat.stime,
            start_ticks: stat.starttime,
            rss_bytes: stat.rss * page_size,
            vsize_bytes: stat.vsize,
            threads: stat.num_threads,
            open_fds: process.fd_count().ok(),
            pod: process.environ().ok().and_then(|env| {
                env.get(std::ffi::OsStr::new("PODKIT_POD"))
                    .map(|v| v.to_string_lossy().into_owned())
            }),
        });
    }
    Ok(Reading { at, processes })
}

/// The clock facts of this machine.
pub fn clock() -> std::io::Result<Clock> {
    Ok(Clock {
        ticks_per_second: procfs::ticks_per_second(),
        boot_time: procfs::boot_time_secs().map_err(std::io::Error::other)?,
    })
}

/// Builds rows from the current reading; CPU % is measured against the previous reading
/// of the same process (same pid and start time). A process not in `previous` is measured
/// over its own lifetime, capped to the interval.
pub fn rows(
    previous: &Reading,
    current: &Reading,
    clock: Clock,
    now: SystemTime,
    user_name: &mut impl FnMut(u32) -> String,
) -> Vec<ProcessRow> {
    let elapsed = current.at.saturating_duration_since(previous.at);
    let before: HashMap<(i32, u64), u64> = previous
        .processes
        .iter()
        .map(|p| ((p.pid, p.start_ticks), p.cpu_ticks))
        .collect();
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let tps = clock.ticks_per_second.max(1) as f64;
    current
        .processes
        .iter()
        .map(|p| {
            let start_seconds = clock.boot_time as f64 + p.start_ticks as f64 / tps;
            let (ticks, window) = match before.get(&(p.pid, p.start_ticks)) {
                Some(&earlier) => (p.cpu_ticks.saturating_sub(earlier), elapsed.as_secs_f64()),
                None => {
                    let age = (now_secs - start_seconds).max(0.0);
                    let window = if elapsed.is_zero() {
                        age
                    } else {
                        age.min(elapsed.as_secs_f64())
                    };
                    (p.cpu_ticks, window)
                }
            };
            let cpu_percent = if window > 0.0 {
                round1(ticks as f64 / tps / window * 100.0)
            } else {
                0.0
            };
            ProcessRow {
                pid: p.pid,
                ppid: p.ppid,
                user: p
                    .uid
                    .map(&mut *user_name)
                    .unwrap_or_else(|| "?".to_string()),
                command: command_line(p),
                state: p.state.to_string(),
                cpu_percent,
                rss_bytes: p.rss_bytes,
                vsize_bytes: p.vsize_bytes,
                threads: p.threads,
                open_fds: p.open_fds,
                start_time: rfc3339(start_seconds),
                start_time_seconds: (start_seconds * 100.0).round() / 100.0,
                pod: p.pod.clone(),
            }
        })
        .collect()
}

/// The command line as `ps` shows it: arguments joined by spaces, or `[comm]` if empty.
fn command_line(p: &RawProcess) -> String {
    if p.cmdline.is_empty() {
        format!("[{}]", p.comm)
    } else {
        p.cmdline.join(" ")
    }
}

fn rfc3339(epoch_seconds: f64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs_f64(epoch_seconds.max(0.0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn raw(pid: i32, ppid: i32, cpu_ticks: u64, start_ticks: u64) -> RawProcess {
        RawProcess {
            pid,
            ppid,
            uid: Some(0),
            comm: format!("p{pid}"),
            cmdline: vec![format!("/bin/p{pid}"), "--flag".into()],
            state: 'S',
            cpu_ticks,
            start_ticks,
            rss_bytes: 4096,
            vsize_bytes: 8192,
            threads: 1,
            open_fds: Some(3),
            pod: None,
        }
    }

    #[test]
    fn cpu_percent_over_the_interval() {
        let t0 = Instant::now();
        let clock = Clock {
            ticks_per_second: 100,
            boot_time: 1_000_000,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000 + 10_000);
        let prev = Reading {
            at: t0,
            processes: vec![raw(1, 0, 500, 0), raw(2, 1, 100, 50)],
        };
        let cur = Reading {
            at: t0 + Duration::from_secs(2),
            // pid 1 used 1 s of CPU in 2 s; pid 2 used 4 s in 2 s (two cores busy).
            processes: vec![raw(1, 0, 600, 0), raw(2, 1, 500, 50)],
        };
        let rows = rows(&prev, &cur, clock, now, &mut |_| "root".into());
        assert_eq!(rows[0].cpu_percent, 50.0);
        assert_eq!(rows[1].cpu_percent, 200.0);
        assert_eq!(rows[0].command, "/bin/p1 --flag");
        assert_eq!(rows[0].user, "root");
        assert_eq!(rows[1].start_time_seconds, 1_000_000.5);
    }

    #[test]
    fn reused_pid_is_a_new_process() {
        let t0 = Instant::now();
        let clock = Clock {
            ticks_per_second: 100,
            boot_time: 0,
        };
        // The old pid 7 started at tick 0; a new pid 7 started at tick 900 (9 s after boot).
        let prev = Reading {
            at: t0,
            processes: vec![raw(7, 1, 10_000, 0)],
        };
        let cur = Reading {
            at: t0 + Duration::from_secs(1),
            processes: vec![raw(7, 1, 50, 900)],
        };
        let now = UNIX_EPOCH + Duration::from_secs(10);
        let rows = rows(&prev, &cur, clock, now, &mut |_| "root".into());
        // 0.5 s of CPU over its 1 s of life.
        assert_eq!(rows[0].cpu_percent, 50.0);
    }

    #[test]
    fn kernel_threads_show_comm_in_brackets() {
        let mut p = raw(2, 0, 0, 0);
        p.cmdline.clear();
        p.comm = "kthreadd".into();
        assert_eq!(command_line(&p), "[kthreadd]");
    }
}
