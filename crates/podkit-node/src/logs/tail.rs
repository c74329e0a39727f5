//! Following a file by name, as `tail -F` does: read what was appended, notice rotation
//! (the name now points at another inode: finish the old file, then read the new one from
//! its start), truncation (the file got shorter: start again from 0), and a file that does
//! not exist yet. Each line comes with the offset where it starts, so the caller can record
//! how far it has emitted.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Longest line kept whole; a longer one is cut into pieces of this size.
pub const MAX_LINE: usize = 1 << 20;

/// Most bytes read per [`Tailer::read`], so a large backlog is emitted in steps.
const MAX_READ: u64 = 8 << 20;

/// Where to begin when a file is first opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At its end: only lines written from now on (tail's default).
    End,
    /// At its beginning.
    Beginning,
    /// At a saved offset, if the file is still the same inode; else at its beginning.
    Resume { offset: u64, inode: u64 },
}

/// A line read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    /// Inode of the file it came from, and offsets of its first byte and after its newline.
    pub inode: u64,
    pub start: u64,
    pub end: u64,
}

/// What happened to the file since the last read, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Opened,
    Rotated,
    Truncated,
}

/// A file followed by name.
pub struct Tailer {
    path: PathBuf,
    start: Start,
    open: Option<OpenFile>,
    /// Whether the last read stopped at [`MAX_READ`] with more to read.
    more: bool,
}

struct OpenFile {
    file: File,
    inode: u64,
    /// Offset of the next byte to read.
    offset: u64,
    /// Bytes after the last newline, and the offset where they start.
    partial: Vec<u8>,
    partial_start: u64,
}

impl Tailer {
    /// Follows `path`, starting as `start` says when it is first found.
    pub fn new(path: PathBuf, start: Start) -> Tailer {
        Tailer {
            path,
            start,
            open: None,
            more: false,
        }
    }

    /// Opens the file now if it exists (placing a [`Start::End`] at its current end), so
    /// that lines written from this moment are read.
    pub fn open_now(&mut self, events: &mut Vec<Event>) -> std::io::Result<()> {
        if self.open.is_none() {
            self.try_open(events)?;
        }
        Ok(())
    }

    /// Whether the last read left bytes to read at once.
    pub fn has_more(&self) -> bool {
        self.more
    }

    /// The inode and offset after the last complete line read.
    pub fn position(&self) -> Option<(u64, u64)> {
        self.open.as_ref().map(|o| (o.inode, o.partial_start))
    }

    /// Reads every complete line available now. `events` gets what happened to the file.
    pub fn read(&mut self, events: &mut Vec<Event>) -> std::io::Result<Vec<Line>> {
        let mut lines = Vec::new();
        if self.open.is_none() && !self.try_open(events)? {
            return Ok(lines);
        }
        if let Some(open) = self.open.as_mut() {
            if open.file.metadata()?.len() < open.offset {
                // Truncated in place (copytruncate rotation, or `> file`).
                open.offset = 0;
                open.partial.clear();
                open.partial_start = 0;
                open.file.seek(SeekFrom::Start(0))?;
                events.push(Event::Truncated);
            }
            self.more = open.read_lines(&mut lines)?;
            if self.more {
                return Ok(lines);
            }
        }
        // Rotated: the name now points elsewhere. The old file was read to its end above;
        // its unterminated tail is a line of its own, then the new file is read from 0.
        let current = std::fs::metadata(&self.path).ok().map(|m| m.ino());
        let rotated = matches!((current, &self.open), (Some(ino), Some(open)) if ino != open.inode);
        if rotated {
            if let Some(open) = self.open.take() {
                if let Some(line) = open.into_partial_line() {
                    lines.push(line);
                }
            }
            self.start = Start::Beginning;
            if self.try_open(events)? {
                events.push(Event::Rotated);
                if let Some(open) = self.open.as_mut() {
                    self.more = open.read_lines(&mut lines)?;
                }
            }
        }
        Ok(lines)
    }

    /// The unterminated last line, as a line (for `--once` at the end of input).
    pub fn take_partial(&mut self) -> Option<Line> {
        let open = self.open.as_mut()?;
        if open.partial.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&open.partial).into_owned();
        let line = Line {
            text,
            inode: open.inode,
            start: open.partial_start,
            end: open.offset,
        };
        open.partial.clear();
        open.partial_start = open.offset;
        Some(line)
    }

    fn try_open(&mut self, events: &mut Vec<Event>) -> std::io::Result<bool> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // When it appears, everything in it was written after now.
                self.start = Start::Beginning;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let offset = match self.start {
            Start::End => meta.len(),
            Start::Beginning => 0,
            Start::Resume { offset, inode } if inode == meta.ino() && offset <= meta.len() => {
                offset
            }
            Start::Resume { .. } => 0,
        };
        file.seek(SeekFrom::Start(offset))?;
        self.open = Some(OpenFile {
            file,
            inode: meta.ino(),
            offset,
            partial: Vec::new(),
            partial_start: offset,
        });
        // A file that appears later (or again) is read from its start.
        self.start = Start::Beginning;
        events.push(Event::Opened);
        Ok(true)
    }
}

impl OpenFile {
    /// Reads complete lines, up to [`MAX_READ`] bytes; true when it stopped there.
    fn read_lines(&mut self, lines: &mut Vec<Line>) -> std::io::Result<bool> {
        let mut chunk = vec![0u8; 64 << 10];
        let mut read = 0u64;
        loop {
            if read >= MAX_READ {
                return Ok(true);
            }
            let n = self.file.read(&mut chunk)?;
            if n == 0 {
                return Ok(false);
            }
            read += n as u64;
            let mut rest = &chunk[..n];
            self.offset += n as u64;
            while let Some(at) = rest.iter().position(|&b| b == b'\n') {
                self.partial.extend_from_slice(&rest[..at]);
                rest = &rest[at + 1..];
                let end = self.offset - rest.len() as u64;
                self.push_line(lines, end);
            }
            self.partial.extend_from_slice(rest);
            if self.partial.len() >= MAX_LINE {
                let end = self.offset;
                self.push_line(lines, end);
            }
        }
    }

    fn push_line(&mut self, lines: &mut Vec<Line>, end: u64) {
        let text = String::from_utf8_lossy(&self.partial).into_owned();
        lines.push(Line {
            text,
            inode: self.inode,
            start: self.partial_start,
            end,
        });
        self.partial.clear();
        self.partial_start = end;
    }

    fn into_partial_line(self) -> Option<Line> {
        (!self.partial.is_empty()).then(|| Line {
            text: String::from_utf8_lossy(&self.partial).into_owned(),
            inode: self.inode,
            start: self.partial_start,
            end: self.offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn texts(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    fn append(path: &std::path::Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    #[test]
    fn follows_appends_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut events = Vec::new();
        let mut t = Tailer::new(path.clone(), Start::End);
        assert!(t.read(&mut events).unwrap().is_empty(), "no file yet");
        append(&path, "old\n");
        // Appeared after start: read from its beginning.
        assert_eq!(texts(&t.read(&mut events).unwrap()), ["old"]);
        append(&path, "a\nb");
        assert_eq!(texts(&t.read(&mut events).unwrap()), ["a"]);
        append(&path, "c\n");
        let lines = t.read(&mut events).unwrap();
        assert_eq!(texts(&lines), ["bc"]);
        assert_eq!((lines[0].start, lines[0].end), (6, 9));

        // Rotation: rename, write the last line to the old file, create a new one.
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        append(&dir.path().join("app.log.1"), "last of old\n");
        append(&path, "first of new\n");
        events.clear();
        assert_eq!(
            texts(&t.read(&mut events).unwrap()),
            ["last of old", "first of new"]
        );
        assert_eq!(events, [Event::Opened, Event::Rotated]);

        // Truncation in place.
        std::fs::write(&path, "").unwrap();
        append(&path, "x\n");
        events.clear();
        assert_eq!(texts(&t.read(&mut events).unwrap()), ["x"]);
        assert_eq!(events, [Event::Truncated]);
    }

    #[test]
    fn resumes_at_a_saved_offset_of_the_same_inode_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, "one\ntwo\n");
        let inode = std::fs::metadata(&path).unwrap().ino();
        let mut events = Vec::new();
        let mut t = Tailer::new(path.clone(), Start::Resume { offset: 4, inode });
        assert_eq!(texts(&t.read(&mut events).unwrap()), ["two"]);
        let mut other = Tailer::new(
            path,
            Start::Resume {
                offset: 4,
                inode: inode + 1,
            },
        );
        assert_eq!(texts(&other.read(&mut events).unwrap()), ["one", "two"]);
    }

    #[test]
    fn starts_at_the_end_of_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, "before\n");
        let mut t = Tailer::new(path.clone(), Start::End);
        let mut events = Vec::new();
        assert!(t.read(&mut events).unwrap().is_empty());
        append(&path, "after\npartial");
        assert_eq!(texts(&t.read(&mut events).unwrap()), ["after"]);
        assert_eq!(t.take_partial().unwrap().text, "partial");
    }
}
