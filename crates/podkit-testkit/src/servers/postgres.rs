use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;

use super::{is_root, loopback, workdir, START_TIMEOUT};
use crate::error::{Error, Result};
use crate::process::{find_binary, make_dir, ServerProcess, Spec};

/// The superuser of every test PostgreSQL (trust authentication on loopback).
pub const POSTGRES_USER: &str = "podkit";

/// A PostgreSQL server (Debian package `postgresql`) with a fresh cluster. As root, it
/// runs as the `postgres` system user, since PostgreSQL refuses to run as root.
#[derive(Debug)]
pub struct Postgres {
    pub addr: SocketAddr,
    process: ServerProcess,
    pg_isready: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Creates a cluster with `initdb` and starts it on a free port.
    pub fn start() -> Result<Postgres> {
        let initdb = find_binary("initdb", "postgresql")?;
        let program = find_binary("postgres", "postgresql")?;
        let pg_isready = find_binary("pg_isready", "postgresql-client")?;
        let dir = workdir("postgres")?;
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        make_dir(&sockets)?;
        let user = if is_root() {
            let account = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or(Error::Missing {
                    binary: "user postgres",
                    package: "postgresql",
                })?;
            let ids = (account.uid.as_raw(), account.gid.as_raw());
            chown_tree(dir.path(), ids)?;
            Some(ids)
        } else {
            None
        };
        let mut init = Command::new(&initdb);
        init.arg("-D").arg(&data).args([
            "-U",
            POSTGRES_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt;
            init.uid(uid).gid(gid);
        }
        let output = init.output().map_err(Error::io("initdb"))?;
        if !output.status.success() {
            return Err(Error::Exited {
                server: "initdb".into(),
                status: output.status.to_string(),
                log_tail: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let addr = loopback();
        let mut spec = Spec::new(
            format!("postgres {addr}"),
            program,
            dir.path().join("postgres.log"),
        )
        .args([std::ffi::OsStr::new("-D"), data.as_os_str()])
        .args(["-p", &addr.port().to_string()])
        .args([std::ffi::OsStr::new("-k"), sockets.as_os_str()])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        spec.user = user;
        // SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for clients to leave.
        spec.stop_signal = Signal::SIGINT;
        let mut pg = Postgres {
            addr,
            process: ServerProcess::spawn(spec)?,
            pg_isready,
            _dir: dir,
        };
        pg.wait()?;
        Ok(pg)
    }

    fn wait(&mut self) -> Result<()> {
        let (pg_isready, addr) = (self.pg_isready.clone(), self.addr);
        self.process.wait_ready(START_TIMEOUT, || {
            Command::new(&pg_isready)
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &addr.port().to_string(),
                    "-U",
                    POSTGRES_USER,
                ])
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// A `postgres://` URL for [`POSTGRES_USER`] and the database `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{POSTGRES_USER}@{}/postgres", self.addr)
    }

    /// The running process, to stop, kill or signal it.
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    /// Starts the server again with its data.
    pub fn restart(&mut self) -> Result<()> {
        self.process.restart_process()?;
        self.wait()
    }
}

fn chown_tree(path: &Path, (uid, gid): (u32, u32)) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(Error::io(format!("chown {}", path.display())))?;
    if path.is_dir() {
        let entries =
            std::fs::read_dir(path).map_err(Error::io(format!("read {}", path.display())))?;
        for entry in entries.flatten() {
            chown_tree(&entry.path(), (uid, gid))?;
        }
    }
    Ok(())
}
