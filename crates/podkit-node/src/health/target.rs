//! The database a health adapter checks, and one check: connect if needed, run the query.
//!
//! A connection is kept between checks and dropped after any failure, so that a database
//! that went away and came back is reached again on the next check.

use std::time::Duration;

use crate::redis_client::{self, RedisUrl};

/// Which database, with credentials already merged from flags, env and files.
#[derive(Clone)]
pub enum Target {
    /// MySQL or MariaDB.
    Mysql(mysql_async::Opts),
    /// PostgreSQL.
    Postgres(tokio_postgres::Config),
    /// Redis.
    Redis(RedisUrl),
}

/// Overrides of the URL's parts (the book's adapter takes `--user`, `--password`,
/// `--database`).
#[derive(Default, Clone)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
}

impl Target {
    /// A MySQL target from a `mysql://user:password@host:port/db` URL.
    pub fn mysql(url: &str, credentials: &Credentials) -> Result<Target, String> {
        let url = if url.contains("://") {
            url.to_string()
        } else {
            format!("mysql://{url}")
        };
        let opts =
            mysql_async::Opts::from_url(&url).map_err(|e| format!("not a MySQL URL: {e}"))?;
        let mut builder = mysql_async::OptsBuilder::from_opts(opts)
            // Stay on the address given rather than switching to a socket found by query.
            .prefer_socket(false);
        if let Some(user) = &credentials.user {
            builder = builder.user(Some(user));
        }
        if let Some(password) = &credentials.password {
            builder = builder.pass(Some(password));
        }
        if let Some(database) = &credentials.database {
            builder = builder.db_name(Some(database));
        }
        Ok(Target::Mysql(builder.into()))
    }

    /// A PostgreSQL target from a `postgres://` URL or a `key=value` connection string.
    pub fn postgres(url: &str, credentials: &Credentials) -> Result<Target, String> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        if let Some(user) = &credentials.user {
            config.user(user);
        }
        if let Some(password) = &credentials.password {
            config.password(password);
        }
        if let Some(database) = &credentials.database {
            config.dbname(database);
        }
        Ok(Target::Postgres(config))
    }

    /// A Redis target from a `redis://` URL; `--database` is the database number.
    pub fn redis(url: &str, credentials: &Credentials) -> Result<Target, String> {
        let mut url = RedisUrl::parse(url)?;
        if let Some(user) = &credentials.user {
            url.user = Some(user.clone());
        }
        if let Some(password) = &credentials.password {
            url.password = Some(password.clone());
        }
        if let Some(database) = &credentials.database {
            url.db = Some(
                database
                    .parse()
                    .map_err(|_| format!("'{database}' is not a Redis database number"))?,
            );
        }
        Ok(Target::Redis(url))
    }

    /// The password, to keep it out of every message.
    pub fn password(&self) -> Option<String> {
        match self {
            Target::Mysql(opts) => opts.pass().map(str::to_string),
            Target::Postgres(config) => config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            Target::Redis(url) => url.password.clone(),
        }
    }

    /// Kind and address, for logs and the admin endpoint: never credentials.
    pub fn describe(&self) -> String {
        match self {
            Target::Mysql(opts) => match opts.socket() {
                Some(socket) => format!("mysql {socket}"),
                None => format!("mysql {}:{}", opts.ip_or_hostname(), opts.tcp_port()),
            },
            Target::Postgres(config) => {
                let host = config
                    .get_hosts()
                    .first()
                    .map(|h| match h {
                        tokio_postgres::config::Host::Tcp(name) => name.clone(),
                        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                    })
                    .unwrap_or_else(|| "localhost".into());
                let port = config.get_ports().first().copied().unwrap_or(5432);
                format!("postgres {host}:{port}")
            }
            Target::Redis(url) => format!("redis {}", url.address()),
        }
    }

    /// The query used when `--query` is not given.
    pub fn default_query(&self) -> &'static str {
        match self {
            Target::Redis(_) => "PING",
            _ => "SELECT 1",
        }
    }
}

/// A live connection to the target.
pub enum Connection {
    Mysql(mysql_async::Conn),
    Postgres(tokio_postgres::Client),
    Redis(redis_client::Connection),
}

impl Connection {
    /// Connects to `target`.
    pub async fn open(target: &Target, timeout: Duration) -> Result<Connection, String> {
        match target {
            Target::Mysql(opts) => mysql_async::Conn::new(opts.clone())
                .await
                .map(Connection::Mysql)
                .map_err(|e| e.to_string()),
            Target::Postgres(config) => {
                let (client, connection) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| postgres_error(&e))?;
                tokio::spawn(async move {
                    // Ends with the client, or with an error the next query reports.
                    let _ = connection.await;
                });
                Ok(Connection::Postgres(client))
            }
            Target::Redis(url) => redis_client::Connection::open(url, timeout)
                .await
                .map(Connection::Redis),
        }
    }

    /// Runs `query`; any error is the check's failure.
    pub async fn run(&mut self, query: &str) -> Result<(), String> {
        use mysql_async::prelude::Queryable;
        match self {
            Connection::Mysql(conn) => conn.query_drop(query).await.map_err(|e| e.to_string()),
            Connection::Postgres(client) => client
                .simple_query(query)
                .await
                .map(drop)
                .map_err(|e| postgres_error(&e)),
            Connection::Redis(conn) => {
                let args: Vec<&str> = query.split_whitespace().collect();
                if args.is_empty() {
                    return Err("empty Redis command".into());
                }
                conn.command(&args).await.map(drop)
            }
        }
    }
}

/// tokio-postgres's `Display` for a server error is only "db error": add the server's
/// message.
fn postgres_error(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

/// `text` with every occurrence of each secret replaced by `***`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |text, secret| text.replace(secret, "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_password(password: &str) -> Credentials {
        Credentials {
            password: Some(password.into()),
            ..Credentials::default()
        }
    }

    #[test]
    fn flags_override_the_url() {
        let t = Target::mysql(
            "mysql://app:old@db.local:3307/shop",
            &Credentials {
                user: Some("checker".into()),
                password: Some("new".into()),
                database: Some("stock".into()),
            },
        )
        .unwrap();
        let Target::Mysql(opts) = &t else {
            panic!("mysql")
        };
        assert_eq!(
            (opts.user(), opts.pass(), opts.db_name(), opts.tcp_port()),
            (Some("checker"), Some("new"), Some("stock"), 3307)
        );
        assert_eq!(t.describe(), "mysql db.local:3307");
        assert_eq!(t.password().as_deref(), Some("new"));

        let t = Target::postgres("postgres://u@pg:5433/app", &with_password("pw")).unwrap();
        assert_eq!(t.describe(), "postgres pg:5433");
        assert_eq!(t.password().as_deref(), Some("pw"));
        assert_eq!(t.default_query(), "SELECT 1");

        let t = Target::redis(
            "redis://cache:6380",
            &Credentials {
                database: Some("3".into()),
                ..with_password("s")
            },
        )
        .unwrap();
        let Target::Redis(url) = &t else {
            panic!("redis")
        };
        assert_eq!((url.db, url.password.as_deref()), (Some(3), Some("s")));
        assert_eq!(t.default_query(), "PING");
    }

    #[test]
    fn bare_host_port_is_a_mysql_address() {
        let t = Target::mysql("127.0.0.1:3306", &Credentials::default()).unwrap();
        assert_eq!(t.describe(), "mysql 127.0.0.1:3306");
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(Target::mysql("mysql://h:notaport/", &Credentials::default()).is_err());
        assert!(Target::postgres("postgres://h:x/", &Credentials::default()).is_err());
        let db = Credentials {
            database: Some("x".into()),
            ..Credentials::default()
        };
        assert!(Target::redis("redis://h", &db).is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact(
                "auth failed for s3cret at s3cret",
                &["s3cret".into(), String::new()]
            ),
            "auth failed for *** at ***"
        );
    }
}
