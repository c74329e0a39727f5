//! Which endpoint a service is in each environment: the mapping file, and the endpoint
//! forms (`host:port` list, `srv:NAME`, `env:VAR`).
//!
//! ```yaml
//! # environment -> service -> endpoint
//! dev:
//!   mysql: 127.0.0.1:3306
//! staging:
//!   mysql: srv:_mysql._tcp.staging.example.com
//! prod:
//!   mysql: [db-1.prod.internal:3306, db-2.prod.internal:3306]
//!   cache: env:CACHE_ADDR
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use podkit_core::ConfigError;
use serde::Deserialize;

/// How a service's address is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port` entries, tried in order; host names are resolved (A/AAAA).
    Hosts(Vec<String>),
    /// A DNS SRV name: targets by priority, then weight.
    Srv(String),
    /// An environment variable holding `host:port` (or a comma-separated list).
    Env(String),
}

impl Endpoint {
    /// Parses one endpoint value.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let text = text.trim();
        if let Some(name) = text.strip_prefix("srv:") {
            if name.is_empty() {
                return Err("srv: needs a name (srv:_mysql._tcp.example.com)".into());
            }
            return Ok(Endpoint::Srv(name.to_string()));
        }
        if let Some(var) = text.strip_prefix("env:") {
            if var.is_empty() {
                return Err("env: needs a variable name".into());
            }
            return Ok(Endpoint::Env(var.to_string()));
        }
        Ok(Endpoint::Hosts(host_list(text)?))
    }

    /// For the admin endpoint and logs.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Hosts(hosts) => hosts.join(","),
            Endpoint::Srv(name) => format!("srv:{name}"),
            Endpoint::Env(var) => format!("env:{var}"),
        }
    }
}

/// `host:port[,host:port...]`, each checked to have a port.
pub fn host_list(text: &str) -> Result<Vec<String>, String> {
    let hosts: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    if hosts.is_empty() {
        return Err("no address".into());
    }
    for host in &hosts {
        let port = host.rsplit_once(':').map(|(_, p)| p);
        if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
            return Err(format!("'{host}' is not host:port"));
        }
    }
    Ok(hosts)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Value {
    One(String),
    Many(Vec<String>),
}

/// Reads the mapping file and returns the endpoint of `service` in `environment`.
pub fn load(path: &Path, environment: &str, service: &str) -> Result<Endpoint, ConfigError> {
    let field = format!("{environment}.{service}");
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::file(path, &field, e))?;
    from_text(&text, environment, service).map_err(|e| ConfigError::file(path, &field, e))
}

/// The endpoint of `service` in `environment`, from the file's text.
pub fn from_text(text: &str, environment: &str, service: &str) -> Result<Endpoint, String> {
    let map: BTreeMap<String, BTreeMap<String, Value>> =
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let services = map.get(environment).ok_or_else(|| {
        format!(
            "no environment '{environment}' (it has: {})",
            map.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let value = services
        .get(service)
        .ok_or_else(|| format!("environment '{environment}' has no service '{service}'"))?;
    let at = |e: String| format!("{environment}.{service}: {e}");
    match value {
        Value::One(text) => Endpoint::parse(text).map_err(at),
        Value::Many(list) => host_list(&list.join(",")).map(Endpoint::Hosts).map_err(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
dev:
  mysql: 127.0.0.1:3306
staging:
  mysql: srv:_mysql._tcp.staging.test
prod:
  mysql: [db-1:3306, db-2:3306]
  cache: env:CACHE_ADDR
";

    #[test]
    fn each_form() {
        assert_eq!(
            from_text(FILE, "dev", "mysql").unwrap(),
            Endpoint::Hosts(vec!["127.0.0.1:3306".into()])
        );
        assert_eq!(
            from_text(FILE, "staging", "mysql").unwrap(),
            Endpoint::Srv("_mysql._tcp.staging.test".into())
        );
        assert_eq!(
            from_text(FILE, "prod", "mysql").unwrap(),
            Endpoint::Hosts(vec!["db-1:3306".into(), "db-2:3306".into()])
        );
        assert_eq!(
            from_text(FILE, "prod", "cache").unwrap(),
            Endpoint::Env("CACHE_ADDR".into())
        );
    }

    #[test]
    fn errors_name_what_is_missing() {
        let e = from_text(FILE, "qa", "mysql").unwrap_err();
        assert!(
            e.contains("no environment 'qa'") && e.contains("dev"),
            "{e}"
        );
        let e = from_text(FILE, "dev", "cache").unwrap_err();
        assert!(e.contains("no service 'cache'"), "{e}");
        let e = from_text("dev:\n  mysql: db-1\n", "dev", "mysql").unwrap_err();
        assert!(e.contains("dev.mysql: 'db-1' is not host:port"), "{e}");
        assert!(from_text("- not a map", "dev", "mysql").is_err());
    }
}
