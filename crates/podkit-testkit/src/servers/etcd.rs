use std::net::SocketAddr;

use super::{loopback, workdir, START_TIMEOUT};
use crate::error::Result;
use crate::probe::http_get;
use crate::process::{find_binary, ServerProcess, Spec};

/// One member of an etcd cluster (Debian package `etcd-server`).
#[derive(Debug)]
pub struct Etcd {
    pub name: String,
    /// Client address (`http://` endpoint).
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    process: ServerProcess,
}

/// An etcd cluster of `n` members on loopback, with short heartbeats so that elections
/// take well under a second.
#[derive(Debug)]
pub struct EtcdCluster {
    pub members: Vec<Etcd>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members and waits until every one reports healthy.
    pub fn start(size: usize) -> Result<EtcdCluster> {
        let program = find_binary("etcd", "etcd-server")?;
        let dir = workdir("etcd")?;
        let addrs: Vec<(String, SocketAddr, SocketAddr)> = (0..size)
            .map(|i| (format!("m{i}"), loopback(), loopback()))
            .collect();
        let initial_cluster = addrs
            .iter()
            .map(|(name, _, peer)| format!("{name}=http://{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (name, client, peer) in &addrs {
            let data = dir.path().join(name);
            let spec = Spec::new(
                format!("etcd {name} {client}"),
                &program,
                dir.path().join(format!("{name}.log")),
            )
            .args(["--name", name])
            .args([std::ffi::OsStr::new("--data-dir"), data.as_os_str()])
            .args(["--listen-client-urls", &format!("http://{client}")])
            .args(["--advertise-client-urls", &format!("http://{client}")])
            .args(["--listen-peer-urls", &format!("http://{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
            .args(["--initial-cluster", &initial_cluster])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "podkit-test",
            ])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args([
                "--experimental-enable-lease-checkpoint",
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ])
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH);
            members.push(Etcd {
                name: name.clone(),
                client_addr: *client,
                peer_addr: *peer,
                process: ServerProcess::spawn(spec)?,
            });
        }
        for member in &mut members {
            member.wait_healthy()?;
        }
        Ok(EtcdCluster { members, _dir: dir })
    }

    /// Client endpoints as `host:port`, comma-separated (the form `--endpoints` takes).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Etcd {
    /// A single-member cluster; the handle keeps its directory alive.
    pub fn start() -> Result<EtcdCluster> {
        EtcdCluster::start(1)
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let addr = self.client_addr;
        self.process.wait_ready(START_TIMEOUT, || {
            http_get(addr, "/health").is_ok_and(|r| r.status == 200 && r.text().contains("true"))
        })
    }

    /// The running process, to stop, kill or signal it.
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    /// Starts the member again with its data, and waits until it is healthy.
    pub fn restart(&mut self) -> Result<()> {
        self.process.restart_process()?;
        self.wait_healthy()
    }
}
