//! The test kit's error type.

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server's binary is not installed.
    #[error(
        "{binary} not found: install the Debian package `{package}` (scripts/setup installs it)"
    )]
    Missing {
        binary: &'static str,
        package: &'static str,
    },
    /// The server did not answer in time.
    #[error("{server} did not become ready within {seconds}s; its log ends with:\n{log_tail}")]
    NotReady {
        server: String,
        seconds: u64,
        log_tail: String,
    },
    /// The server exited while starting.
    #[error("{server} exited while starting ({status}); its log ends with:\n{log_tail}")]
    Exited {
        server: String,
        status: String,
        log_tail: String,
    },
    /// An I/O error while preparing or starting a server.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// The test kit's result type.
pub type Result<T> = std::result::Result<T, Error>;
