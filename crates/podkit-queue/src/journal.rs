//! The manager's durable state: an append-only file of JSON lines (`journal.jsonl` under
//! `--state`), one [`Event`] per line, written and `fdatasync`ed before an outcome is
//! acknowledged. A line torn by a crash is dropped when the journal is opened; opening
//! also compacts it to one or two lines per item.
//!
//! A plain file rather than an embedded database: `podkit queue status` and `podkit queue
//! retry` read and append to it while the manager runs (appends of whole lines with
//! `O_APPEND`), which a database that locks its files to one process would not allow.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::state::{Event, State};

/// The journal's file name under the state directory.
pub const FILE: &str = "journal.jsonl";
/// Taken shared by appenders from other processes, exclusively while compacting.
const JOURNAL_LOCK: &str = "journal.lock";
/// Held exclusively by the one manager of a state directory.
const MANAGER_LOCK: &str = "manager.lock";

fn lock(dir: &Path, name: &str, arg: FlockArg) -> io::Result<Flock<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(name))?;
    Flock::lock(file, arg).map_err(|(_, errno)| io::Error::from(errno))
}

/// The manager's hold on a state directory, released when dropped (or when the process
/// dies, however it dies).
#[derive(Debug)]
pub struct ManagerLock(#[allow(dead_code)] Flock<File>);

impl ManagerLock {
    /// Takes the state directory for this process; an error if another manager has it.
    pub fn take(dir: &Path) -> io::Result<ManagerLock> {
        std::fs::create_dir_all(dir)?;
        lock(dir, MANAGER_LOCK, FlockArg::LockExclusiveNonblock)
            .map(ManagerLock)
            .map_err(|err| {
                if err.kind() == io::ErrorKind::WouldBlock {
                    io::Error::other("another manager is running on this state directory")
                } else {
                    err
                }
            })
    }
}

/// Whether a manager holds the state directory `dir` now.
pub fn manager_running(dir: &Path) -> bool {
    if !dir.join(MANAGER_LOCK).exists() {
        return false;
    }
    matches!(
        lock(dir, MANAGER_LOCK, FlockArg::LockSharedNonblock),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock
    )
}

/// An open journal, appended to by the manager.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Bytes of the file already folded into the manager's state.
    read_to: u64,
}

/// Folds the complete lines of `reader`; returns the bytes they span.
fn fold_lines(reader: impl Read, state: &mut State) -> io::Result<u64> {
    let mut reader = BufReader::new(reader);
    let mut consumed = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            // End, or a line still being written (or torn by a crash).
            return Ok(consumed);
        }
        consumed += n as u64;
        match serde_json::from_slice::<Event>(&line) {
            Ok(event) => state.apply(&event),
            Err(err) => {
                tracing::warn!(error = %err, "journal: skipping a line that is not an event")
            }
        }
    }
}

/// Reads the journal under `dir` without changing it (for `podkit queue status`).
pub fn read(dir: &Path) -> io::Result<State> {
    let mut state = State::default();
    match File::open(dir.join(FILE)) {
        Ok(file) => {
            fold_lines(file, &mut state)?;
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    Ok(state)
}

/// Appends events to the journal under `dir` (for `podkit queue retry`), durably, never
/// while a manager compacts it.
pub fn append_to(dir: &Path, events: &[Event]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let _shared = lock(dir, JOURNAL_LOCK, FlockArg::LockShared)?;
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(dir.join(FILE))?;
    write_events(&mut file, events)?;
    file.sync_data()
}

fn write_events(file: &mut File, events: &[Event]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(events.len() * 96 + 1);
    // A line left unfinished by another process (killed mid-write) must not swallow ours.
    let len = file.metadata()?.len();
    let mut last = [0u8; 1];
    if len > 0 && file.read_exact_at(&mut last, len - 1).is_ok() && last[0] != b'\n' {
        buf.push(b'\n');
    }
    for event in events {
        serde_json::to_writer(&mut buf, event).map_err(io::Error::other)?;
        buf.push(b'\n');
    }
    // One write: with O_APPEND, lines from other processes do not interleave with these.
    file.write_all(&buf)
}

impl Journal {
    /// Opens (creating) the journal under `dir`, folds it, drops a torn last line and
    /// compacts it; returns the journal and the state it holds.
    pub fn open(dir: &Path) -> io::Result<(Journal, State)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        // No appender from another process while the file is replaced.
        let _exclusive = lock(dir, JOURNAL_LOCK, FlockArg::LockExclusive)?;
        let state = read(dir)?;
        // Compact: write the snapshot beside it, sync, and rename over it.
        let compacted = dir.join(format!("{FILE}.compacting"));
        {
            let mut file = File::create(&compacted)?;
            write_events(&mut file, &state.snapshot())?;
            file.sync_all()?;
        }
        std::fs::rename(&compacted, &path)?;
        File::open(dir)?.sync_all()?;
        let file = OpenOptions::new().read(true).append(true).open(&path)?;
        let read_to = file.metadata()?.len();
        Ok((
            Journal {
                path,
                file,
                read_to,
            },
            state,
        ))
    }

    /// Appends `events` and syncs them to disk: only then may they be acknowledged.
    pub fn append(&mut self, events: &[Event]) -> io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        write_events(&mut self.file, events)?;
        self.file.sync_data()
    }

    /// Folds into `state` what was appended since the last call, by this process or by
    /// another (`podkit queue retry`). Events already applied apply again harmlessly.
    pub fn catch_up(&mut self, state: &mut State) -> io::Result<()> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.read_to))?;
        self.read_to += fold_lines(file, state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Standing;

    fn done(item: &str) -> Event {
        Event::Done {
            item: item.into(),
            attempt: 1,
            secs: 0.5,
        }
    }

    #[test]
    fn survives_reopening_a_torn_line_and_outside_appends() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, state) = Journal::open(dir.path()).unwrap();
        assert!(state.items.is_empty());
        journal.append(&[done("a"), done("b")]).unwrap();
        drop(journal);
        // A crash in the middle of a line.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        file.write_all(br#"{"event":"done","item":"c","att"#)
            .unwrap();
        drop(file);
        let (mut journal, mut state) = Journal::open(dir.path()).unwrap();
        assert_eq!(state.counts(3), (0, 2, 0));
        // Another process asks for a retry while the manager runs.
        append_to(dir.path(), &[Event::Retry { item: "a".into() }]).unwrap();
        journal.append(&[done("d")]).unwrap();
        journal.catch_up(&mut state).unwrap();
        assert_eq!(state.items["a"].standing(3), Standing::Pending);
        assert_eq!(state.items["d"].standing(3), Standing::Done);
        assert_eq!(read(dir.path()).unwrap().counts(3), (1, 2, 0));
    }

    #[test]
    fn a_line_left_unfinished_by_another_writer_does_not_swallow_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        file.write_all(br#"{"event":"retry","it"#).unwrap();
        drop(file);
        journal.append(&[done("e")]).unwrap();
        append_to(dir.path(), &[done("f")]).unwrap();
        let state = read(dir.path()).unwrap();
        assert_eq!(state.items["e"].standing(3), Standing::Done);
        assert_eq!(state.items["f"].standing(3), Standing::Done);
    }

    #[test]
    fn one_manager_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!manager_running(dir.path()));
        let held = ManagerLock::take(dir.path()).unwrap();
        assert!(manager_running(dir.path()));
        let second = ManagerLock::take(dir.path()).unwrap_err();
        assert!(second.to_string().contains("another manager"), "{second}");
        drop(held);
        assert!(!manager_running(dir.path()));
        ManagerLock::take(dir.path()).unwrap();
    }
}
