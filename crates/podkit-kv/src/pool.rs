//! A pool's servers and where each key goes: nutcracker's placement over the live
//! servers, rebuilt whenever a server is ejected or comes back.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use podkit_hash::twemproxy::{hash_tagged, Member, Table};

use crate::backend::{Server, ServerError, ServerMetrics, Settings};
use crate::config::PoolConfig;
use crate::resp::Frame;

/// A running pool.
#[derive(Debug)]
pub struct Pool {
    pub config: PoolConfig,
    pub servers: Vec<Arc<Server>>,
    table: RwLock<(Table, Vec<bool>)>,
}

impl Pool {
    /// Starts the pool's servers; `metrics_for` gives each server's metric handles.
    pub fn start(config: PoolConfig, metrics_for: impl Fn(&str) -> ServerMetrics) -> Pool {
        let mut init = Vec::new();
        if config.redis {
            if let Some(password) = &config.redis_auth {
                init.push(
                    Frame::command([
                        Bytes::from_static(b"AUTH"),
                        Bytes::copy_from_slice(password.as_bytes()),
                    ])
                    .to_bytes(),
                );
            }
            if config.redis_db != 0 {
                init.push(
                    Frame::command([
                        Bytes::from_static(b"SELECT"),
                        Bytes::from(config.redis_db.to_string()),
                    ])
                    .to_bytes(),
                );
            }
        }
        let settings = Settings {
            timeout: config.timeout,
            connections: config.server_connections,
            auto_eject: config.auto_eject_hosts,
            failure_limit: config.server_failure_limit,
            retry_timeout: config.server_retry_timeout,
            init,
        };
        let servers: Vec<Arc<Server>> = config
            .servers
            .iter()
            .map(|s| {
                Server::start(
                    s.name.clone(),
                    s.address.clone(),
                    s.weight,
                    settings.clone(),
                    metrics_for(&s.name),
                    config.preconnect,
                )
            })
            .collect();
        let live = vec![true; servers.len()];
        let table = Table::build(config.distribution, &members(&servers, &live));
        Pool {
            config,
            servers,
            table: RwLock::new((table, live)),
        }
    }

    /// The server that holds `key`.
    pub fn server_for(&self, key: &[u8]) -> Result<Arc<Server>, ServerError> {
        let hashed = hash_tagged(key, self.config.hash_tag);
        let hash = if self.servers.len() == 1 {
            0
        } else {
            self.config.hash.hash(hashed)
        };
        let now = self.config.auto_eject_hosts.then(Instant::now);
        let is_live = |server: &Server| now.is_none_or(|now| !server.is_ejected(now));
        {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            let unchanged = table
                .1
                .iter()
                .zip(&self.servers)
                .all(|(&was_live, server)| was_live == is_live(server));
            if unchanged {
                return self.pick(&table.0, hash);
            }
        }
        let live: Vec<bool> = self.servers.iter().map(|s| is_live(s)).collect();
        let rebuilt = Table::build(self.config.distribution, &members(&self.servers, &live));
        let picked = self.pick(&rebuilt, hash);
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = (rebuilt, live);
        picked
    }

    fn pick(&self, table: &Table, hash: u32) -> Result<Arc<Server>, ServerError> {
        table
            .pick(hash, fastrand::u32(..))
            .map(|i| self.servers[i].clone())
            .ok_or(ServerError::NoServer)
    }
}

fn members(servers: &[Arc<Server>], live: &[bool]) -> Vec<Member> {
    servers
        .iter()
        .zip(live)
        .map(|(s, &live)| Member {
            name: s.name.clone(),
            weight: s.weight,
            live,
        })
        .collect()
}
