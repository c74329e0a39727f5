//! TLS termination with rustls: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, and the
//! certificate and key reloaded when their files change. Connections already open keep
//! the certificate they started with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::TcpStream;

use podkit_core::http::{Accept, Protocols};
use podkit_core::shutdown::Shutdown;

use crate::config::TlsConfig;

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads a server config from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let file_error = |path: &Path, message: String| TlsError::File {
        path: path.to_path_buf(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts TLS connections with the current certificate.
#[derive(Clone, Debug)]
pub struct TlsAcceptor {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl TlsAcceptor {
    /// Loads the certificate and key of `config`.
    pub fn load(config: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
        let server = server_config(&config.cert, &config.key)?;
        Ok(TlsAcceptor {
            current: Arc::new(RwLock::new(Arc::new(server))),
        })
    }

    /// Checks the files every `reload_check` and swaps in a new certificate when they
    /// change and load cleanly; a broken pair is logged and the old one kept.
    pub fn spawn_reloader(&self, config: TlsConfig, shutdown: Shutdown) {
        let current = self.current.clone();
        tokio::spawn(async move {
            let mut seen = fingerprint(&config);
            let mut ticker = tokio::time::interval(config.reload_check.get());
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = shutdown.triggered() => return,
                }
                let now = fingerprint(&config);
                if now == seen {
                    continue;
                }
                match server_config(&config.cert, &config.key) {
                    Ok(server) => {
                        *current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(server);
                        seen = now;
                        tracing::info!(cert = %config.cert.display(), "certificate reloaded");
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "certificate change not loaded; keeping the old one")
                    }
                }
            }
        });
    }
}

/// Modification time and length of both files.
fn fingerprint(config: &TlsConfig) -> [(Option<SystemTime>, u64); 2] {
    let stat = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.modified().ok(), m.len()))
            .unwrap_or((None, 0))
    };
    [stat(&config.cert), stat(&config.key)]
}

impl Accept for TlsAcceptor {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;

    async fn accept(&self, stream: TcpStream) -> std::io::Result<(Self::Io, Protocols)> {
        let config = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let tls = tokio_rustls::TlsAcceptor::from(config)
            .accept(stream)
            .await?;
        let protocols = match tls.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocols::Http2,
            _ => Protocols::Http1,
        };
        Ok((tls, protocols))
    }

    fn is_tls(&self) -> bool {
        true
    }
}
