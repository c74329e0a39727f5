//! A small HTTP/1.1 client for sidecars that poll or notify over HTTP(S): one connection
//! per request, TLS with the system's roots (or a given CA file), a whole-request timeout.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// Where Debian keeps the system's trusted roots.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A response, body read whole (up to the client's limit).
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A TLS client configuration (rustls on ring) trusting `ca_file`'s certificates, or the
/// system's roots when `None`.
pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let file = ca_file.unwrap_or(Path::new(SYSTEM_ROOTS));
    match CertificateDer::pem_file_iter(file) {
        Ok(certs) => {
            for cert in certs {
                let cert = cert.map_err(|e| format!("{}: {e}", file.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
            }
        }
        // Without the system bundle only plain HTTP works; a given file must exist.
        Err(e) if ca_file.is_some() => return Err(format!("{}: {e}", file.display())),
        Err(_) => {}
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Makes requests to `http://` and `https://` URLs.
#[derive(Clone)]
pub struct HttpClient {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    max_body: usize,
}

impl HttpClient {
    /// A client trusting `ca_file`'s certificates, or the system's roots when `None`.
    pub fn new(ca_file: Option<&Path>, timeout: Duration, max_body: usize) -> Result<Self, String> {
        let config = tls_config(ca_file)?;
        Ok(HttpClient {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
            max_body,
        })
    }

    /// Sends one request and reads the whole response within the timeout.
    pub async fn request(
        &self,
        method: Method,
        url: &Uri,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Fetched, String> {
        tokio::time::timeout(self.timeout, self.exchange(method, url, headers, body))
            .await
            .map_err(|_| format!("{url}: no answer within {:?}", self.timeout))?
    }

    async fn exchange(
        &self,
        method: Method,
        url: &Uri,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Fetched, String> {
        let https = match url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url}: only http:// and https:// URLs")),
        };
        let host = url.host().ok_or_else(|| format!("{url}: no host"))?;
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let authority = url.authority().map_or(host, |a| a.as_str());
        // user:password@ in the URL is basic auth, never part of the Host header.
        let (userinfo, host_header) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, authority),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(url.path_and_query().map_or("/", |p| p.as_str()))
            .header(http::header::HOST, host_header)
            .header(
                http::header::USER_AGENT,
                concat!("podkit/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(userinfo) = userinfo {
            let decoded = podkit_core::http::percent_decode(userinfo);
            request = request.header(
                http::header::AUTHORIZATION,
                format!("Basic {}", base64(decoded.as_bytes())),
            );
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("{url}: {e}"))?;
        let response = if https {
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| format!("{host}: {e}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
            send(tls, request).await?
        } else {
            send(tcp, request).await?
        };
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, self.max_body)
            .collect()
            .await
            .map_err(|e| format!("{url}: reading the body: {e}"))?
            .to_bytes();
        Ok(Fetched {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

async fn send<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

/// The URL without a user and password in it, for logs.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, path)) if authority.contains('@') => {
                let host = authority.rsplit('@').next().unwrap_or_default();
                format!("{scheme}://***@{host}/{path}")
            }
            None if rest.contains('@') => {
                format!(
                    "{scheme}://***@{}",
                    rest.rsplit('@').next().unwrap_or_default()
                )
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Standard base64 with padding (RFC 4648), for basic auth.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://deploy:pw@git.local/site.git"),
            "https://***@git.local/site.git"
        );
        assert_eq!(redact_url("/srv/site.git"), "/srv/site.git");
        assert_eq!(redact_url("https://git.local/x"), "https://git.local/x");
    }
    #[test]
    fn base64_as_rfc_4648() {
        assert_eq!(super::base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(super::base64(b"a"), "YQ==");
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::base64(b""), "");
    }
}
