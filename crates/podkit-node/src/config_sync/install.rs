//! Putting a new configuration in place without the application ever reading half a file:
//! write a temporary file beside the destination and fsync it, validate it, keep the old
//! version, then rename over the destination and fsync the directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest a `--validate-cmd` may run.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a version was not installed; the destination is then unchanged.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("validation failed: {0}")]
    Invalid(String),
}

impl InstallError {
    /// The stage for the failures metric.
    pub fn stage(&self) -> &'static str {
        match self {
            InstallError::Write { .. } => "write",
            InstallError::Invalid(_) => "validate",
        }
    }
}

/// Installs versions of one destination file.
#[derive(Debug, Clone)]
pub struct Installer {
    pub dest: PathBuf,
    /// Run by `sh -c` with `CONFIG_FILE` naming the candidate; non-zero exit refuses it.
    pub validate_cmd: Option<String>,
    /// How many replaced versions to keep in `versions_dir`.
    pub keep: usize,
    pub versions_dir: PathBuf,
}

impl Installer {
    /// The destination's current bytes, if it exists.
    pub fn current(&self) -> Option<Vec<u8>> {
        std::fs::read(&self.dest).ok()
    }

    /// Validates and installs `content`; on error the destination is as it was.
    pub async fn install(&self, content: &[u8], version: &str) -> Result<(), InstallError> {
        let candidate = self.candidate_path();
        let write_error = |source| InstallError::Write {
            path: candidate.clone(),
            source,
        };
        write_synced(&candidate, content, &self.dest).map_err(write_error)?;
        if let Some(cmd) = &self.validate_cmd {
            if let Err(e) = validate(cmd, &candidate, version).await {
                let _ = std::fs::remove_file(&candidate);
                return Err(InstallError::Invalid(e));
            }
        }
        if self.keep > 0 && self.dest.exists() {
            // Best effort: a version that cannot be kept does not stop the update.
            if let Err(e) = self.keep_current() {
                tracing::warn!(error = %e, dir = %self.versions_dir.display(), "could not keep the replaced version");
            }
        }
        let renamed =
            std::fs::rename(&candidate, &self.dest).and_then(|()| sync_parent(&self.dest));
        if let Err(source) = renamed {
            let _ = std::fs::remove_file(&candidate);
            return Err(InstallError::Write {
                path: self.dest.clone(),
                source,
            });
        }
        Ok(())
    }

    fn candidate_path(&self) -> PathBuf {
        let name = self
            .dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.dest.with_file_name(format!(".{name}.podkit-new"))
    }

    /// Links (or copies) the current file into the versions directory and prunes it to
    /// the newest `keep`.
    fn keep_current(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.versions_dir)?;
        let name = self
            .dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let kept = self.versions_dir.join(format!("{name}.{stamp:020}"));
        if std::fs::hard_link(&self.dest, &kept).is_err() {
            std::fs::copy(&self.dest, &kept)?;
        }
        let prefix = format!("{name}.");
        let mut versions: Vec<PathBuf> = std::fs::read_dir(&self.versions_dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .collect();
        versions.sort();
        let excess = versions.len().saturating_sub(self.keep);
        for old in &versions[..excess] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }
}

/// Writes `content` to `path` (private until its mode is set), with the mode and owner
/// of `like` when it exists (a 0600 secret stays 0600), else 0644.
fn write_synced(path: &Path, content: &[u8], like: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)?;
    match std::fs::metadata(like) {
        Ok(old) => {
            // Only root may give a file away; others keep their own ownership.
            let _ = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()));
            file.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o7777))?;
        }
        Err(_) => file.set_permissions(std::fs::Permissions::from_mode(0o644))?,
    }
    file.sync_all()
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

/// Runs the validation command on the candidate; the error carries its output's tail.
async fn validate(cmd: &str, candidate: &Path, version: &str) -> Result<(), String> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("CONFIG_FILE", candidate)
        .env("CONFIG_VERSION", version)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running sh -c '{cmd}': {e}"))?;
    let output = tokio::time::timeout(VALIDATE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("'{cmd}' did not finish within {VALIDATE_TIMEOUT:?}"))?
        .map_err(|e| format!("'{cmd}': {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let mut said = String::from_utf8_lossy(&output.stderr).into_owned();
    said.push_str(&String::from_utf8_lossy(&output.stdout));
    let said = said.trim();
    let tail: String = said
        .chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!("'{cmd}' exited with {}: {tail}", output.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installer(dir: &Path, validate_cmd: Option<&str>, keep: usize) -> Installer {
        Installer {
            dest: dir.join("app.conf"),
            validate_cmd: validate_cmd.map(str::to_string),
            keep,
            versions_dir: dir.join("versions"),
        }
    }

    fn versions(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join("versions"))
            .map(|d| {
                d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[tokio::test]
    async fn installs_and_keeps_the_newest_replaced_versions() {
        let dir = tempfile::tempdir().unwrap();
        let i = installer(dir.path(), None, 2);
        for n in 1..=4 {
            i.install(format!("v{n}").as_bytes(), "x").await.unwrap();
        }
        assert_eq!(i.current().unwrap(), b"v4");
        assert_eq!(versions(dir.path()), ["v2", "v3"]);
        // Nothing left behind but the file and the versions.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["app.conf", "versions"]);
    }

    #[tokio::test]
    async fn a_failing_validation_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let i = installer(
            dir.path(),
            Some("grep -q '^ok' \"$CONFIG_FILE\" || { echo \"bad config $CONFIG_VERSION\" >&2; exit 3; }"),
            5,
        );
        i.install(b"ok 1", "v1").await.unwrap();
        let err = i.install(b"broken", "v2").await.unwrap_err();
        assert_eq!(err.stage(), "validate");
        assert!(err.to_string().contains("bad config v2"), "{err}");
        assert_eq!(i.current().unwrap(), b"ok 1");
        assert!(versions(dir.path()).is_empty());
        assert!(!dir.path().join(".app.conf.podkit-new").exists());
    }

    #[tokio::test]
    async fn a_private_file_stays_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let i = installer(dir.path(), None, 0);
        std::fs::write(&i.dest, "old").unwrap();
        std::fs::set_permissions(&i.dest, std::fs::Permissions::from_mode(0o600)).unwrap();
        i.install(b"new secret", "v").await.unwrap();
        let mode = std::fs::metadata(&i.dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let fresh = installer(&dir.path().join("sub"), None, 0);
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        fresh.install(b"x", "v").await.unwrap();
        let mode = std::fs::metadata(&fresh.dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[tokio::test]
    async fn an_unwritable_directory_is_a_write_error() {
        let i = installer(Path::new("/nonexistent/podkit"), None, 0);
        let err = i.install(b"x", "v").await.unwrap_err();
        assert_eq!(err.stage(), "write");
    }
}
