//! The reaper: a small process beside the manager that stops the workers of a manager
//! that died, so that an item run again after a restart never runs twice at once.
//!
//! The manager starts it once (`podkit queue reaper`, hidden), with the read end of a pipe
//! as its stdin, and tells it each worker's process group as it starts (`+PGID`) and
//! ends (`-PGID`). An end is told together with the next start (one write, one wake-up of
//! the reaper per worker), or at once when the manager goes idle. The write end is the manager's alone (close-on-exec, so no worker holds
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
    notices: Mutex<Notices>,
    child: Mutex<Child>,
}

/// The pipe, and the notices not yet written.
#[derive(Debug)]
struct Notices {
    /// `None` once the reaper is known to be gone (it said so once, in the log).
    pipe: Option<std::fs::File>,
    /// Lines waiting for the next write: the `-PGID` of groups that ended.
    untold: String,
}

impl Notices {
    fn new(pipe: std::fs::File) -> Notices {
        Notices {
            pipe: Some(pipe),
            untold: String::new(),
        }
    }

    /// Writes the lines not yet told, in one write.
    fn tell(&mut self) {
        let Some(pipe) = self.pipe.as_mut() else {
            self.untold.clear();
            return;
        };
        // A short write (under PIPE_BUF) is atomic on a pipe. A reaper that is gone only
        // costs the protection it gave.
        if let Err(e) = pipe.write_all(self.untold.as_bytes()) {
            tracing::warn!(error = %e, "the reaper is gone: workers will outlive a killed manager");
            self.pipe = None;
        }
        self.untold.clear();
    }

    fn watch(&mut self, group: i32) {
        self.untold.push_str(&format!("+{group}\n"));
        self.tell();
    }

    fn forget(&mut self, group: i32) {
        self.untold.push_str(&format!("-{group}\n"));
        // Kept short enough for one atomic write.
        if self.untold.len() > 512 {
            self.tell();
        }
    }

    fn flush(&mut self) {
        if !self.untold.is_empty() {
            self.tell();
        }
    }
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
            notices: Mutex::new(Notices::new(std::fs::File::from(write))),
            child: Mutex::new(child),
        })
    }

    fn notices(&self) -> std::sync::MutexGuard<'_, Notices> {
        self.notices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A worker's process group has started (told now, with the ends before it).
    pub fn watch(&self, group: i32) {
        self.notices().watch(group);
    }

    /// A worker's process group is gone: told with the next start, or by [`Reaper::flush`].
    pub fn forget(&self, group: i32) {
        self.notices().forget(group);
    }

    /// Tells the ends not yet told: the manager calls it when no worker is starting, so
    /// that a process group id the system reuses is not left on the reaper's list.
    pub fn flush(&self) {
        self.notices().flush();
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Closing the pipe tells the reaper to stop what is left, then exit; the groups
        // known to be gone are told first.
        let notices = self.notices.get_mut().unwrap_or_else(|p| p.into_inner());
        notices.flush();
        notices.pipe.take();
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

    #[test]
    fn an_end_is_told_with_the_next_start_or_a_flush() {
        use std::io::Read;
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        let mut read = std::fs::File::from(read);
        let mut notices = Notices::new(std::fs::File::from(write));
        let mut written = || {
            let mut buf = [0u8; 256];
            let n = read.read(&mut buf).unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        notices.watch(10);
        assert_eq!(written(), "+10\n");
        notices.forget(10);
        assert_eq!(written(), "", "an end waits for the next write");
        notices.watch(11);
        assert_eq!(
            written(),
            "-10\n+11\n",
            "in the order they happened, in one write"
        );
        notices.forget(11);
        notices.flush();
        assert_eq!(written(), "-11\n");
        notices.flush();
        assert_eq!(written(), "");
    }
}
