//! Where each source was read up to, kept in a position file in fluentd's `pos_file`
//! layout (`path<TAB>offset as 16 hex digits<TAB>inode as 16 hex digits`), so a restart
//! resumes where the last emitted line ended.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A source's resume point: the byte offset after the last emitted line, and the inode
/// of the file it belongs to (0 for sources that are not files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub offset: u64,
    pub inode: u64,
}

/// Every source's position, and the file they are saved in (none: kept in memory only).
#[derive(Debug, Default)]
pub struct Positions {
    file: Option<PathBuf>,
    entries: BTreeMap<String, Position>,
    dirty: bool,
}

impl Positions {
    /// Loads `file` if it exists; a missing file is an empty set.
    pub fn load(file: Option<&Path>) -> Result<Positions, String> {
        let mut positions = Positions {
            file: file.map(Path::to_path_buf),
            ..Positions::default()
        };
        let Some(file) = file else {
            return Ok(positions);
        };
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(positions),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        positions.entries = parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(positions)
    }

    /// The saved position of `key`.
    pub fn get(&self, key: &str) -> Option<Position> {
        self.entries.get(key).copied()
    }

    /// Records a new position for `key`.
    pub fn set(&mut self, key: &str, position: Position) {
        if self.entries.get(key) != Some(&position) {
            self.entries.insert(key.to_string(), position);
            self.dirty = true;
        }
    }

    /// Writes the file (temporary file, fsync, rename) if anything changed.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let temp = file.with_extension("podkit-tmp");
        let mut out = std::fs::File::create(&temp)?;
        out.write_all(render(&self.entries).as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&temp, file)?;
        self.dirty = false;
        Ok(())
    }
}

fn parse(text: &str) -> Result<BTreeMap<String, Position>, String> {
    let mut entries = BTreeMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut parts = line.rsplitn(3, '\t');
        let (inode, offset, key) = (parts.next(), parts.next(), parts.next());
        let (Some(inode), Some(offset), Some(key)) = (inode, offset, key) else {
            return Err(format!("line {}: expected path, offset and inode", n + 1));
        };
        let hex = |s: &str| {
            u64::from_str_radix(s, 16).map_err(|_| format!("line {}: '{s}' is not hex", n + 1))
        };
        entries.insert(
            key.to_string(),
            Position {
                offset: hex(offset)?,
                inode: hex(inode)?,
            },
        );
    }
    Ok(entries)
}

fn render(entries: &BTreeMap<String, Position>) -> String {
    entries
        .iter()
        .map(|(key, p)| format!("{key}\t{:016x}\t{:016x}\n", p.offset, p.inode))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_fluentds_layout() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pos");
        let mut p = Positions::load(Some(&file)).unwrap();
        p.set(
            "/var/log/app.log",
            Position {
                offset: 4096,
                inode: 77,
            },
        );
        p.save().unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "/var/log/app.log\t0000000000001000\t000000000000004d\n"
        );
        let again = Positions::load(Some(&file)).unwrap();
        assert_eq!(
            again.get("/var/log/app.log"),
            Some(Position {
                offset: 4096,
                inode: 77
            })
        );
        std::fs::write(&file, "broken line\n").unwrap();
        assert!(Positions::load(Some(&file)).is_err());
    }
}
