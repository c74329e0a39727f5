//! Reusable sources (the ambassador side of chapter 10's source API):
//! `podkit source dir`, the book's directory-of-files source, and `podkit source file`,
//! a static list of items from a JSON-lines file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{Method, StatusCode};
use podkit_core::component::{ComponentError, Context};
use podkit_core::http::{response, serve_component, text, Body};
use podkit_core::ConfigError;
use serde_json::{json, Value};

use crate::api;
use crate::glob::Glob;

/// The flags of `podkit source dir`.
#[derive(clap::Args, Debug, Clone)]
pub struct DirArgs {
    /// The directory whose files are the items.
    #[arg(long, env = "PODKIT_PATH", value_name = "DIR")]
    pub path: PathBuf,
    /// Only file names matching this pattern (`*`, `?`, `[a-z]`, `[!x]`).
    #[arg(long, env = "PODKIT_GLOB", default_value = "*", value_name = "PATTERN")]
    pub glob: String,
    /// Where to serve the source API.
    #[arg(
        long,
        env = "PODKIT_LISTEN",
        default_value = "127.0.0.1:8000",
        value_name = "ADDR"
    )]
    pub listen: std::net::SocketAddr,
}

impl DirArgs {
    /// The items, or the flag that is wrong.
    pub fn items(&self) -> Result<Arc<dyn Items>, ConfigError> {
        let glob = Glob::parse(&self.glob).map_err(|e| ConfigError::flag("--glob", e))?;
        if !self.path.is_dir() {
            return Err(ConfigError::flag(
                "--path",
                format!("{}: not a directory", self.path.display()),
            ));
        }
        Ok(Arc::new(DirItems {
            dir: self.path.clone(),
            glob,
        }))
    }
}

/// The flags of `podkit source file`.
#[derive(clap::Args, Debug, Clone)]
pub struct FileArgs {
    /// JSON lines, one `{"name": ..., "data": {...}}` per item; read on every request.
    #[arg(long, env = "PODKIT_PATH", value_name = "FILE")]
    pub path: PathBuf,
    /// Where to serve the source API.
    #[arg(
        long,
        env = "PODKIT_LISTEN",
        default_value = "127.0.0.1:8000",
        value_name = "ADDR"
    )]
    pub listen: std::net::SocketAddr,
}

impl FileArgs {
    /// The items, or the flag that is wrong (the file is read and checked now).
    pub fn items(&self) -> Result<Arc<dyn Items>, ConfigError> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| ConfigError::flag("--path", format!("{}: {e}", self.path.display())))?;
        parse_items_file(&self.path, &text).map_err(|e| ConfigError::flag("--path", e))?;
        Ok(Arc::new(FileItems::new(self.path.clone())))
    }
}

/// Where a source's items come from.
pub trait Items: Send + Sync + 'static {
    /// Every item's name, in order.
    fn names(&self) -> Result<Vec<String>, String>;
    /// One item's data; `Ok(None)` when there is no such item.
    fn data(&self, name: &str) -> Result<Option<Value>, String>;
}

/// `podkit source dir`: the regular files of one directory whose names match a pattern.
/// An item is a file name; its data is `{"path", "size", "modified"}` (RFC 3339, UTC).
#[derive(Debug)]
pub struct DirItems {
    pub dir: PathBuf,
    pub glob: Glob,
}

impl Items for DirItems {
    fn names(&self) -> Result<Vec<String>, String> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let mut names = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') || !self.glob.matches(&name) {
                continue;
            }
            // Followed like `data` follows it: a symlink to a file is a file.
            if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn data(&self, name: &str) -> Result<Option<Value>, String> {
        if name.contains('/') || name.starts_with('.') || !self.glob.matches(name) {
            return Ok(None);
        }
        let path = self.dir.join(name);
        let Ok(meta) = std::fs::metadata(&path) else {
            return Ok(None);
        };
        if !meta.is_file() {
            return Ok(None);
        }
        let modified = meta
            .modified()
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_default();
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        Ok(Some(json!({
            "path": path.to_string_lossy(),
            "size": meta.len(),
            "modified": modified,
        })))
    }
}

/// `podkit source file`: items from a JSON-lines file, one `{"name": ..., "data": ...}`
/// per line (blank lines and lines starting with `#` skipped). The file is parsed again
/// when its size or modification time changes, so that appended items appear.
#[derive(Debug)]
pub struct FileItems {
    pub path: PathBuf,
    parsed: std::sync::Mutex<Option<Parsed>>,
}

type Names = Arc<Vec<String>>;
type Data = Arc<std::collections::HashMap<String, Value>>;

#[derive(Debug)]
struct Parsed {
    stamp: (u64, Option<std::time::SystemTime>),
    names: Names,
    data: Data,
}

impl FileItems {
    /// Items read from `path`.
    pub fn new(path: PathBuf) -> FileItems {
        FileItems {
            path,
            parsed: std::sync::Mutex::new(None),
        }
    }

    fn read(&self) -> Result<(Names, Data), String> {
        let meta =
            std::fs::metadata(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let stamp = (meta.len(), meta.modified().ok());
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = parsed.as_ref().filter(|p| p.stamp == stamp) {
            return Ok((p.names.clone(), p.data.clone()));
        }
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let items = parse_items_file(&self.path, &text)?;
        let names: Vec<String> = items.iter().map(|(n, _)| n.clone()).collect();
        let fresh = Parsed {
            stamp,
            names: Arc::new(names),
            data: Arc::new(items.into_iter().collect()),
        };
        let result = (fresh.names.clone(), fresh.data.clone());
        *parsed = Some(fresh);
        Ok(result)
    }
}

/// Parses the lines of an items file; an error names the file and line.
pub fn parse_items_file(path: &Path, text: &str) -> Result<Vec<(String, Value)>, String> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let value: Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", at()))?;
        let name = match value.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ => return Err(format!("{}: \"name\" must be a non-empty string", at())),
        };
        let data = value.get("data").cloned().unwrap_or(Value::Null);
        items.push((name, data));
    }
    Ok(items)
}

impl Items for FileItems {
    fn names(&self) -> Result<Vec<String>, String> {
        Ok(self.read()?.0.as_ref().clone())
    }

    fn data(&self, name: &str) -> Result<Option<Value>, String> {
        Ok(self.read()?.1.get(name).cloned())
    }
}

fn json_response(status: StatusCode, value: &Value) -> http::Response<Body> {
    response(status, "application/json", format!("{value}\n"))
}

/// The answer to a request that is not for the list or an item.
pub fn refusal(route: &api::Route) -> http::Response<Body> {
    match route {
        api::Route::MethodNotAllowed => text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n"),
        api::Route::BadName => text(StatusCode::BAD_REQUEST, "bad escape in the item name\n"),
        _ => text(StatusCode::NOT_FOUND, "try /api/v1/items\n"),
    }
}

/// Answers one request of the source API from `items`.
pub fn answer(items: &dyn Items, method: &Method, path: &str) -> http::Response<Body> {
    let name = match api::route(method, path) {
        api::Route::List => {
            return match items.names() {
                Ok(names) => json_response(
                    StatusCode::OK,
                    &api::item_list(names.iter().map(String::as_str)),
                ),
                Err(err) => {
                    tracing::error!(error = %err, "listing items failed");
                    text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n"))
                }
            }
        }
        api::Route::Item(name) => name,
        other => return refusal(&other),
    };
    match items.data(&name) {
        Ok(Some(data)) => json_response(StatusCode::OK, &api::item(data)),
        Ok(None) => text(StatusCode::NOT_FOUND, format!("no item {name:?}\n")),
        Err(err) => {
            tracing::error!(error = %err, "reading an item failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n"))
        }
    }
}

/// Serves the source API from `items` on `listen` until shutdown.
pub async fn serve_items(
    items: Arc<dyn Items>,
    listen: std::net::SocketAddr,
    ctx: Context,
) -> Result<(), ComponentError> {
    serve_api(listen, ctx, move |method, path| {
        let items = items.clone();
        async move {
            tokio::task::spawn_blocking(move || answer(items.as_ref(), &method, &path))
                .await
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "failed\n"))
        }
    })
    .await
}

/// Serves requests on `listen`, answering each with `answer(method, path)`, until
/// shutdown.
pub async fn serve_api<F, Fut>(
    listen: std::net::SocketAddr,
    ctx: Context,
    answer: F,
) -> Result<(), ComponentError>
where
    F: Fn(Method, String) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<Body>> + Send + 'static,
{
    let handler = move |req: http::Request<hyper::body::Incoming>, _conn| {
        answer(req.method().clone(), req.uri().path().to_string())
    };
    serve_component(
        "--listen",
        listen,
        "the work-queue source API",
        &ctx,
        handler,
    )
    .await
}

/// A JSON answer.
pub fn json_answer(status: StatusCode, value: &Value) -> http::Response<Body> {
    json_response(status, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_files_name_their_bad_lines() {
        let path = Path::new("items.jsonl");
        assert_eq!(
            parse_items_file(
                path,
                "{\"name\":\"a\",\"data\":{\"n\":1}}\n\n# note\n{\"name\":\"b\"}\n"
            ),
            Ok(vec![
                ("a".into(), json!({"n": 1})),
                ("b".into(), Value::Null)
            ])
        );
        assert_eq!(
            parse_items_file(path, "{\"name\":\"a\"}\n{\"data\":1}\n"),
            Err("items.jsonl:2: \"name\" must be a non-empty string".into())
        );
        assert!(parse_items_file(path, "nope\n")
            .unwrap_err()
            .starts_with("items.jsonl:1: "));
    }
}
