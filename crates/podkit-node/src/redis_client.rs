//! A minimal Redis client for the adapters: connect (with `AUTH` and `SELECT` from the
//! URL), send commands, read RESP replies.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use podkit_kv::resp::{self, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where and how to reach Redis: `redis://[user:password@]host[:port][/db]`, or a bare
/// `host:port`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: Option<u32>,
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "{}", self.address())
    }
}

impl RedisUrl {
    /// Parses the URL; the error says what is wrong.
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let rest = text
            .strip_prefix("redis://")
            .unwrap_or(text)
            .trim_end_matches('/');
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((c, r)) => (Some(c), r),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((h, d)) => (
                h,
                Some(
                    d.parse::<u32>()
                        .map_err(|_| format!("'{d}' is not a database number"))?,
                ),
            ),
            None => (rest, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("'{p}' is not a port"))?,
            ),
            None => (hostport, 6379),
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        let (user, password) = match credentials {
            None => (None, None),
            Some(c) => match c.split_once(':') {
                Some((u, p)) => ((!u.is_empty()).then(|| u.to_string()), Some(p.to_string())),
                None => (None, Some(c.to_string())),
            },
        };
        Ok(RedisUrl {
            host: host.to_string(),
            port,
            user,
            password,
            db,
        })
    }

    /// `host:port`, for logs and labels.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A connection to Redis.
pub struct Connection {
    stream: TcpStream,
    buf: BytesMut,
    timeout: Duration,
}

impl Connection {
    /// Connects, authenticates and selects the database, within `timeout`.
    pub async fn open(url: &RedisUrl, timeout: Duration) -> Result<Connection, String> {
        let stream =
            tokio::time::timeout(timeout, TcpStream::connect((url.host.as_str(), url.port)))
                .await
                .map_err(|_| format!("connecting to {}: timed out", url.address()))?
                .map_err(|e| format!("connecting to {}: {e}", url.address()))?;
        let mut connection = Connection {
            stream,
            buf: BytesMut::with_capacity(16 << 10),
            timeout,
        };
        if let Some(password) = &url.password {
            let mut auth = vec!["AUTH".to_string()];
            auth.extend(url.user.clone());
            auth.push(password.clone());
            let args: Vec<&str> = auth.iter().map(String::as_str).collect();
            connection.command(&args).await?;
        }
        if let Some(db) = url.db {
            connection.command(&["SELECT", &db.to_string()]).await?;
        }
        Ok(connection)
    }

    /// Sends one command and returns its reply; an error reply is an error.
    pub async fn command(&mut self, args: &[&str]) -> Result<Frame, String> {
        let request = Frame::command(args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())));
        let exchange = async {
            self.stream
                .write_all(&request.to_bytes())
                .await
                .map_err(|e| e.to_string())?;
            loop {
                match resp::take(&mut self.buf) {
                    Ok(Some((Frame::Error(e), _))) => {
                        return Err(String::from_utf8_lossy(&e).into_owned())
                    }
                    Ok(Some((frame, _))) => return Ok(frame),
                    Ok(None) => {}
                    Err(e) => return Err(e.to_string()),
                }
                if self
                    .stream
                    .read_buf(&mut self.buf)
                    .await
                    .map_err(|e| e.to_string())?
                    == 0
                {
                    return Err("the server closed the connection".into());
                }
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("{}: no reply within {:?}", args[0], self.timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = RedisUrl::parse("redis://:s3cret@cache.local:6380/2").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.user.clone(),
                u.password.as_deref(),
                u.db
            ),
            ("cache.local", 6380, None, Some("s3cret"), Some(2))
        );
        assert_eq!(format!("{u:?}"), "cache.local:6380", "no password in Debug");
        let u = RedisUrl::parse("localhost").unwrap();
        assert_eq!((u.port, u.db), (6379, None));
        let u = RedisUrl::parse("redis://app:pw@h:1").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref()),
            (Some("app"), Some("pw"))
        );
        assert!(RedisUrl::parse("redis://h:notaport").is_err());
        assert!(RedisUrl::parse("redis://h:1/x").is_err());
        assert!(RedisUrl::parse("redis://:p@").is_err());
    }
}
