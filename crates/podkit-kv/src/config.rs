//! twemproxy's `nutcracker.yaml`, read as it is: named pools with their listen address,
//! hash, distribution, timeouts, ejection settings and servers (`host:port:weight [name]`).
//! Unknown keys and bad values name the pool and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use podkit_core::ConfigError;
use podkit_hash::twemproxy::{name_order, server_name, Distribution, Hash};
use serde::Deserialize;

/// One pool as written in the file (every key nutcracker 0.5 knows).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolYaml {
    listen: Option<String>,
    hash: Option<String>,
    hash_tag: Option<String>,
    distribution: Option<String>,
    timeout: Option<i64>,
    backlog: Option<u32>,
    client_connections: Option<u32>,
    redis: Option<bool>,
    redis_auth: Option<String>,
    redis_db: Option<u32>,
    preconnect: Option<bool>,
    auto_eject_hosts: Option<bool>,
    server_connections: Option<u32>,
    server_retry_timeout: Option<u64>,
    server_failure_limit: Option<u32>,
    tcpkeepalive: Option<bool>,
    reuseport: Option<bool>,
    servers: Option<Vec<String>>,
}

/// Where a pool listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `host:port`.
    Tcp(String),
    /// A unix socket path.
    Unix(PathBuf),
}

/// One server of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `host:port` to connect to (or the socket path).
    pub address: String,
    pub weight: u32,
    /// The name on the continuum and in stats.
    pub name: String,
}

/// One pool, with nutcracker's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub listen: Listen,
    pub hash: Hash,
    pub hash_tag: Option<[u8; 2]>,
    pub distribution: Distribution,
    /// Time a server may take to answer; `None` waits for ever (nutcracker's default).
    pub timeout: Option<Duration>,
    pub backlog: u32,
    pub redis: bool,
    pub redis_auth: Option<String>,
    pub redis_db: u32,
    pub preconnect: bool,
    pub auto_eject_hosts: bool,
    pub server_connections: u32,
    pub server_retry_timeout: Duration,
    pub server_failure_limit: u32,
    pub tcpkeepalive: bool,
    /// Servers in nutcracker's order: by name, shorter first.
    pub servers: Vec<ServerConfig>,
}

/// Reads `nutcracker.yaml`.
pub fn load(path: &Path) -> Result<Vec<PoolConfig>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(path, "", format!("cannot read: {e}")))?;
    parse(path, &text)
}

/// Parses the file's text (read from `path`).
pub fn parse(path: &Path, text: &str) -> Result<Vec<PoolConfig>, ConfigError> {
    let pools: BTreeMap<String, PoolYaml> = podkit_core::config::parse_yaml(path, text)?;
    if pools.is_empty() {
        return Err(ConfigError::file(path, "", "has no pools"));
    }
    let mut out = Vec::new();
    for (name, pool) in pools {
        out.push(pool_config(path, &name, pool)?);
    }
    for (i, a) in out.iter().enumerate() {
        if let Some(b) = out[i + 1..].iter().find(|b| b.listen == a.listen) {
            return Err(ConfigError::file(
                path,
                format!("{}.listen", b.name),
                format!(
                    "pools '{}' and '{}' have the same listen address",
                    a.name, b.name
                ),
            ));
        }
    }
    Ok(out)
}

fn pool_config(path: &Path, pool: &str, y: PoolYaml) -> Result<PoolConfig, ConfigError> {
    let bad =
        |field: &str, message: String| ConfigError::file(path, format!("{pool}.{field}"), message);
    let listen = y.listen.ok_or_else(|| bad("listen", "is missing".into()))?;
    let listen = parse_listen(&listen).map_err(|m| bad("listen", m))?;
    let hash = match y.hash {
        Some(h) => h.parse().map_err(|m| bad("hash", m))?,
        None => Hash::Fnv1a_64,
    };
    let distribution = match y.distribution {
        Some(d) => d.parse().map_err(|m| bad("distribution", m))?,
        None => Distribution::Ketama,
    };
    let hash_tag = match y.hash_tag {
        Some(tag) => match tag.as_bytes() {
            [open, close] => Some([*open, *close]),
            _ => {
                return Err(bad(
                    "hash_tag",
                    format!("'{tag}' is not a valid hash tag string with two characters"),
                ))
            }
        },
        None => None,
    };
    let timeout = match y.timeout {
        None | Some(-1) => None,
        Some(ms) if ms > 0 => Some(Duration::from_millis(ms as u64)),
        Some(ms) => {
            return Err(bad(
                "timeout",
                format!("{ms} is not a number of milliseconds above 0"),
            ))
        }
    };
    let redis = y.redis.unwrap_or(false);
    if y.redis_auth.is_some() && !redis {
        return Err(bad("redis_auth", "is only valid for a redis pool".into()));
    }
    let server_connections = y.server_connections.unwrap_or(1);
    if server_connections == 0 {
        return Err(bad("server_connections", "cannot be 0".into()));
    }
    let _ = y.client_connections;
    let _ = y.reuseport;
    let lines = y.servers.unwrap_or_default();
    if lines.is_empty() {
        return Err(bad("servers", format!("pool '{pool}' has no servers")));
    }
    let mut servers = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let server = parse_server(line).map_err(|m| bad(&format!("servers[{i}]"), m))?;
        if servers.iter().any(|s: &ServerConfig| s.name == server.name) {
            return Err(bad(
                &format!("servers[{i}]"),
                format!("pool '{pool}' has servers with same name '{}'", server.name),
            ));
        }
        servers.push(server);
    }
    servers.sort_by(|a, b| name_order(&a.name, &b.name));
    Ok(PoolConfig {
        name: pool.to_string(),
        listen,
        hash,
        hash_tag,
        distribution,
        timeout,
        backlog: y.backlog.unwrap_or(512),
        redis,
        redis_auth: y.redis_auth,
        redis_db: y.redis_db.unwrap_or(0),
        preconnect: y.preconnect.unwrap_or(false),
        auto_eject_hosts: y.auto_eject_hosts.unwrap_or(false),
        server_connections,
        server_retry_timeout: Duration::from_millis(y.server_retry_timeout.unwrap_or(30_000)),
        server_failure_limit: y.server_failure_limit.unwrap_or(2),
        tcpkeepalive: y.tcpkeepalive.unwrap_or(false),
        servers,
    })
}

fn parse_listen(text: &str) -> Result<Listen, String> {
    let text = text.trim();
    if text.starts_with('/') {
        // "/path/to/socket" or "/path/to/socket 0666".
        let path = text.split_whitespace().next().unwrap_or(text);
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("'{text}' has an invalid \"hostname:port\" format string"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "'{text}' has an invalid port in \"hostname:port\" format string"
        ));
    }
    Ok(Listen::Tcp(text.to_string()))
}

/// `host:port:weight [name]` or `/path:weight [name]`, parsed from the end as nutcracker does.
pub fn parse_server(line: &str) -> Result<ServerConfig, String> {
    let format = || {
        format!("'{line}' is not \"hostname:port:weight [name]\" or \"/path/unix_socket:weight [name]\"")
    };
    let line = line.trim();
    let (address_weight, name) = match line.rsplit_once(' ') {
        Some((head, name)) if !name.is_empty() => (head.trim(), Some(name)),
        _ => (line, None),
    };
    let (address, weight) = address_weight.rsplit_once(':').ok_or_else(format)?;
    let weight: u32 = weight
        .parse()
        .map_err(|_| format!("'{line}' has an invalid weight"))?;
    if weight == 0 {
        return Err(format!("'{line}' has a zero weight"));
    }
    if address.starts_with('/') {
        return Ok(ServerConfig {
            address: address.to_string(),
            weight,
            name: name.map_or_else(|| format!("{address}:"), str::to_string),
        });
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(format)?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{line}' has an invalid port"))?;
    if host.is_empty() {
        return Err(format());
    }
    Ok(ServerConfig {
        address: address.to_string(),
        weight,
        name: server_name(host, port, name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools(text: &str) -> Result<Vec<PoolConfig>, ConfigError> {
        parse(Path::new("nutcracker.yaml"), text)
    }

    const ALPHA: &str = "alpha:\n  listen: 127.0.0.1:22121\n  hash: fnv1a_64\n  distribution: ketama\n  auto_eject_hosts: true\n  redis: true\n  server_retry_timeout: 2000\n  server_failure_limit: 1\n  servers:\n   - 127.0.0.1:6379:1\n   - 127.0.0.1:6380:1 server2\n";

    #[test]
    fn reads_a_pool_with_defaults() {
        let p = &pools(ALPHA).unwrap()[0];
        assert_eq!(p.name, "alpha");
        assert_eq!(p.listen, Listen::Tcp("127.0.0.1:22121".into()));
        assert!(p.redis && p.auto_eject_hosts);
        assert_eq!(p.timeout, None);
        assert_eq!(p.server_connections, 1);
        assert_eq!(p.server_retry_timeout, Duration::from_secs(2));
        // Sorted by name, shorter first: "server2" before "127.0.0.1:6379".
        assert_eq!(p.servers[0].name, "server2");
        assert_eq!(p.servers[1].name, "127.0.0.1:6379");
    }

    #[test]
    fn server_lines() {
        let s = parse_server("10.0.0.1:11211:2").unwrap();
        assert_eq!(
            (s.address.as_str(), s.weight, s.name.as_str()),
            ("10.0.0.1:11211", 2, "10.0.0.1")
        );
        let s = parse_server("/tmp/redis.sock:1 local").unwrap();
        assert_eq!(
            (s.address.as_str(), s.name.as_str()),
            ("/tmp/redis.sock", "local")
        );
        assert!(parse_server("10.0.0.1:6379").is_err());
        assert!(parse_server("10.0.0.1:6379:0").is_err());
    }

    #[test]
    fn errors_name_pool_and_field() {
        let err = pools(&ALPHA.replace("hash: fnv1a_64", "hash: sha1")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("nutcracker.yaml: alpha.hash: 'sha1' is not a valid hash"),
            "{err}"
        );
        let err = pools(&ALPHA.replace("  redis: true\n", "  rediss: true\n")).unwrap_err();
        assert!(err.to_string().contains("alpha.rediss"), "{err}");
        let err = pools(&ALPHA.replace("  redis: true\n", "  redis_auth: x\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("alpha.redis_auth: is only valid for a redis pool"),
            "{err}"
        );
        let err = pools(&ALPHA.replace(
            "   - 127.0.0.1:6380:1 server2\n",
            "   - 127.0.0.1:6380:1 127.0.0.1:6379\n",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("same name"), "{err}");
        let err =
            pools(&ALPHA.replace("distribution: ketama", "distribution: rendezvous")).unwrap_err();
        assert!(err.to_string().contains("alpha.distribution"), "{err}");
    }
}
