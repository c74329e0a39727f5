//! Where configuration comes from, and the tasks that report its new versions: HTTP(S)
//! polled with conditional GETs, a local file polled, or an etcd key watched.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use md5::{Digest, Md5};
use podkit_core::shutdown::Shutdown;
use tokio::sync::mpsc;

use crate::http_fetch::{redact_url, HttpClient};

/// A parsed `--source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `http://` or `https://`: polled with `If-None-Match` / `If-Modified-Since`.
    Http(Uri),
    /// `file:///path`: polled.
    File(PathBuf),
    /// `etcd://host:port[,host:port...]/key`: watched.
    Etcd { endpoints: Vec<String>, key: String },
}

impl Source {
    /// Parses a `--source` value. For etcd the key is the URL's path as written
    /// (`etcd://h:2379/config/app` is the key `/config/app`); `?key=NAME` names a key
    /// without a leading slash.
    pub fn parse(text: &str) -> Result<Source, String> {
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(
                    "a file:// source needs an absolute path (file:///etc/app.conf)".into(),
                );
            }
            return Ok(Source::File(PathBuf::from(path)));
        }
        if let Some(rest) = text.strip_prefix("etcd://") {
            let (hosts, key) = match rest.find(['/', '?']) {
                Some(at) => rest.split_at(at),
                None => (rest, ""),
            };
            let key = match key.strip_prefix("?key=") {
                Some(named) => named.to_string(),
                None => key.to_string(),
            };
            if key.is_empty() || key == "/" {
                return Err("an etcd:// source needs a key (etcd://host:2379/config/app)".into());
            }
            let endpoints: Vec<String> = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("http://{h}"))
                .collect();
            if endpoints.is_empty() {
                return Err("an etcd:// source needs host:port".into());
            }
            return Ok(Source::Etcd { endpoints, key });
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            let uri: Uri = text.parse().map_err(|e| format!("{e}"))?;
            if uri.host().is_none() {
                return Err("no host".into());
            }
            return Ok(Source::Http(uri));
        }
        Err("use an http(s)://, file:// or etcd:// URL".into())
    }

    /// For logs: where the configuration comes from, without credentials.
    pub fn describe(&self) -> String {
        match self {
            Source::Http(uri) => redact_url(&uri.to_string()),
            Source::File(path) => format!("file://{}", path.display()),
            Source::Etcd { endpoints, key } => format!("etcd {} key {key}", endpoints.join(",")),
        }
    }
}

/// What a source task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// A version of the configuration (possibly the same bytes as before).
    Content { content: Bytes, version: String },
    /// The source was read and has not changed.
    Unchanged,
    /// The source could not be read; the current file stays.
    Failed(String),
}

/// How a polling source is timed.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    pub interval: Duration,
    /// Fraction of the interval added or taken at random, so replicas spread out.
    pub jitter: f64,
}

impl Polling {
    /// The next wait: the interval ± up to `jitter` of it.
    pub fn next_wait(&self) -> Duration {
        let spread = (fastrand::f64() * 2.0 - 1.0) * self.jitter;
        self.interval.mul_f64((1.0 + spread).max(0.0))
    }
}

/// A version name for bytes without one of their own.
pub fn content_version(content: &[u8]) -> String {
    let digest = Md5::digest(content);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("md5:{hex}")
}

/// Runs the source until shutdown, sending updates to `tx`.
pub async fn run(
    source: Source,
    polling: Polling,
    client: HttpClient,
    tx: mpsc::Sender<Update>,
    shutdown: Shutdown,
) {
    match source {
        Source::Http(uri) => poll_http(uri, polling, client, tx, shutdown).await,
        Source::File(path) => poll_file(path, polling, tx, shutdown).await,
        Source::Etcd { endpoints, key } => {
            super::etcd::watch(endpoints, key, polling.interval, tx, shutdown).await
        }
    }
}

/// Validators of the last 200, sent back so that an unchanged resource costs a 304.
#[derive(Default)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

async fn poll_http(
    uri: Uri,
    polling: Polling,
    client: HttpClient,
    tx: mpsc::Sender<Update>,
    shutdown: Shutdown,
) {
    let mut validators = Validators::default();
    loop {
        let update = fetch_http(&uri, &client, &mut validators).await;
        if tx.send(update).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(polling.next_wait()) => {}
            _ = shutdown.triggered() => return,
        }
    }
}

/// One conditional GET: `None` when the server says nothing changed.
async fn fetch_http(uri: &Uri, client: &HttpClient, validators: &mut Validators) -> Update {
    let mut headers = Vec::new();
    if let Some(etag) = &validators.etag {
        headers.push(("if-none-match", etag.clone()));
    }
    if let Some(date) = &validators.last_modified {
        headers.push(("if-modified-since", date.clone()));
    }
    let fetched = match client
        .request(Method::GET, uri, &headers, Bytes::new())
        .await
    {
        Ok(fetched) => fetched,
        Err(e) => return Update::Failed(e),
    };
    match fetched.status {
        StatusCode::NOT_MODIFIED => Update::Unchanged,
        status if status.is_success() => {
            let header = |name| {
                fetched
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            validators.etag = header(http::header::ETAG);
            validators.last_modified = header(http::header::LAST_MODIFIED);
            let version = validators
                .etag
                .clone()
                .unwrap_or_else(|| content_version(&fetched.body));
            Update::Content {
                content: fetched.body,
                version,
            }
        }
        status => Update::Failed(format!(
            "{} answered {status}",
            redact_url(&uri.to_string())
        )),
    }
}

async fn poll_file(path: PathBuf, polling: Polling, tx: mpsc::Sender<Update>, shutdown: Shutdown) {
    loop {
        let update = match tokio::fs::read(&path).await {
            Ok(content) => {
                let version = content_version(&content);
                Update::Content {
                    content: Bytes::from(content),
                    version,
                }
            }
            Err(e) => Update::Failed(format!("{}: {e}", path.display())),
        };
        if tx.send(update).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(polling.next_wait()) => {}
            _ = shutdown.triggered() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            Source::parse("file:///etc/app.conf").unwrap(),
            Source::File("/etc/app.conf".into())
        );
        assert!(Source::parse("file://relative").is_err());
        assert_eq!(
            Source::parse("etcd://10.0.0.1:2379,10.0.0.2:2379/config/app").unwrap(),
            Source::Etcd {
                endpoints: vec!["http://10.0.0.1:2379".into(), "http://10.0.0.2:2379".into()],
                key: "/config/app".into()
            }
        );
        assert_eq!(
            Source::parse("etcd://h:2379?key=app").unwrap(),
            Source::Etcd {
                endpoints: vec!["http://h:2379".into()],
                key: "app".into()
            }
        );
        assert!(Source::parse("etcd://h:2379").is_err());
        assert!(Source::parse("etcd://h:2379/").is_err());
        assert!(matches!(
            Source::parse("https://config.local/app.conf").unwrap(),
            Source::Http(_)
        ));
        assert!(Source::parse("ftp://x/y").is_err());
    }

    #[test]
    fn credentials_are_left_out_of_descriptions() {
        let uri: Uri = "https://user:s3cret@config.local/app.conf".parse().unwrap();
        assert_eq!(
            redact_url(&uri.to_string()),
            "https://***@config.local/app.conf"
        );
        assert!(!Source::Http(uri).describe().contains("s3cret"));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let polling = Polling {
            interval: Duration::from_secs(10),
            jitter: 0.1,
        };
        for _ in 0..1000 {
            let wait = polling.next_wait();
            assert!(wait >= Duration::from_secs(9) && wait <= Duration::from_secs(11));
        }
    }

    #[test]
    fn content_versions_name_the_bytes() {
        assert_eq!(content_version(b""), "md5:d41d8cd98f00b204e9800998ecf8427e");
        assert_ne!(content_version(b"a"), content_version(b"b"));
    }
}
