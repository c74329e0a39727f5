//! Structured logs: one JSON object per line on stdout by default, or text for people.

use tracing_subscriber::EnvFilter;

use crate::config::ConfigError;

/// How log lines are written.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and fields.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogOutput {
    /// Standard output, the default.
    #[default]
    Stdout,
    /// Standard error, for components whose stdout carries data (`podkit adapter logs`).
    Stderr,
}

/// Installs the global subscriber writing to stdout; see [`init_to`].
pub fn init(format: LogFormat, level: Option<&str>) -> Result<(), ConfigError> {
    init_to(format, level, LogOutput::Stdout)
}

/// Installs the global subscriber.
///
/// `level` is an `EnvFilter` directive (`info`, `podkit_proxy=debug,warn`); when absent,
/// `RUST_LOG` is used if set, else `info`.
pub fn init_to(
    format: LogFormat,
    level: Option<&str>,
    output: LogOutput,
) -> Result<(), ConfigError> {
    let directive = match level {
        Some(l) => l.to_string(),
        None => std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string()),
    };
    let filter = EnvFilter::try_new(&directive)
        .map_err(|e| ConfigError::flag("--log-level", format!("'{directive}': {e}")))?;
    let writer =
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
            match output {
                LogOutput::Stdout => Box::new(std::io::stdout()),
                LogOutput::Stderr => Box::new(std::io::stderr()),
            }
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    // A subscriber already installed (tests running several components) is fine.
    drop(result);
    Ok(())
}
