//! Backends from a file that something else keeps up to date (`podkit up` writes the
//! ready replicas of a pod there): one `http://host:port[,weight=N]` per line, `#` starts a
//! comment. The file is checked every half second; a change replaces the pool's backends
//! without touching connections to the ones that stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use podkit_core::shutdown::Shutdown;

use super::pool::Pool;
use crate::config::{backend_authority, BackendConfig};

/// How often the file is checked.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Parses the file's text; bad lines are returned apart.
pub fn parse(text: &str) -> (Vec<BackendConfig>, Vec<String>) {
    let mut backends = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (url, weight) = match line.split_once(',') {
            Some((url, option)) => (
                url.trim(),
                option
                    .trim()
                    .strip_prefix("weight=")
                    .and_then(|w| w.parse().ok()),
            ),
            None => (line, Some(1)),
        };
        match (backend_authority(url), weight) {
            (Ok(_), Some(weight)) if weight > 0 => backends.push(BackendConfig {
                url: url.to_string(),
                weight,
            }),
            _ => bad.push(line.to_string()),
        }
    }
    (backends, bad)
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Loads the file into `pool` now; returns whether it could be read.
pub fn load(pool: &Pool, path: &Path) -> bool {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let (backends, bad) = parse(&text);
            for line in bad {
                tracing::warn!(file = %path.display(), line, "ignoring a bad backend line");
            }
            tracing::info!(pool = %pool.name, backends = backends.len(), "backends loaded");
            pool.set_backends(&backends);
            true
        }
        Err(err) => {
            tracing::warn!(file = %path.display(), error = %err, "backends file not readable; keeping the current backends");
            false
        }
    }
}

/// Loads the file once, then follows its changes until shutdown.
pub fn spawn(pool: Arc<Pool>, path: PathBuf, shutdown: Shutdown) {
    let mut seen = stamp(&path);
    load(&pool, &path);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.triggered() => return,
            }
            let now = stamp(&path);
            if now != seen && now.is_some() && load(&pool, &path) {
                seen = now;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_comments_and_weights() {
        let (backends, bad) = parse("# replicas\nhttp://127.0.0.1:1\n\n http://127.0.0.1:2,weight=3 # heavy\nnot a url\nhttp://127.0.0.1:3,weight=0\n");
        assert_eq!(backends.len(), 2);
        assert_eq!(backends[1].weight, 3);
        assert_eq!(bad, vec!["not a url", "http://127.0.0.1:3,weight=0"]);
    }
}
