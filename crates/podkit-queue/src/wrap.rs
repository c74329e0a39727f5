//! Sources that wrap other sources (chapter 11's filter and merger, composed as the book
//! suggests, as ambassadors in front of other ambassadors):
//!
//! - `podkit source filter --upstream URL --where EXPR`: the upstream's items whose data
//!   satisfy [`crate::expr`];
//! - `podkit source merge --upstream URL --upstream URL ...`: every upstream's items, in
//!   upstream order, a name listed twice kept once (its data from the first upstream that
//!   has it).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use http::{Method, StatusCode};
use podkit_core::component::{ComponentError, Context};
use podkit_core::http::{text, Body};
use podkit_core::ConfigError;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::api;
use crate::client::{Source, SourceError};
use crate::expr::Expr;
use crate::sources::{json_answer, refusal, serve_api};

/// Item fetches a filter runs at once while listing.
const FETCHES: usize = 16;

/// The flags of `podkit source filter`.
#[derive(clap::Args, Debug, Clone)]
pub struct FilterArgs {
    /// The source to filter (`http://127.0.0.1:8000`).
    #[arg(long, env = "PODKIT_UPSTREAM", value_name = "URL")]
    pub upstream: String,
    /// Keep the items for which this is true, e.g. `data.size > 1000 && data.path ~ "\.mp4$"`.
    #[arg(long = "where", env = "PODKIT_WHERE", value_name = "EXPR")]
    pub predicate: String,
    /// Where to serve the source API.
    #[arg(
        long,
        env = "PODKIT_LISTEN",
        default_value = "127.0.0.1:8000",
        value_name = "ADDR"
    )]
    pub listen: std::net::SocketAddr,
}

/// The flags of `podkit source merge`.
#[derive(clap::Args, Debug, Clone)]
pub struct MergeArgs {
    /// A source to merge; give it once per source, in order.
    #[arg(
        long,
        env = "PODKIT_UPSTREAM",
        value_name = "URL",
        value_delimiter = ',',
        required = true
    )]
    pub upstream: Vec<String>,
    /// Where to serve the source API.
    #[arg(
        long,
        env = "PODKIT_LISTEN",
        default_value = "127.0.0.1:8000",
        value_name = "ADDR"
    )]
    pub listen: std::net::SocketAddr,
}

fn upstream(flag: &str, url: &str) -> Result<Source, ConfigError> {
    if !url.starts_with("http://") {
        return Err(ConfigError::flag(
            flag,
            format!("'{url}': expected an http:// URL"),
        ));
    }
    Ok(Source::new(url, std::time::Duration::from_secs(30)))
}

fn bad_gateway(err: &SourceError) -> http::Response<Body> {
    tracing::warn!(error = %err, "the upstream source failed");
    text(StatusCode::BAD_GATEWAY, format!("upstream: {err}\n"))
}

/// The filter's parsed flags.
#[derive(Debug, Clone)]
pub struct Filter {
    upstream: Source,
    expr: Arc<Expr>,
}

impl FilterArgs {
    /// Checks the flags: the URL, and the expression (errors name its column).
    pub fn filter(&self) -> Result<Filter, ConfigError> {
        let expr = Expr::parse(&self.predicate).map_err(|e| ConfigError::flag("--where", e))?;
        Ok(Filter {
            upstream: upstream("--upstream", &self.upstream)?,
            expr: Arc::new(expr),
        })
    }
}

impl Filter {
    async fn list(&self) -> Result<Vec<String>, SourceError> {
        let names = self.upstream.list().await?;
        let slots = Arc::new(Semaphore::new(FETCHES));
        let mut fetches = tokio::task::JoinSet::new();
        for (index, name) in names.into_iter().enumerate() {
            let upstream = self.upstream.clone();
            let expr = self.expr.clone();
            let slots = slots.clone();
            fetches.spawn(async move {
                let _slot = slots.acquire_owned().await;
                match upstream.item(&name).await {
                    Ok(data) => Ok(expr.keeps(&name, &data).then_some((index, name))),
                    // Gone between the list and the fetch: not listed.
                    Err(err) if err.is_not_found() => Ok(None),
                    Err(err) => Err(err),
                }
            });
        }
        let mut kept = Vec::new();
        while let Some(joined) = fetches.join_next().await {
            if let Ok(result) = joined {
                if let Some(found) = result? {
                    kept.push(found);
                }
            }
        }
        kept.sort();
        Ok(kept.into_iter().map(|(_, name)| name).collect())
    }

    async fn item(&self, name: &str) -> Result<Option<Value>, SourceError> {
        match self.upstream.item(name).await {
            Ok(data) => Ok(self.expr.keeps(name, &data).then_some(data)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }
}

impl Wrapped for Filter {
    fn list(&self) -> impl Future<Output = Result<Vec<String>, SourceError>> + Send {
        Filter::list(self)
    }
    fn item(&self, name: &str) -> impl Future<Output = Result<Option<Value>, SourceError>> + Send {
        Filter::item(self, name)
    }
}

/// The merger's parsed flags.
#[derive(Debug, Clone)]
pub struct Merge {
    upstreams: Vec<Source>,
}

impl MergeArgs {
    /// Checks the flags.
    pub fn merge(&self) -> Result<Merge, ConfigError> {
        let upstreams = self
            .upstream
            .iter()
            .map(|u| upstream("--upstream", u))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Merge { upstreams })
    }
}

impl Merge {
    async fn list(&self) -> Result<Vec<String>, SourceError> {
        let mut seen = HashSet::new();
        let mut names = Vec::new();
        for upstream in &self.upstreams {
            for name in upstream.list().await? {
                if seen.insert(name.clone()) {
                    names.push(name);
                }
            }
        }
        Ok(names)
    }

    async fn item(&self, name: &str) -> Result<Option<Value>, SourceError> {
        for upstream in &self.upstreams {
            match upstream.item(name).await {
                Ok(data) => return Ok(Some(data)),
                Err(err) if err.is_not_found() => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }
}

impl Wrapped for Merge {
    fn list(&self) -> impl Future<Output = Result<Vec<String>, SourceError>> + Send {
        Merge::list(self)
    }
    fn item(&self, name: &str) -> impl Future<Output = Result<Option<Value>, SourceError>> + Send {
        Merge::item(self, name)
    }
}

/// A source made of other sources.
pub trait Wrapped: Send + Sync + 'static {
    /// Every item's name, in order.
    fn list(&self) -> impl Future<Output = Result<Vec<String>, SourceError>> + Send;
    /// One item's data; `None` when this source does not serve it.
    fn item(&self, name: &str) -> impl Future<Output = Result<Option<Value>, SourceError>> + Send;
}

async fn answer<W: Wrapped>(wrapped: &W, method: Method, path: String) -> http::Response<Body> {
    match api::route(&method, &path) {
        api::Route::List => match wrapped.list().await {
            Ok(names) => json_answer(
                StatusCode::OK,
                &api::item_list(names.iter().map(String::as_str)),
            ),
            Err(err) => bad_gateway(&err),
        },
        api::Route::Item(name) => match wrapped.item(&name).await {
            Ok(Some(data)) => json_answer(StatusCode::OK, &api::item(data)),
            Ok(None) => text(StatusCode::NOT_FOUND, format!("no item {name:?} here\n")),
            Err(err) => bad_gateway(&err),
        },
        other => refusal(&other),
    }
}

/// Serves a filter or a merger until shutdown.
pub async fn serve<W: Wrapped>(
    wrapped: W,
    listen: std::net::SocketAddr,
    ctx: Context,
) -> Result<(), ComponentError> {
    let wrapped = Arc::new(wrapped);
    serve_api(listen, ctx, move |method, path| {
        let wrapped = wrapped.clone();
        async move { answer(wrapped.as_ref(), method, path).await }
    })
    .await
}
