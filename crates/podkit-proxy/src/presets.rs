//! The presets: `podkit lb`, `podkit sidecar tls`, `podkit ambassador split`,
//! `podkit shard` and `podkit proxy -c`. Each turns its flags into a [`ProxyConfig`] —
//! the same one `--print-config` prints and `podkit proxy -c` runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use podkit_core::{ByteSize, ConfigError, HumanDuration};

use crate::config::{
    backend_authority, BackendConfig, CacheConfig, Eject, Limits, ListenerConfig, Policy,
    PoolConfig, ProxyConfig, RateLimitConfig, ReadyProbe, RedirectConfig, RouteConfig, ShardConfig,
    ShardEntry, SplitConfig, SplitSide, Target, TeeConfig, Timeouts, TlsConfig,
};
use crate::ratelimit::Rate;
use crate::template::Template;

/// Limits on clients, shared by every preset.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Connections served at once per listener.
    #[arg(
        long,
        env = "PODKIT_MAX_CONNECTIONS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub max_connections: usize,
    /// Largest request head; larger ones get 431.
    #[arg(
        long,
        env = "PODKIT_MAX_HEADER_SIZE",
        default_value = "64KiB",
        value_name = "SIZE"
    )]
    pub max_header_size: ByteSize,
    /// Largest request body; larger ones get 413.
    #[arg(
        long,
        env = "PODKIT_MAX_BODY_SIZE",
        default_value = "100MiB",
        value_name = "SIZE"
    )]
    pub max_body_size: ByteSize,
    /// Time a client has to send a request head; also the keep-alive idle time.
    #[arg(
        long,
        env = "PODKIT_HEADER_TIMEOUT",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub header_timeout: HumanDuration,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_size,
            max_body_bytes: self.max_body_size,
            header_timeout: self.header_timeout,
        }
    }
}

/// Upstream behaviour, shared by every preset.
#[derive(Args, Debug, Clone)]
pub struct UpstreamArgs {
    /// Other backends tried when an idempotent request fails before any response byte.
    #[arg(long, env = "PODKIT_RETRIES", default_value_t = 2, value_name = "N")]
    pub retries: u32,
    /// TCP connect timeout toward backends.
    #[arg(
        long,
        env = "PODKIT_CONNECT_TIMEOUT",
        default_value = "2s",
        value_name = "DURATION"
    )]
    pub connect_timeout: HumanDuration,
    /// Time one try may wait for the response head.
    #[arg(
        long,
        env = "PODKIT_TRY_TIMEOUT",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub try_timeout: HumanDuration,
    /// Time all tries of a request may wait for the response head.
    #[arg(
        long,
        env = "PODKIT_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION"
    )]
    pub timeout: HumanDuration,
    /// Readiness path probed on every backend (GET, 2xx is ready); empty disables probing.
    #[arg(long, env = "PODKIT_READY_PATH", value_name = "PATH")]
    pub ready_path: Option<String>,
    /// How often backends are probed.
    #[arg(
        long,
        env = "PODKIT_READY_INTERVAL",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub ready_interval: HumanDuration,
}

impl UpstreamArgs {
    /// A pool of `backends` with these settings; `default_ready_path` applies when
    /// `--ready-path` was not given.
    fn pool(
        &self,
        backends: Vec<BackendConfig>,
        policy: Policy,
        hash_key: Option<String>,
        default_ready_path: &str,
    ) -> PoolConfig {
        PoolConfig {
            backends,
            backends_file: None,
            policy,
            hash_key,
            ready: ReadyProbe {
                path: self
                    .ready_path
                    .clone()
                    .unwrap_or_else(|| default_ready_path.to_string()),
                interval: self.ready_interval,
                ..ReadyProbe::default()
            },
            eject: Eject::default(),
            timeouts: Timeouts {
                connect: self.connect_timeout,
                per_try: self.try_timeout,
                total: self.timeout,
            },
            retries: self.retries,
        }
    }
}

/// `podkit lb`: a replicated, load-balanced service (chapter 5).
#[derive(Args, Debug, Clone)]
pub struct LbArgs {
    /// Address to serve on.
    #[arg(
        long,
        env = "PODKIT_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// A backend, `http://host:port[,weight=N]`; repeat for each replica.
    #[arg(
        long,
        env = "PODKIT_BACKEND",
        value_delimiter = ' ',
        value_name = "URL"
    )]
    pub backend: Vec<String>,
    /// Or a file listing the backends (one `http://host:port[,weight=N]` a line), followed
    /// as it changes.
    #[arg(
        long,
        env = "PODKIT_BACKENDS_FILE",
        value_name = "FILE",
        conflicts_with = "backend"
    )]
    pub backends_file: Option<PathBuf>,
    /// `http` balances requests; `tcp` balances whole connections (TLS passes through).
    #[arg(long, env = "PODKIT_PROTOCOL", value_enum, default_value_t = Protocol::Http)]
    pub protocol: Protocol,
    /// How to pick a backend.
    #[arg(long, env = "PODKIT_POLICY", value_enum, default_value_t = Policy::RoundRobin)]
    pub policy: Policy,
    /// Key template of the hash policy, e.g. `$remote_addr` (session tracking) or `$request_uri`.
    #[arg(long, env = "PODKIT_HASH_KEY", value_name = "TEMPLATE")]
    pub hash_key: Option<String>,
    /// Print the equivalent `podkit proxy` YAML and exit.
    #[arg(long, env = "PODKIT_PRINT_CONFIG")]
    pub print_config: bool,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl LbArgs {
    /// The proxy configuration these flags describe.
    pub fn config(&self) -> Result<ProxyConfig, ConfigError> {
        if self.backend.is_empty() && self.backends_file.is_none() {
            return Err(ConfigError::flag(
                "--backend",
                "give at least one --backend URL, or --backends-file",
            ));
        }
        let backends = self
            .backend
            .iter()
            .map(|spec| weighted_url(spec, "--backend"))
            .collect::<Result<Vec<_>, _>>()?;
        let hash_key = match (&self.policy, &self.hash_key) {
            (Policy::Hash, None) => {
                return Err(ConfigError::flag(
                    "--hash-key",
                    "the hash policy needs --hash-key (e.g. '$remote_addr')",
                ))
            }
            (_, Some(key)) => Some(template(key, "--hash-key")?),
            _ => None,
        };
        let mut pool = self
            .upstream
            .pool(backends, self.policy, hash_key, "/ready");
        pool.backends_file = self.backends_file.clone();
        Ok(single_pool(self.listen, None, pool, &self.limits))
    }
}

/// What `podkit lb` balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// HTTP requests, with every stage of the proxy engine.
    Http,
    /// TCP connections, whole (layer 4).
    Tcp,
}

impl LbArgs {
    /// The TCP balancer these flags describe (`--protocol tcp`).
    pub fn tcp_settings(&self) -> Result<crate::tcp::TcpSettings, ConfigError> {
        if self.backend.is_empty() && self.backends_file.is_none() {
            return Err(ConfigError::flag(
                "--backend",
                "give at least one --backend URL, or --backends-file",
            ));
        }
        if !matches!(self.policy, Policy::RoundRobin | Policy::LeastConn) {
            return Err(ConfigError::flag(
                "--policy",
                "a TCP balancer uses round-robin or least-conn",
            ));
        }
        let backends = self
            .backend
            .iter()
            .map(|spec| weighted_url(spec, "--backend"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::tcp::TcpSettings {
            listen: self.listen,
            backends,
            backends_file: self.backends_file.clone(),
            policy: self.policy,
            connect_timeout: self.upstream.connect_timeout.get(),
        })
    }
}

/// `podkit sidecar tls`: HTTPS for a legacy service on localhost (chapter 2).

#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    /// Address to serve HTTPS on.
    #[arg(
        long,
        env = "PODKIT_LISTEN",
        default_value = "0.0.0.0:8443",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// Certificate chain, PEM; reloaded when the file changes.
    #[arg(long, env = "PODKIT_CERT", value_name = "FILE")]
    pub cert: PathBuf,
    /// Private key, PEM; reloaded when the file changes.
    #[arg(long, env = "PODKIT_KEY", value_name = "FILE")]
    pub key: PathBuf,
    /// The legacy service: a port on localhost (`8080`), `host:port`, or `http://host:port`.
    #[arg(long, env = "PODKIT_UPSTREAM", value_name = "ADDR")]
    pub upstream: String,
    /// Also serve plain HTTP here, answering 308 redirects to HTTPS.
    #[arg(long, env = "PODKIT_REDIRECT_HTTP", value_name = "ADDR")]
    pub redirect_http: Option<SocketAddr>,
    /// Print the equivalent `podkit proxy` YAML and exit.
    #[arg(long, env = "PODKIT_PRINT_CONFIG")]
    pub print_config: bool,
    #[command(flatten)]
    pub upstream_args: UpstreamArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl TlsArgs {
    /// The proxy configuration these flags describe.
    pub fn config(&self) -> Result<ProxyConfig, ConfigError> {
        let url = local_upstream(&self.upstream)?;
        let pool = self.upstream_args.pool(
            vec![BackendConfig { url, weight: 1 }],
            Policy::RoundRobin,
            None,
            "",
        );
        let tls = TlsConfig {
            cert: self.cert.clone(),
            key: self.key.clone(),
            reload_check: HumanDuration(std::time::Duration::from_secs(1)),
        };
        let mut config = single_pool(self.listen, Some(tls), pool, &self.limits);
        if let Some(redirect) = self.redirect_http {
            config.listeners.push(ListenerConfig {
                listen: redirect,
                tls: None,
                routes: vec![catch_all(Target::RedirectHttps(RedirectConfig {
                    https_port: self.listen.port(),
                    status: 308,
                }))],
            });
        }
        Ok(config)
    }
}

/// `podkit ambassador split`: a 10% experiment, and tee (chapter 3).
#[derive(Args, Debug, Clone)]
pub struct SplitArgs {
    /// Address the application sends its requests to.
    #[arg(
        long,
        env = "PODKIT_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// A side: `NAME=URL[|URL...],weight=N` (e.g. `web=http://10.0.0.1:80,weight=9`).
    #[arg(
        long,
        env = "PODKIT_BACKEND",
        required = true,
        value_delimiter = ' ',
        value_name = "SPEC"
    )]
    pub backend: Vec<String>,
    /// What keeps a client on one side (a key template).
    #[arg(
        long,
        env = "PODKIT_STICKY",
        default_value = "$remote_addr",
        value_name = "TEMPLATE"
    )]
    pub sticky: String,
    /// Mirror every request to this backend too, discarding its answers.
    #[arg(long, env = "PODKIT_TEE", value_name = "URL")]
    pub tee: Option<String>,
    /// Mirrored requests in flight at most; more are dropped and counted.
    #[arg(
        long,
        env = "PODKIT_TEE_QUEUE",
        default_value_t = 256,
        value_name = "N"
    )]
    pub tee_queue: usize,
    /// Time a mirrored request may take before it is abandoned.
    #[arg(
        long,
        env = "PODKIT_TEE_TIMEOUT",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub tee_timeout: HumanDuration,
    /// Print the equivalent `podkit proxy` YAML and exit.
    #[arg(long, env = "PODKIT_PRINT_CONFIG")]
    pub print_config: bool,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl SplitArgs {
    /// The proxy configuration these flags describe.
    pub fn config(&self) -> Result<ProxyConfig, ConfigError> {
        template(&self.sticky, "--sticky")?;
        if self.backend.len() < 2 {
            return Err(ConfigError::flag(
                "--backend",
                "a split needs at least two sides",
            ));
        }
        let mut pools = BTreeMap::new();
        let mut sides = Vec::new();
        for spec in &self.backend {
            let (name, rest) = spec
                .split_once('=')
                .filter(|(name, _)| !name.is_empty() && !name.contains(':'))
                .ok_or_else(|| {
                    ConfigError::flag(
                        "--backend",
                        format!("'{spec}': expected NAME=URL[,weight=N]"),
                    )
                })?;
            let (urls, weight) = split_weight(rest, spec, "--backend")?;
            let backends = replicas(urls, "--backend")?;
            if pools.contains_key(name) {
                return Err(ConfigError::flag(
                    "--backend",
                    format!("side '{name}' given twice"),
                ));
            }
            pools.insert(
                name.to_string(),
                self.upstream.pool(backends, Policy::RoundRobin, None, ""),
            );
            sides.push(SplitSide {
                name: name.to_string(),
                pool: name.to_string(),
                weight,
            });
        }
        if sides.iter().all(|s| s.weight == 0) {
            return Err(ConfigError::flag("--backend", "every weight is 0"));
        }
        let tee = match &self.tee {
            Some(url) => {
                backend_authority(url).map_err(|m| ConfigError::flag("--tee", m))?;
                Some(TeeConfig {
                    url: url.clone(),
                    queue: self.tee_queue.max(1),
                    timeout: self.tee_timeout,
                    max_body: ByteSize(1 << 20),
                })
            }
            None => None,
        };
        let route = RouteConfig {
            tee,
            ..catch_all(Target::Split(SplitConfig {
                sticky: self.sticky.clone(),
                sides,
            }))
        };
        Ok(one_listener(self.listen, None, route, pools, &self.limits))
    }
}

/// `podkit shard`: a consistent-hash sharding proxy (chapter 6).
#[derive(Args, Debug, Clone)]
pub struct ShardArgs {
    /// Address to serve on.
    #[arg(
        long,
        env = "PODKIT_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// A shard: `[NAME=]URL[|URL...]`; several URLs make a replicated shard. NAME (default:
    /// the first URL's host:port, as nginx hashes it) fixes the shard's place on the ring.
    #[arg(
        long,
        env = "PODKIT_SHARD",
        required = true,
        value_delimiter = ' ',
        value_name = "SPEC"
    )]
    pub shard: Vec<String>,
    /// The shard key (a key template).
    #[arg(
        long,
        env = "PODKIT_KEY",
        default_value = "$request_uri",
        value_name = "TEMPLATE"
    )]
    pub key: String,
    /// How replicas inside a shard are balanced.
    #[arg(long, env = "PODKIT_POLICY", value_enum, default_value_t = Policy::RoundRobin)]
    pub policy: Policy,
    /// Print the equivalent `podkit proxy` YAML and exit.
    #[arg(long, env = "PODKIT_PRINT_CONFIG")]
    pub print_config: bool,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl ShardArgs {
    /// The proxy configuration these flags describe.
    pub fn config(&self) -> Result<ProxyConfig, ConfigError> {
        template(&self.key, "--key")?;
        if self.policy == Policy::Hash {
            return Err(ConfigError::flag(
                "--policy",
                "replicas of a shard are balanced with round-robin, least-conn or p2c",
            ));
        }
        let mut pools = BTreeMap::new();
        let mut shards = Vec::new();
        for (index, spec) in self.shard.iter().enumerate() {
            let (name, urls) = match spec.split_once('=') {
                Some((name, urls)) if !name.contains(':') && !name.contains('/') => {
                    (Some(name), urls)
                }
                _ => (None, spec.as_str()),
            };
            let backends = replicas(urls, "--shard")?;
            let id = match name {
                Some(name) => name.to_string(),
                None => backend_authority(&backends[0].url)
                    .map_err(|m| ConfigError::flag("--shard", m))?
                    .to_string(),
            };
            let pool = format!("shard-{index}");
            pools.insert(
                pool.clone(),
                self.upstream.pool(backends, self.policy, None, ""),
            );
            if shards.iter().any(|s: &ShardEntry| s.id == id) {
                return Err(ConfigError::flag(
                    "--shard",
                    format!("two shards named '{id}'"),
                ));
            }
            shards.push(ShardEntry { pool, id });
        }
        let route = catch_all(Target::Shard(ShardConfig {
            key: self.key.clone(),
            shards,
        }));
        Ok(one_listener(self.listen, None, route, pools, &self.limits))
    }
}

/// `podkit cache`: a caching tier with rate limiting (chapter 5), as Varnish would be.
#[derive(Args, Debug, Clone)]
pub struct CacheArgs {
    /// Address to serve on.
    #[arg(
        long,
        env = "PODKIT_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// The origin, `http://host:port`; repeat to balance over replicas.
    #[arg(
        long,
        env = "PODKIT_UPSTREAM",
        required = true,
        value_delimiter = ' ',
        value_name = "URL"
    )]
    pub upstream: Vec<String>,
    /// Memory for cached responses (Varnish's `-s malloc,SIZE`). Responses on their way
    /// into the store may hold a quarter more (at least --max-object); misses beyond that
    /// reach their clients unstored.
    #[arg(
        long,
        env = "PODKIT_MEMORY",
        default_value = "256MiB",
        value_name = "SIZE"
    )]
    pub memory: ByteSize,
    /// Responses larger than this pass through uncached; at most half of --memory
    /// [default: 16MiB, or half of --memory when that is less].
    #[arg(long, env = "PODKIT_MAX_OBJECT", value_name = "SIZE")]
    pub max_object: Option<ByteSize>,
    /// The cache key (a key template).
    #[arg(
        long,
        env = "PODKIT_KEY",
        default_value = "$host$request_uri",
        value_name = "TEMPLATE"
    )]
    pub key: String,
    /// Add `X-Cache: HIT|MISS|STALE|PASS` to responses.
    #[arg(long, env = "PODKIT_X_CACHE", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub x_cache: bool,
    /// How long a request waits for another request's fetch of the same key.
    #[arg(
        long,
        env = "PODKIT_COALESCE_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub coalesce_timeout: HumanDuration,
    /// A rate limit: `anon=10/s,burst=20` for every client, `user=100/s` for identified ones.
    #[arg(
        long,
        env = "PODKIT_RATE_LIMIT",
        value_delimiter = ' ',
        value_name = "SPEC"
    )]
    pub rate_limit: Vec<String>,
    /// What identifies an anonymous client for the rate limit (a key template).
    #[arg(
        long,
        env = "PODKIT_RATE_LIMIT_KEY",
        default_value = "$remote_addr",
        value_name = "TEMPLATE"
    )]
    pub rate_limit_key: String,
    /// What identifies a user for the `user=` limit, e.g. `$http_authorization`. Taken as
    /// it comes: verify credentials in front of the cache if they matter.
    #[arg(long, env = "PODKIT_USER_KEY", value_name = "TEMPLATE")]
    pub user_key: Option<String>,
    /// Clients the rate limit tracks at most (each limit); idle ones are forgotten, and
    /// beyond this new clients pass unlimited until some are.
    #[arg(
        long,
        env = "PODKIT_RATE_LIMIT_MAX_KEYS",
        default_value_t = 1_000_000,
        value_name = "N"
    )]
    pub rate_limit_max_keys: usize,
    /// Print the equivalent `podkit proxy` YAML and exit.
    #[arg(long, env = "PODKIT_PRINT_CONFIG")]
    pub print_config: bool,
    #[command(flatten)]
    pub upstream_args: UpstreamArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl CacheArgs {
    /// The proxy configuration these flags describe.
    pub fn config(&self) -> Result<ProxyConfig, ConfigError> {
        template(&self.key, "--key")?;
        if let Some(problem) = CacheConfig::size_problem(self.memory, self.max_object) {
            let flag = if problem.is_memory() {
                "--memory"
            } else {
                "--max-object"
            };
            return Err(ConfigError::flag(flag, problem.to_string()));
        }
        let backends = self
            .upstream
            .iter()
            .map(|url| weighted_url(url, "--upstream"))
            .collect::<Result<Vec<_>, _>>()?;
        let pool = self
            .upstream_args
            .pool(backends, Policy::RoundRobin, None, "");
        let mut config = single_pool(self.listen, None, pool, &self.limits);
        let route = &mut config.listeners[0].routes[0];
        route.cache = Some(CacheConfig {
            memory: self.memory,
            max_object: self.max_object,
            key: self.key.clone(),
            x_cache: self.x_cache,
            coalesce_timeout: self.coalesce_timeout,
        });
        route.rate_limit = self.rate_limit_config()?;
        Ok(config)
    }

    fn rate_limit_config(&self) -> Result<Option<RateLimitConfig>, ConfigError> {
        let mut anon = None;
        let mut user = None;
        for spec in &self.rate_limit {
            let (who, rate) = spec.split_once('=').ok_or_else(|| {
                ConfigError::flag(
                    "--rate-limit",
                    format!("'{spec}': expected anon=RATE or user=RATE"),
                )
            })?;
            let rate: Rate = rate
                .parse()
                .map_err(|e: String| ConfigError::flag("--rate-limit", e))?;
            match who {
                "anon" => anon = Some(rate),
                "user" => user = Some(rate),
                other => {
                    return Err(ConfigError::flag(
                        "--rate-limit",
                        format!("'{other}': the limits are anon= and user="),
                    ))
                }
            }
        }
        if user.is_some() && self.user_key.is_none() {
            return Err(ConfigError::flag(
                "--user-key",
                "a user= limit needs --user-key (e.g. '$http_authorization')",
            ));
        }
        if let Some(key) = &self.user_key {
            template(key, "--user-key")?;
        }
        template(&self.rate_limit_key, "--rate-limit-key")?;
        if self.rate_limit_max_keys == 0 {
            return Err(ConfigError::flag(
                "--rate-limit-max-keys",
                "must be at least 1",
            ));
        }
        let Some(anon) = anon else {
            if user.is_some() {
                return Err(ConfigError::flag(
                    "--rate-limit",
                    "give anon= too: the limit of clients without a user key",
                ));
            }
            return Ok(None);
        };
        Ok(Some(RateLimitConfig {
            anon,
            key: self.rate_limit_key.clone(),
            user,
            user_key: self.user_key.clone(),
            max_keys: self.rate_limit_max_keys,
        }))
    }
}

/// `podkit proxy -c proxy.yaml`: the general form.
#[derive(Args, Debug, Clone)]
pub struct ProxyArgs {
    /// The proxy's YAML configuration.
    #[arg(
        short = 'c',
        long = "config",
        env = "PODKIT_PROXY_CONFIG",
        value_name = "FILE"
    )]
    pub config: PathBuf,
    /// Validate the file and exit.
    #[arg(long, env = "PODKIT_CHECK")]
    pub check: bool,
}

impl ProxyArgs {
    /// Reads and validates the file.
    pub fn load(&self) -> Result<ProxyConfig, ConfigError> {
        let config: ProxyConfig = podkit_core::config::load_yaml(&self.config)?;
        config
            .validate()
            .map_err(|invalid| ConfigError::file(&self.config, invalid.field, invalid.message))?;
        Ok(config)
    }
}

/// A proxy of one pool, `backends`, that every request goes to.
fn single_pool(
    listen: SocketAddr,
    tls: Option<TlsConfig>,
    pool: PoolConfig,
    limits: &LimitArgs,
) -> ProxyConfig {
    let pools = BTreeMap::from([("backends".to_string(), pool)]);
    let route = catch_all(Target::Pool("backends".into()));
    one_listener(listen, tls, route, pools, limits)
}

/// A proxy with one listener and one route.
fn one_listener(
    listen: SocketAddr,
    tls: Option<TlsConfig>,
    route: RouteConfig,
    pools: BTreeMap<String, PoolConfig>,
    limits: &LimitArgs,
) -> ProxyConfig {
    ProxyConfig {
        listeners: vec![ListenerConfig {
            listen,
            tls,
            routes: vec![route],
        }],
        pools,
        limits: limits.limits(),
    }
}

/// A route of every request (`/`) to `to`, with no tee, cache or rate limit.
fn catch_all(to: Target) -> RouteConfig {
    RouteConfig {
        host: None,
        path: "/".into(),
        to,
        tee: None,
        cache: None,
        rate_limit: None,
    }
}

fn template(text: &str, flag: &str) -> Result<String, ConfigError> {
    text.parse::<Template>()
        .map(|_| text.to_string())
        .map_err(|e| ConfigError::flag(flag, format!("'{text}': {e}")))
}

/// `URL[,weight=N]`.
fn weighted_url(spec: &str, flag: &str) -> Result<BackendConfig, ConfigError> {
    let (url, weight) = split_weight(spec, spec, flag)?;
    backend_authority(url).map_err(|m| ConfigError::flag(flag, m))?;
    if weight == 0 {
        return Err(ConfigError::flag(
            flag,
            format!("'{spec}': weight must be at least 1"),
        ));
    }
    Ok(BackendConfig {
        url: url.to_string(),
        weight,
    })
}

/// Splits `X,weight=N` into `X` and N (1 when absent).
fn split_weight<'a>(text: &'a str, spec: &str, flag: &str) -> Result<(&'a str, u32), ConfigError> {
    match text.split_once(',') {
        None => Ok((text, 1)),
        Some((head, option)) => {
            let weight = option
                .strip_prefix("weight=")
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| {
                    ConfigError::flag(
                        flag,
                        format!("'{spec}': expected ',weight=N' after the URL"),
                    )
                })?;
            Ok((head, weight))
        }
    }
}

/// `URL|URL|...`: the replicas of one side or shard.
fn replicas(urls: &str, flag: &str) -> Result<Vec<BackendConfig>, ConfigError> {
    urls.split('|')
        .map(|url| {
            backend_authority(url).map_err(|m| ConfigError::flag(flag, m))?;
            Ok(BackendConfig {
                url: url.to_string(),
                weight: 1,
            })
        })
        .collect()
}

/// The TLS sidecar's upstream: `8080`, `host:port` or `http://host:port`.
fn local_upstream(text: &str) -> Result<String, ConfigError> {
    let url = if text.bytes().all(|b| b.is_ascii_digit()) {
        format!("http://127.0.0.1:{text}")
    } else if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    backend_authority(&url).map_err(|m| ConfigError::flag("--upstream", m))?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_and_replicas() {
        let b = weighted_url("http://a:1,weight=3", "--backend").unwrap();
        assert_eq!((b.url.as_str(), b.weight), ("http://a:1", 3));
        assert!(weighted_url("http://a:1,wait=3", "--backend").is_err());
        assert!(weighted_url("http://a", "--backend").is_err());
        assert_eq!(
            replicas("http://a:1|http://b:2", "--shard").unwrap().len(),
            2
        );
        assert_eq!(local_upstream("8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(local_upstream("app:80").unwrap(), "http://app:80");
    }
}
