use std::net::SocketAddr;

use super::{loopback, workdir, START_TIMEOUT};
use crate::error::Result;
use crate::probe::http_get;
use crate::process::{find_binary, write_file, ServerProcess, Spec};

/// `varnishd` (Debian package `varnish`) in the foreground.
#[derive(Debug)]
pub struct Varnish {
    pub addr: SocketAddr,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl Varnish {
    /// Starts varnishd with `vcl` and `-s malloc,<storage>` (e.g. `256m`).
    pub fn start(vcl: &str, storage: &str) -> Result<Varnish> {
        let program = find_binary("varnishd", "varnish")?;
        let dir = workdir("varnish")?;
        let addr = loopback();
        let admin = loopback();
        let vcl_path = dir.path().join("default.vcl");
        write_file(&vcl_path, vcl)?;
        let spec = Spec::new(
            format!("varnishd {addr}"),
            program,
            dir.path().join("varnish.log"),
        )
        .args([
            "-F",
            "-j",
            "none",
            "-a",
            &addr.to_string(),
            "-T",
            &admin.to_string(),
        ])
        .args([
            std::ffi::OsStr::new("-n"),
            dir.path().join("work").as_os_str(),
        ])
        .args([std::ffi::OsStr::new("-f"), vcl_path.as_os_str()])
        .args(["-s", &format!("malloc,{storage}")]);
        let mut process = ServerProcess::spawn(spec)?;
        process.wait_ready(START_TIMEOUT, || http_get(addr, "/").is_ok())?;
        Ok(Varnish {
            addr,
            process,
            _dir: dir,
        })
    }

    /// Varnish caching `backend` with the built-in VCL.
    pub fn start_for(backend: SocketAddr, storage: &str) -> Result<Varnish> {
        let vcl = format!(
            "vcl 4.1;\nbackend default {{ .host = \"{}\"; .port = \"{}\"; }}\n",
            backend.ip(),
            backend.port()
        );
        Self::start(&vcl, storage)
    }

    /// Varnish answering `200 OK` itself, with no backend.
    pub fn start_default() -> Result<Varnish> {
        Self::start(
            "vcl 4.1;\nbackend default none;\nsub vcl_recv { return (synth(200, \"OK\")); }\n",
            "16m",
        )
    }

    /// The running process, to stop, kill or signal it.
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}
