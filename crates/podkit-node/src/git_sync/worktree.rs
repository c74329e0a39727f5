//! Checked-out trees under the root, and the symlink the application reads through,
//! flipped atomically (a new symlink renamed over the old) so that the application never
//! sees a half-written tree.
//!
//! ```text
//! ROOT/.worktrees/<commit>/...   one directory per commit, written whole before use
//! ROOT/<link> -> .worktrees/<commit>
//! ```

use std::path::{Path, PathBuf};

/// The worktrees of one root.
#[derive(Debug, Clone)]
pub struct Worktrees {
    root: PathBuf,
    link: String,
    /// Checkouts kept besides the current one (for readers still in an older tree).
    keep_previous: usize,
}

impl Worktrees {
    /// Worktrees under `root`, published as `root/link`.
    pub fn new(root: PathBuf, link: String, keep_previous: usize) -> Result<Worktrees, String> {
        if link.is_empty() || link.contains('/') || link.starts_with('.') {
            return Err(format!(
                "'{link}': the link must be a plain name in the root"
            ));
        }
        Ok(Worktrees {
            root,
            link,
            keep_previous,
        })
    }

    fn dir(&self) -> PathBuf {
        self.root.join(".worktrees")
    }

    /// The published path (`root/link`).
    pub fn link_path(&self) -> PathBuf {
        self.root.join(&self.link)
    }

    /// The commit the link points at now.
    pub fn current(&self) -> Option<String> {
        let target = std::fs::read_link(self.link_path()).ok()?;
        let name = target.file_name()?.to_string_lossy().into_owned();
        self.dir().join(&name).is_dir().then_some(name)
    }

    /// Writes `commit`'s tree with `fill` into a new directory, then points the link at
    /// it. On error the link is unchanged.
    pub fn publish(
        &self,
        commit: &str,
        fill: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<(), String> {
        let io =
            |what: &str, path: &Path, e: std::io::Error| format!("{what} {}: {e}", path.display());
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
        let partial = dir.join(format!("{commit}.partial"));
        let finished = dir.join(commit);
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(|e| io("removing", &partial, e))?;
        }
        if !finished.exists() {
            if let Err(e) = fill(&partial) {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(e);
            }
            std::fs::rename(&partial, &finished).map_err(|e| io("renaming", &partial, e))?;
        }
        let new_link = self.root.join(format!(".{}.new", self.link));
        let _ = std::fs::remove_file(&new_link);
        std::os::unix::fs::symlink(Path::new(".worktrees").join(commit), &new_link)
            .map_err(|e| io("linking", &new_link, e))?;
        let link = self.link_path();
        std::fs::rename(&new_link, &link).map_err(|e| io("replacing", &link, e))?;
        if let Ok(root) = std::fs::File::open(&self.root) {
            let _ = root.sync_all();
        }
        self.prune(commit);
        Ok(())
    }

    /// Removes checkouts other than `current` and the newest `keep_previous` others.
    fn prune(&self, current: &str) {
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return;
        };
        let mut others: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != current)
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        others.sort_by_key(|o| std::cmp::Reverse(o.0));
        for (_, path) in others.into_iter().skip(self.keep_previous) {
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!(dir = %path.display(), error = %e, "could not remove an old checkout");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dest: &Path, text: &str) -> Result<(), String> {
        std::fs::create_dir_all(dest).unwrap();
        std::fs::write(dest.join("index.html"), text).unwrap();
        Ok(())
    }

    #[test]
    fn publishing_flips_the_link_and_prunes() {
        let root = tempfile::tempdir().unwrap();
        let w = Worktrees::new(root.path().into(), "current".into(), 1).unwrap();
        assert_eq!(w.current(), None);
        for (i, commit) in ["aaa", "bbb", "ccc"].iter().enumerate() {
            w.publish(commit, |d| write(d, &format!("v{i}"))).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(w.current().as_deref(), Some("ccc"));
        assert_eq!(
            std::fs::read_to_string(root.path().join("current/index.html")).unwrap(),
            "v2"
        );
        let mut kept: Vec<String> = std::fs::read_dir(root.path().join(".worktrees"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        assert_eq!(kept, ["bbb", "ccc"]);
    }

    #[test]
    fn a_failed_checkout_leaves_the_link_alone() {
        let root = tempfile::tempdir().unwrap();
        let w = Worktrees::new(root.path().into(), "site".into(), 2).unwrap();
        w.publish("aaa", |d| write(d, "ok")).unwrap();
        let err = w
            .publish("bbb", |d| {
                write(d, "half").unwrap();
                Err("disk full".into())
            })
            .unwrap_err();
        assert_eq!(err, "disk full");
        assert_eq!(w.current().as_deref(), Some("aaa"));
        assert!(!root.path().join(".worktrees/bbb.partial").exists());
        assert!(Worktrees::new(root.path().into(), "a/b".into(), 1).is_err());
    }
}
