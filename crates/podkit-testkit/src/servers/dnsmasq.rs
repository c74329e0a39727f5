use std::net::SocketAddr;
use std::path::PathBuf;

use super::{loopback, workdir, START_TIMEOUT};
use crate::error::Result;
use crate::process::{find_binary, write_file, ServerProcess, Spec};

/// A `dnsmasq` (Debian package `dnsmasq-base`) answering only for the records it is given
/// (dnsmasq option lines such as `srv-host=_db._tcp.test,db1.test,3306` and
/// `host-record=db1.test,127.0.0.1`), with a TTL of one second unless told otherwise.
#[derive(Debug)]
pub struct Dnsmasq {
    pub addr: SocketAddr,
    records: PathBuf,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts a server on a free port (UDP and TCP) serving `records`.
    pub fn start(records: &[&str]) -> Result<Dnsmasq> {
        Self::start_with_ttl(records, 1)
    }

    /// Like [`Dnsmasq::start`], answering with a TTL of `ttl` seconds.
    pub fn start_with_ttl(records: &[&str], ttl: u32) -> Result<Dnsmasq> {
        let program = find_binary("dnsmasq", "dnsmasq-base")?;
        let dir = workdir("dnsmasq")?;
        let addr = loopback();
        let records_file = dir.path().join("records.conf");
        write_file(&records_file, &lines(records))?;
        let spec = Spec::new(
            format!("dnsmasq {addr}"),
            program,
            dir.path().join("dnsmasq.log"),
        )
        .args([
            "--keep-in-foreground".to_string(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--bind-interfaces".into(),
            "--listen-address=127.0.0.1".into(),
            format!("--port={}", addr.port()),
            format!("--local-ttl={ttl}"),
            "--pid-file".into(),
            "--log-facility=-".into(),
            format!("--conf-file={}", records_file.display()),
        ]);
        let mut process = ServerProcess::spawn(spec)?;
        process.wait_ready(START_TIMEOUT, || std::net::TcpStream::connect(addr).is_ok())?;
        Ok(Dnsmasq {
            addr,
            records: records_file,
            process,
            _dir: dir,
        })
    }

    /// Serves `records` instead, restarting on the same port.
    pub fn replace_records(&mut self, records: &[&str]) -> Result<()> {
        write_file(&self.records, &lines(records))?;
        self.process.restart_process()?;
        let addr = self.addr;
        self.process
            .wait_ready(START_TIMEOUT, || std::net::TcpStream::connect(addr).is_ok())
    }
}

fn lines(records: &[&str]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}
