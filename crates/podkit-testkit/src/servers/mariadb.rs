use std::net::SocketAddr;
use std::process::Command;

use super::{is_root, loopback, workdir, START_TIMEOUT};
use crate::error::{Error, Result};
use crate::probe::greeting;
use crate::process::{find_binary, write_file, ServerProcess, Spec};

/// The user and password created in every test MariaDB (all privileges).
pub const MARIADB_USER: (&str, &str) = ("podkit", "podkit");

/// A MariaDB server (Debian package `mariadb-server`) with a fresh data directory, a
/// database `podkit`, and the user [`MARIADB_USER`].
#[derive(Debug)]
pub struct MariaDb {
    pub addr: SocketAddr,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl MariaDb {
    /// Initialises a data directory and starts the server on a free port.
    pub fn start() -> Result<MariaDb> {
        let install = find_binary("mariadb-install-db", "mariadb-server")?;
        let program = find_binary("mariadbd", "mariadb-server")?;
        let dir = workdir("mariadb")?;
        let data = dir.path().join("data");
        // Its own temporary directory: bootstraps running at once in a shared /tmp trip
        // over each other's temporary tables.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).map_err(Error::io("mariadb tmpdir"))?;
        let user_flag = if is_root() { Some("--user=root") } else { None };
        let output = Command::new(&install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(user_flag)
            .output()
            .map_err(Error::io("mariadb-install-db"))?;
        if !output.status.success() {
            return Err(Error::Exited {
                server: "mariadb-install-db".into(),
                status: output.status.to_string(),
                log_tail: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let (user, password) = MARIADB_USER;
        let init = dir.path().join("init.sql");
        write_file(
            &init,
            &format!(
                "CREATE DATABASE IF NOT EXISTS podkit;\n\
                 CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}';\n\
                 GRANT ALL ON *.* TO '{user}'@'%';\nFLUSH PRIVILEGES;\n"
            ),
        )?;
        let addr = loopback();
        let d = dir.path().display();
        let spec = Spec::new(
            format!("mariadbd {addr}"),
            program,
            dir.path().join("mariadb.out"),
        )
        .args([
            "--no-defaults".to_string(),
            format!("--datadir={}", data.display()),
            format!("--tmpdir={}", tmp.display()),
            format!("--socket={d}/mysqld.sock"),
            format!("--pid-file={d}/mysqld.pid"),
            format!("--log-error={d}/error.log"),
            format!("--init-file={}", init.display()),
            format!("--port={}", addr.port()),
            "--bind-address=127.0.0.1".into(),
            "--skip-name-resolve".into(),
            "--innodb-buffer-pool-size=32M".into(),
        ])
        .args(user_flag);
        let mut process = ServerProcess::spawn(spec)?;
        // The handshake packet of protocol version 10 follows a 4-byte header.
        process.wait_ready(START_TIMEOUT, || {
            greeting(addr, 5).is_ok_and(|g| g[4] == 10)
        })?;
        Ok(MariaDb {
            addr,
            process,
            _dir: dir,
        })
    }

    /// A `mysql://` URL for [`MARIADB_USER`] and the database `podkit`.
    pub fn url(&self) -> String {
        let (user, password) = MARIADB_USER;
        format!("mysql://{user}:{password}@{}/podkit", self.addr)
    }

    /// The running process, to stop, kill or signal it.
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    /// Starts the server again with its data.
    pub fn restart(&mut self) -> Result<()> {
        self.process.restart_process()?;
        let addr = self.addr;
        self.process.wait_ready(START_TIMEOUT, || {
            greeting(addr, 5).is_ok_and(|g| g[4] == 10)
        })
    }
}
