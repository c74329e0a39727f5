use std::net::SocketAddr;

use super::{loopback, workdir, START_TIMEOUT};
use crate::error::Result;
use crate::probe::http_get;
use crate::process::{find_binary, write_file, ServerProcess, Spec};

/// `haproxy` (Debian package `haproxy`) in the foreground.
#[derive(Debug)]
pub struct Haproxy {
    /// The address of the caller's frontend (`{port}` in the config text).
    pub addr: SocketAddr,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts haproxy with `sections` (frontends and backends) after standard `global`
    /// and `defaults` sections; `{port}` is replaced by a free port.
    pub fn start(sections: &str) -> Result<Haproxy> {
        Self::start_with_threads(sections, None)
    }

    /// Like [`Haproxy::start`] with `nbthread` set (default: one thread per core).
    pub fn start_with_threads(sections: &str, threads: Option<usize>) -> Result<Haproxy> {
        let program = find_binary("haproxy", "haproxy")?;
        let dir = workdir("haproxy")?;
        let addr = loopback();
        let nbthread = threads
            .map(|n| format!("  nbthread {n}\n"))
            .unwrap_or_default();
        let config = format!(
            "global\n  maxconn 4000\n{nbthread}\ndefaults\n  mode http\n  timeout connect 5s\n\
             timeout client 60s\n  timeout server 60s\n\n{}\n",
            sections.replace("{port}", &addr.port().to_string())
        );
        let config_path = dir.path().join("haproxy.cfg");
        write_file(&config_path, &config)?;
        let spec = Spec::new(
            format!("haproxy {addr}"),
            program,
            dir.path().join("haproxy.log"),
        )
        .args(["-db"])
        .args([std::ffi::OsStr::new("-f"), config_path.as_os_str()]);
        let mut process = ServerProcess::spawn(spec)?;
        process.wait_ready(START_TIMEOUT, || http_get(addr, "/").is_ok())?;
        Ok(Haproxy {
            addr,
            process,
            _dir: dir,
        })
    }

    /// haproxy answering `200 ok` itself.
    pub fn start_default() -> Result<Haproxy> {
        Self::start(
            "frontend main\n  bind 127.0.0.1:{port}\n  \
             http-request return status 200 content-type text/plain string ok\n",
        )
    }

    /// The running process, to stop, kill or signal it.
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}
