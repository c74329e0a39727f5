use std::net::SocketAddr;

use super::{is_root, loopback, workdir, START_TIMEOUT};
use crate::error::Result;
use crate::probe::http_get;
use crate::process::{find_binary, make_dir, write_file, ServerProcess, Spec};

/// `nginx` (Debian package `nginx`) in the foreground with its own prefix directory.
#[derive(Debug)]
pub struct Nginx {
    /// The address the caller's config listens on (`{port}` in the config text).
    pub addr: SocketAddr,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with `http_body`, the contents of its `http { }` block; every `{port}`
    /// in it is replaced by a free port, the one [`Nginx::addr`] reports.
    pub fn start(http_body: &str) -> Result<Nginx> {
        Self::start_with_workers(http_body, 1)
    }

    /// Like [`Nginx::start`] with `workers` worker processes.
    pub fn start_with_workers(http_body: &str, workers: usize) -> Result<Nginx> {
        let program = find_binary("nginx", "nginx")?;
        let dir = workdir("nginx")?;
        let p = dir.path();
        make_dir(&p.join("logs"))?;
        make_dir(&p.join("tmp"))?;
        let addr = loopback();
        let user = if is_root() { "user root;\n" } else { "" };
        let config = format!(
            "{user}daemon off;\nmaster_process on;\nworker_processes {workers};\n\
             pid {dir}/nginx.pid;\nerror_log {dir}/logs/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir}/tmp/body;\n\
             proxy_temp_path {dir}/tmp/proxy;\n  fastcgi_temp_path {dir}/tmp/fastcgi;\n\
             uwsgi_temp_path {dir}/tmp/uwsgi;\n  scgi_temp_path {dir}/tmp/scgi;\n{body}\n}}\n",
            dir = p.display(),
            body = http_body.replace("{port}", &addr.port().to_string()),
        );
        let config_path = p.join("nginx.conf");
        write_file(&config_path, &config)?;
        let spec = Spec::new(format!("nginx {addr}"), program, p.join("nginx.out"))
            .args([std::ffi::OsStr::new("-p"), p.as_os_str()])
            .args([std::ffi::OsStr::new("-c"), config_path.as_os_str()]);
        let mut process = ServerProcess::spawn(spec)?;
        process.wait_ready(START_TIMEOUT, || http_get(addr, "/").is_ok())?;
        Ok(Nginx {
            addr,
            process,
            _dir: dir,
        })
    }

    /// nginx answering `200 ok` on every path.
    pub fn start_default() -> Result<Nginx> {
        Self::start("server { listen 127.0.0.1:{port}; location / { return 200 \"ok\\n\"; } }")
    }

    /// The running process, to stop, kill or signal it.
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}
