//! The two stores the ownership tests run against: a real 3-member etcd cluster, and
//! `podkit store serve`.

use std::net::SocketAddr;
use std::path::Path;

use podkit_testkit::podkit::Podkit;
use podkit_testkit::servers::EtcdCluster;

use super::{free_addr, PODKIT};

/// A store for `--store`.
pub enum OwnerStore {
    Etcd(EtcdCluster),
    Embedded(Box<Embedded>),
}

/// `podkit store serve` on a free port with its own data directory.
pub struct Embedded {
    pub server: Podkit,
    pub listen: SocketAddr,
    pub data: tempfile::TempDir,
}

impl OwnerStore {
    /// A 3-member etcd cluster (Debian's etcd-server).
    pub fn etcd() -> OwnerStore {
        OwnerStore::Etcd(EtcdCluster::start(3).expect("etcd-server"))
    }

    /// `podkit store serve`.
    pub fn embedded() -> OwnerStore {
        let data = tempfile::tempdir().unwrap();
        let listen = free_addr();
        let args = [
            "store",
            "serve",
            "--data",
            data.path().to_str().unwrap(),
            "--listen",
            &listen.to_string(),
            "--log-format",
            "text",
        ];
        let mut server = Podkit::start(Path::new(PODKIT), &args).expect("podkit store serve");
        server
            .wait_ready()
            .unwrap_or_else(|e| panic!("not ready: {e}\n{}", server.output()));
        OwnerStore::Embedded(Box::new(Embedded {
            server,
            listen,
            data,
        }))
    }

    /// The `--store` value.
    pub fn url(&self) -> String {
        match self {
            OwnerStore::Etcd(cluster) => format!("etcd://{}", cluster.endpoints()),
            OwnerStore::Embedded(e) => format!("etcd://{}", e.listen),
        }
    }

    /// Range and Txn requests the store has started, from etcd's gRPC counters (which
    /// `podkit store serve` exports under the same name).
    pub fn reads_and_writes(&self) -> f64 {
        let metrics_addrs: Vec<SocketAddr> = match self {
            OwnerStore::Etcd(cluster) => cluster.members.iter().map(|m| m.client_addr).collect(),
            OwnerStore::Embedded(e) => vec![e.server.admin],
        };
        metrics_addrs
            .into_iter()
            .map(|addr| {
                let text = podkit_testkit::probe::http_get(addr, "/metrics")
                    .map(|r| r.text())
                    .unwrap_or_default();
                text.lines()
                    .filter(|l| l.starts_with("grpc_server_started_total"))
                    .filter(|l| {
                        l.contains("grpc_method=\"Range\"") || l.contains("grpc_method=\"Txn\"")
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>()
            })
            .sum()
    }
}

/// Defines each listed test twice, `etcd::NAME` and `embedded::NAME`, calling
/// `NAME(store)` with a fresh store of each kind.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod etcd {
            $(#[test]
            fn $name() {
                super::$name($crate::common::stores::OwnerStore::etcd());
            })*
        }
        mod embedded {
            $(#[test]
            fn $name() {
                super::$name($crate::common::stores::OwnerStore::embedded());
            })*
        }
    };
}
