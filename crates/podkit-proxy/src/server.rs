//! Building a [`ProxyConfig`] into pools, routers and listeners, and serving them under
//! the component contract.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use hyper::body::Incoming;
use tokio::task::JoinSet;

use podkit_core::component::{bind, ComponentError, Context};
use podkit_core::http::{serve, serve_with, ConnInfo, ServeOptions};
use podkit_core::ConfigError;

use crate::config::{Invalid, ProxyConfig};
use crate::metrics::ProxyMetrics;
use crate::route::Router;
use crate::tls::TlsAcceptor;
use crate::upstream::pool::Pool;
use crate::upstream::probe;

/// Where a configuration came from, so that errors name the right thing.
#[derive(Debug, Clone)]
pub enum Source {
    /// Built by a preset from flags; the flag that set each listener's address.
    Flags { listen_flags: Vec<&'static str> },
    /// Read from a YAML file.
    File(PathBuf),
}

impl Source {
    /// The config error for an invalid field.
    pub fn error(&self, invalid: Invalid) -> ConfigError {
        match self {
            Source::File(path) => ConfigError::file(path, invalid.field, invalid.message),
            Source::Flags { .. } => {
                ConfigError::command_line(format!("{}: {}", invalid.field, invalid.message))
            }
        }
    }

    fn listen_name(&self, index: usize) -> String {
        match self {
            Source::Flags { listen_flags } => listen_flags
                .get(index)
                .copied()
                .unwrap_or("--listen")
                .to_string(),
            Source::File(path) => format!("{}: listeners[{index}].listen", path.display()),
        }
    }
}

/// Runs the proxy until shutdown, then drains.
pub async fn run(config: ProxyConfig, source: Source, ctx: Context) -> Result<(), ComponentError> {
    config.validate().map_err(|invalid| source.error(invalid))?;
    let metrics = ProxyMetrics::register(&ctx.metrics);
    let pools: BTreeMap<String, Arc<Pool>> = config
        .pools
        .iter()
        .map(|(name, pool)| (name.clone(), Arc::new(Pool::new(name, pool, &metrics))))
        .collect();

    let mut listeners = Vec::new();
    for (index, listener) in config.listeners.iter().enumerate() {
        let tls = match &listener.tls {
            Some(tls) => Some(TlsAcceptor::load(tls).map_err(|err| {
                source.error(Invalid {
                    field: format!("listeners[{index}].tls"),
                    message: err.to_string(),
                })
            })?),
            None => None,
        };
        let socket = bind(&source.listen_name(index), listener.listen).await?;
        let router = Arc::new(Router::new(
            listener,
            &pools,
            &metrics,
            config.limits.max_body_bytes.bytes(),
        ));
        listeners.push((socket, tls, router, listener.clone()));
    }

    let caches: Vec<_> = listeners
        .iter()
        .flat_map(|(_, _, router, _)| router.caches())
        .collect();
    if !caches.is_empty() {
        crate::admin::add_cache_routes(&ctx.admin_routes, caches);
    }
    for limiter in listeners
        .iter()
        .flat_map(|(_, _, router, _)| router.limiters())
    {
        let shutdown = ctx.shutdown.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(crate::ratelimit::SWEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = ticker.tick() => { limiter.sweep(); }
                    _ = shutdown.triggered() => return,
                }
            }
        });
    }

    for (name, pool) in &pools {
        if let Some(file) = &config.pools[name].backends_file {
            crate::upstream::discovery::spawn(pool.clone(), file.clone(), ctx.shutdown.clone());
        }
    }
    for (name, pool) in &pools {
        let latch = ctx
            .readiness
            .latch(format!("first readiness probe of pool {name}"));
        probe::spawn(
            pool.clone(),
            config.pools[name].ready.clone(),
            ctx.shutdown.clone(),
            latch,
        );
    }

    ctx.started();
    let options = ServeOptions {
        max_connections: config.limits.max_connections,
        header_read_timeout: config.limits.header_timeout.get(),
        max_header_bytes: config.limits.max_header_bytes.bytes() as usize,
    };
    let mut servers = JoinSet::new();
    for (socket, tls, router, listener) in listeners {
        tracing::info!(listen = %listener.listen, tls = tls.is_some(), routes = listener.routes.len(), "listening");
        let handler = move |req: http::Request<Incoming>, conn: ConnInfo| {
            let router = router.clone();
            // Boxed once here, so the large request future is not copied as it moves into
            // the connection's dispatcher.
            Box::pin(async move { router.handle(req, conn).await })
        };
        let shutdown = ctx.shutdown.clone();
        match (tls, listener.tls) {
            (Some(acceptor), Some(tls_config)) => {
                acceptor.spawn_reloader(tls_config, shutdown.clone());
                servers.spawn(serve_with(
                    socket,
                    acceptor,
                    handler,
                    shutdown,
                    options.clone(),
                ));
            }
            _ => {
                servers.spawn(serve(socket, handler, shutdown, options.clone()));
            }
        }
    }
    while servers.join_next().await.is_some() {}
    Ok(())
}
