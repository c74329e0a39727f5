//! Real servers from Debian's packages, each on free ports in its own temporary directory.
//!
//! Every `start` waits until the server really answers its protocol, and every handle
//! stops its server (and the server's whole process group) when dropped.

mod dnsmasq;
mod etcd;
mod haproxy;
mod mariadb;
mod memcached;
mod nats;
mod nginx;
mod nutcracker;
mod postgres;
mod redis;
mod varnish;

pub use dnsmasq::Dnsmasq;
pub use etcd::{Etcd, EtcdCluster};
pub use haproxy::Haproxy;
pub use mariadb::MariaDb;
pub use memcached::Memcached;
pub use nats::Nats;
pub use nginx::Nginx;
pub use nutcracker::Nutcracker;
pub use postgres::Postgres;
pub use redis::Redis;
pub use varnish::Varnish;

use std::net::SocketAddr;
use std::time::Duration;

use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::ports::free_port;

/// How long a server may take to answer after it starts.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A fresh temporary directory for one server.
pub(crate) fn workdir(name: &str) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("podkit-{name}-"))
        .tempdir()
        .map_err(Error::io(format!("{name}: temporary directory")))
}

/// `127.0.0.1:<free port>`.
pub(crate) fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Whether this process runs as root (some servers need a user switch then).
pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
