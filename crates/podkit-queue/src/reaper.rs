//! The reaper: a small process beside the manager that stops the workers of a manager
//! that died, so that an item run again after a restart never runs twice at once.
//!
//! The manager starts it once (`podkit queue reaper`, hidden), with the read end of a pipe
//! as its stdin, and tells it each worker's process group as it starts (`+PGID`) and
//! ends (`-PGID`). The write end is the manager's alone (close-on-exec, so no worker holds
//! it): when the manager is gone, however it died, the reaper reads end-of-file and
//! SIGKILLs every group still listed. Workers go with their whole group, background
//! children included. Starting one process per manager keeps workers spawned the fast
//! way (no fork of the manager per item).

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The manager's side: the pipe to a running reaper.
#[derive(Debug)]
pub struct Reaper {
    /// `None` once the reaper is known to be gone (it said so once, in the log).
    pipe: Mutex<Option<std::fs::File>>,
    child: Mutex<Child>,
}

impl Reaper {
    /// Starts `podkit queue reaper` from this very binary.
    pub fn start() -> std::io::Result<Reaper> {
        let program = std::env::current_exe()?;
        let (read, write): (OwnedFd, OwnedFd) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        // Its own process group: a signal to the manager's group must leave it to act.
        let child = Command::new(program)
            .args(["queue", "reaper"])
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Reaper {
            pipe: Mutex::new(Some(std::fs::File::from(write))),
            child: Mutex::new(child),
        })
    }

    fn send(&self, line: &str) {
        let mut guard = self.pipe.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pipe) = guard.as_mut() else { return };
        // One short write is atomic on a pipe. A reaper that is gone only costs the
        // protection it gave.
        if let Err(e) = pipe.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "the reaper is gone: workers will outlive a killed manager");
            *guard = None;
        }
    }

    /// A worker's process group has started.
    pub fn watch(&self, group: i32) {
        self.send(&format!("+{group}\n"));
    }

    /// A worker's process group is gone.
    pub fn forget(&self, group: i32) {
        self.send(&format!("-{group}\n"));
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Closing the pipe tells the reaper to stop what is left, then exit.
        self.pipe
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let _ = self
            .child
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .wait();
    }
}

/// The groups still running after `lines` of `+PGID` / `-PGID`; other lines are ignored.
pub fn running_groups(lines: impl Iterator<Item = String>) -> BTreeSet<i32> {
    let mut groups = BTreeSet::new();
    for line in lines {
        let (sign, number) = line.split_at(line.len().min(1));
        match (sign, number.trim().parse::<i32>()) {
            ("+", Ok(group)) if group > 1 => {
                groups.insert(group);
            }
            ("-", Ok(group)) => {
                groups.remove(&group);
            }
            _ => {}
        }
    }
    groups
}

/// `podkit queue reaper`: reads the manager's notices on stdin until end-of-file, then
/// SIGKILLs the groups still running.
pub fn run_reaper() {
    use nix::sys::signal::{signal, SigHandler};
    // A Ctrl-C or SIGTERM meant for the manager must not take the reaper first: it
    // ends when the manager does.
    // SAFETY: setting a signal to be ignored installs no handler code.
    unsafe {
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
        let _ = signal(Signal::SIGTERM, SigHandler::SigIgn);
        let _ = signal(Signal::SIGHUP, SigHandler::SigIgn);
    }
    let stdin = std::io::stdin();
    let lines = stdin.lock().lines().map_while(Result::ok);
    for group in running_groups(lines) {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_and_go() {
        let lines = ["+100", "+200", "-100", "+300", "junk", "+1", "-999"]
            .iter()
            .map(|s| s.to_string());
        assert_eq!(running_groups(lines), BTreeSet::from([200, 300]));
    }
}
