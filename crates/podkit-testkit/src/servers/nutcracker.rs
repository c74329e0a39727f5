use std::net::SocketAddr;
use std::path::PathBuf;

use super::{loopback, workdir, START_TIMEOUT};
use crate::error::Result;
use crate::probe::greeting;
use crate::process::{find_binary, write_file, ServerProcess, Spec};

/// twemproxy's `nutcracker` (Debian package `nutcracker`) with a given `nutcracker.yaml`.
#[derive(Debug)]
pub struct Nutcracker {
    /// Its stats port: a JSON document on every connection.
    pub stats_addr: SocketAddr,
    /// The config file it runs.
    pub config: PathBuf,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl Nutcracker {
    /// Starts nutcracker with `config` (the YAML text, whose ports the caller chose).
    pub fn start(config: &str) -> Result<Nutcracker> {
        let program = find_binary("nutcracker", "nutcracker")?;
        let dir = workdir("nutcracker")?;
        let config_path = dir.path().join("nutcracker.yaml");
        write_file(&config_path, config)?;
        let stats_addr = loopback();
        let spec = Spec::new(
            format!("nutcracker stats {stats_addr}"),
            program,
            dir.path().join("nutcracker.out"),
        )
        .args([std::ffi::OsStr::new("-c"), config_path.as_os_str()])
        .args(["-s", &stats_addr.port().to_string(), "-a", "127.0.0.1"])
        // Stats aggregated every second rather than every 30.
        .args(["-i", "1000"])
        .args([
            std::ffi::OsStr::new("-o"),
            dir.path().join("nutcracker.log").as_os_str(),
        ]);
        let mut process = ServerProcess::spawn(spec)?;
        process.wait_ready(START_TIMEOUT, || {
            greeting(stats_addr, 1).is_ok_and(|b| b == b"{")
        })?;
        // The stats port opens before the pools' listeners: wait for those too.
        let pools = pool_addrs(config);
        process.wait_ready(START_TIMEOUT, || {
            pools
                .iter()
                .all(|addr| std::net::TcpStream::connect(addr).is_ok())
        })?;
        Ok(Nutcracker {
            stats_addr,
            config: config_path,
            process,
            _dir: dir,
        })
    }

    /// The JSON stats document.
    pub fn stats(&self) -> std::io::Result<String> {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(self.stats_addr)?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    }

    /// The running process, to stop, kill or signal it.
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}

/// The TCP addresses the pools of a nutcracker.yaml listen on (unix sockets left out).
fn pool_addrs(config: &str) -> Vec<std::net::SocketAddr> {
    config
        .lines()
        .filter_map(|line| line.trim().strip_prefix("listen:"))
        .filter_map(|value| value.trim().trim_matches('"').parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn pool_addresses_come_from_listen_lines() {
        let config =
            "alpha:\n  listen: 127.0.0.1:22121\n  hash: fnv1a_64\nbeta:\n  listen: /tmp/nc.sock\n";
        assert_eq!(
            super::pool_addrs(config),
            vec!["127.0.0.1:22121".parse::<std::net::SocketAddr>().unwrap()]
        );
    }
}
