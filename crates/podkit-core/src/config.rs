//! Config errors that name where they come from, and a YAML loader that produces them.
//!
//! Every bad flag, environment value or config file ends the process with status 2 and
//! one line, `podkit: error: <where>: <what>`. [`ConfigError`] carries the `<where>`
//! (a flag, an environment variable, or a file and the path of the field inside it)
//! and the `<what>`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Where a bad value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag such as `--drain-timeout`.
    Flag(String),
    /// An environment variable such as `PODKIT_DRAIN_TIMEOUT`.
    Env(String),
    /// A field inside a config file (`field` is a dotted path, may be empty).
    File { path: PathBuf, field: String },
    /// The command line as a whole (a missing subcommand, an unknown argument...).
    CommandLine,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => f.write_str(flag),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::File { path, field } if field.is_empty() => write!(f, "{}", path.display()),
            Origin::File { path, field } => write!(f, "{}: {field}", path.display()),
            Origin::CommandLine => f.write_str("command line"),
        }
    }
}

/// A bad flag, environment value or config file: the process exits 2 with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    pub origin: Origin,
    pub message: String,
}

impl ConfigError {
    /// An error about a field of a config file.
    pub fn file(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        message: impl fmt::Display,
    ) -> Self {
        ConfigError {
            origin: Origin::File {
                path: path.into(),
                field: field.into(),
            },
            message: one_line(&message.to_string()),
        }
    }

    /// An error about a command-line flag (`--name`).
    pub fn flag(flag: impl Into<String>, message: impl fmt::Display) -> Self {
        ConfigError {
            origin: Origin::Flag(flag.into()),
            message: one_line(&message.to_string()),
        }
    }

    /// An error about the command line as a whole.
    pub fn command_line(message: impl fmt::Display) -> Self {
        ConfigError {
            origin: Origin::CommandLine,
            message: one_line(&message.to_string()),
        }
    }
}

/// Joins a multi-line message into one line.
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads a YAML file into `T`; unknown or bad fields name their dotted path.
///
/// `T` should use `#[serde(deny_unknown_fields)]` so that a misspelt key is an error.
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(path, "", format!("cannot read: {e}")))?;
    parse_yaml(path, &text)
}

/// Parses YAML text (read from `path`) into `T`, naming the field of any error.
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let field = err.path().to_string();
        let field = if field == "." { String::new() } else { field };
        // serde_yaml_ng starts its message with the path of the enclosing mapping.
        let message = err.into_inner().to_string();
        let message = match message.split_once(": ") {
            Some((head, rest)) if field.starts_with(head) => rest.to_string(),
            _ => message,
        };
        ConfigError::file(path, field, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Pool {
        listen: String,
        servers: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Top {
        pools: std::collections::BTreeMap<String, Pool>,
    }

    #[test]
    fn unknown_field_names_its_path() {
        let err = parse_yaml::<Top>(
            Path::new("conf.yaml"),
            "pools:\n  alpha:\n    listen: x\n    servers: []\n    hsah: fnv1a_64\n",
        )
        .unwrap_err();
        let line = err.to_string();
        assert!(
            line.starts_with("conf.yaml: pools.alpha.hsah: unknown field `hsah`"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn wrong_type_names_its_path() {
        let err = parse_yaml::<Top>(
            Path::new("c.yaml"),
            "pools:\n  a:\n    listen: x\n    servers: 3\n",
        )
        .unwrap_err();
        assert_eq!(
            err.origin,
            Origin::File {
                path: "c.yaml".into(),
                field: "pools.a.servers".into()
            }
        );
    }

    #[test]
    fn one_line_joins() {
        assert_eq!(one_line("a\n\n  b\n"), "a; b");
    }
}
