//! Telling the application that its configuration changed, by the means the book lists: a
//! signal (SIGHUP to reload; SIGKILL to have it restarted), or an HTTP reload endpoint.

use std::path::PathBuf;

use bytes::Bytes;
use http::{Method, Uri};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::http_fetch::HttpClient;

/// Which processes get the signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalTarget {
    /// The pid written in this file.
    PidFile(PathBuf),
    /// Every process whose name (`comm`, or the base name of `argv[0]`) is this.
    ProcessName(String),
}

/// The configured notifications, all of which run after each update.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    pub signal: Option<(Signal, SignalTarget)>,
    pub reload_url: Option<Uri>,
}

/// The signal and whom to send it to, from `--signal`, `--pid-file` and
/// `--process-name`; one without the other is an error naming the flag.
pub fn signal_plan(
    signal: Option<Signal>,
    pid_file: Option<&std::path::Path>,
    process_name: Option<&str>,
) -> Result<Option<(Signal, SignalTarget)>, podkit_core::ConfigError> {
    let target = match (pid_file, process_name) {
        (Some(file), _) => Some(SignalTarget::PidFile(file.to_path_buf())),
        (_, Some(name)) => Some(SignalTarget::ProcessName(name.to_string())),
        _ => None,
    };
    match (signal, target) {
        (Some(signal), Some(target)) => Ok(Some((signal, target))),
        (Some(_), None) => Err(podkit_core::ConfigError::flag(
            "--signal",
            "needs --pid-file or --process-name to know whom to signal",
        )),
        (None, Some(_)) => Err(podkit_core::ConfigError::flag(
            "--pid-file",
            "needs --signal (HUP, KILL, ...)",
        )),
        (None, None) => Ok(None),
    }
}

/// Parses `HUP`, `SIGHUP`, `hup` or a number.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("{n} is not a signal"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("'{text}' is not a signal name (HUP, USR1, KILL, ...)"))
}

impl Notifier {
    /// Runs every notification; the first error is returned, after trying them all.
    pub async fn notify(&self, client: &HttpClient) -> Result<String, String> {
        self.notify_with(client, &[]).await
    }

    /// Like [`Notifier::notify`], sending `headers` with the POST.
    pub async fn notify_with(
        &self,
        client: &HttpClient,
        headers: &[(&str, String)],
    ) -> Result<String, String> {
        let mut done = Vec::new();
        let mut first_error = None;
        if let Some((signal, target)) = &self.signal {
            match signal_processes(*signal, target) {
                Ok(pids) => done.push(format!("{signal} to {pids:?}")),
                Err(e) => first_error = Some(e),
            }
        }
        if let Some(url) = &self.reload_url {
            match client
                .request(Method::POST, url, headers, Bytes::new())
                .await
            {
                Ok(r) if r.status.is_success() => done.push(format!("POST {url}: {}", r.status)),
                Ok(r) => {
                    first_error.get_or_insert(format!("POST {url} answered {}", r.status));
                }
                Err(e) => {
                    first_error.get_or_insert(format!("POST {url}: {e}"));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(done.join("; ")),
        }
    }
}

/// Sends `signal` to the target's processes; an empty target is an error.
fn signal_processes(signal: Signal, target: &SignalTarget) -> Result<Vec<i32>, String> {
    let pids = match target {
        SignalTarget::PidFile(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("pid file {}: {e}", file.display()))?;
            let pid = text
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    format!(
                        "pid file {}: '{}' is not a pid",
                        file.display(),
                        text.trim()
                    )
                })?;
            vec![pid]
        }
        SignalTarget::ProcessName(name) => processes_named(name),
    };
    if pids.is_empty() {
        return Err(format!("no process matches {target:?}"));
    }
    for &pid in &pids {
        nix::sys::signal::kill(Pid::from_raw(pid), signal)
            .map_err(|e| format!("{signal} to {pid}: {e}"))?;
    }
    Ok(pids)
}

/// Pids (other than ours) whose `comm` or `argv[0]` base name is `name`.
fn processes_named(name: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
            let argv0 = String::from_utf8_lossy(argv0);
            comm.trim_end() == name || argv0.rsplit('/').next() == Some(name)
        })
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("HUP").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("sigusr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn a_process_is_found_by_name_and_signalled() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Until the child has exec'd, it still bears the test's name.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !processes_named("sleep").contains(&pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(processes_named("sleep").contains(&pid));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pid");
        std::fs::write(&file, format!("{pid}\n")).unwrap();
        let sent = signal_processes(Signal::SIGTERM, &SignalTarget::PidFile(file)).unwrap();
        assert_eq!(sent, [pid]);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(15));
        assert!(signal_processes(
            Signal::SIGHUP,
            &SignalTarget::ProcessName("no-such-process-podkit".into())
        )
        .is_err());
    }
}
