//! Command-line parsing with the contract's error rules.
//!
//! [`parse`] turns `std::env::args` into a clap-derived command, or exits: 0 after
//! `--help`/`--version`, 2 with one line `podkit: error: <where>: <what>` on anything bad.
//! The `<where>` names the flag, or the environment variable when the bad value came from
//! one, or the config file and field.
//!
//! Components that flatten [`FlagsFileArg`] also read their flags from a YAML file
//! (`--config FILE`): its keys are the long flag names. Precedence is command line, then
//! environment, then the file, then the built-in default.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use crate::config::{ConfigError, Origin};

/// The clap id of the flags-file argument; kept apart from a component's own `--config`.
const FLAGS_FILE_ID: &str = "podkit_flags_file";

/// `--config FILE`: read this command's flags from a YAML file.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FlagsFileArg {
    /// YAML file whose keys are this command's long flag names (e.g. `listen: 0.0.0.0:8080`).
    /// Flags and environment variables override it.
    #[arg(long = "config", id = FLAGS_FILE_ID, env = "PODKIT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What a parse attempt ends in, other than a parsed command.
#[derive(Debug)]
pub enum CliExit {
    /// Help or version text to print on stdout; exit status given.
    Print { text: String, status: u8 },
    /// A bad flag, environment value or config file.
    Error(ConfigError),
}

/// Parses the process's arguments, or prints and exits as the contract says.
pub fn parse<C: CommandFactory + FromArgMatches>() -> C {
    match try_parse_from::<C>(std::env::args_os()) {
        Ok(command) => command,
        Err(CliExit::Print { text, status }) => {
            print!("{text}");
            std::process::exit(status.into());
        }
        Err(CliExit::Error(err)) => exit_config_error(&err),
    }
}

/// Prints `podkit: error: <err>` on stderr and exits with status 2.
pub fn exit_config_error(err: &ConfigError) -> ! {
    eprintln!("podkit: error: {err}");
    std::process::exit(2)
}

/// Parses `argv` (program name first) into `C`, applying a `--config` flags file.
pub fn try_parse_from<C: CommandFactory + FromArgMatches>(
    argv: impl IntoIterator<Item = impl Into<OsString>>,
) -> Result<C, CliExit> {
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut command = C::command();
    command.build();
    let matches = command
        .clone()
        .try_get_matches_from(&argv)
        .map_err(|e| clap_exit(&command, &argv, &[], None, e))?;

    let mut path = Vec::new();
    let (leaf, leaf_matches) = leaf(&command, &matches, &mut path);
    let flags_file = leaf_matches
        .try_get_one::<PathBuf>(FLAGS_FILE_ID)
        .ok()
        .flatten()
        .cloned();
    let (matches, injected) = match flags_file {
        None => (matches, Vec::new()),
        Some(file) => {
            let injected = flags_from_file(&file, leaf, leaf_matches)?;
            if injected.is_empty() {
                (matches, injected)
            } else {
                let at = insertion_point(&argv, &path);
                let mut argv2 = argv.clone();
                argv2.splice(at..at, injected.iter().flat_map(|f| f.args.iter().cloned()));
                let reparsed = command
                    .clone()
                    .try_get_matches_from(&argv2)
                    .map_err(|e| clap_exit(&command, &argv, &injected, Some(&file), e))?;
                (reparsed, injected)
            }
        }
    };
    C::from_arg_matches(&matches).map_err(|e| clap_exit(&command, &argv, &injected, None, e))
}

/// One flag taken from a flags file, as the arguments it becomes.
#[derive(Debug)]
struct InjectedFlag {
    long: String,
    args: Vec<OsString>,
}

fn leaf<'a>(
    command: &'a Command,
    matches: &'a ArgMatches,
    path: &mut Vec<String>,
) -> (&'a Command, &'a ArgMatches) {
    match matches.subcommand() {
        Some((name, sub_matches)) => match command.find_subcommand(name) {
            Some(sub) => {
                path.push(name.to_string());
                leaf(sub, sub_matches, path)
            }
            None => (command, matches),
        },
        None => (command, matches),
    }
}

/// Reads the flags file and returns the flags it sets that the command line and the
/// environment did not.
fn flags_from_file(
    file: &Path,
    command: &Command,
    matches: &ArgMatches,
) -> Result<Vec<InjectedFlag>, CliExit> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliExit::Error(ConfigError::file(file, "", format!("cannot read: {e}"))))?;
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| CliExit::Error(ConfigError::file(file, "", e)))?;
    let map = match doc {
        serde_yaml_ng::Value::Mapping(map) => map,
        serde_yaml_ng::Value::Null => return Ok(Vec::new()),
        _ => {
            return Err(CliExit::Error(ConfigError::file(
                file,
                "",
                "expected a mapping of flag names to values",
            )))
        }
    };
    let known: Vec<&str> = command
        .get_arguments()
        .filter(|a| a.get_id() != FLAGS_FILE_ID)
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "help" && *l != "version")
        .collect();
    let mut out = Vec::new();
    for (key, value) in map {
        let key = match key {
            serde_yaml_ng::Value::String(k) => k,
            other => {
                return Err(CliExit::Error(ConfigError::file(
                    file,
                    format!("{other:?}"),
                    "keys must be flag names",
                )))
            }
        };
        let long = key.replace('_', "-");
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && known.contains(&long.as_str()))
        else {
            return Err(CliExit::Error(ConfigError::file(
                file,
                &key,
                format!("unknown field; expected one of: {}", known.join(", ")),
            )));
        };
        let id = arg.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let values = yaml_values(&value).ok_or_else(|| {
            CliExit::Error(ConfigError::file(
                file,
                &key,
                "expected a string, number, boolean or list of them",
            ))
        })?;
        let args = match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => match values.as_slice() {
                [v] if v == "true" => vec![OsString::from(format!("--{long}"))],
                [v] if v == "false" => Vec::new(),
                _ => {
                    return Err(CliExit::Error(ConfigError::file(
                        file,
                        &key,
                        "expected true or false",
                    )))
                }
            },
            _ => values
                .iter()
                .map(|v| OsString::from(format!("--{long}={v}")))
                .collect(),
        };
        out.push(InjectedFlag { long, args });
    }
    Ok(out)
}

fn yaml_values(value: &serde_yaml_ng::Value) -> Option<Vec<String>> {
    use serde_yaml_ng::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        Value::Sequence(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}

/// Index in `argv` just after the tokens naming the subcommand `path`.
fn insertion_point(argv: &[OsString], path: &[String]) -> usize {
    let mut at = 1;
    for name in path {
        match argv[at..]
            .iter()
            .position(|a| a.to_str() == Some(name.as_str()))
        {
            Some(i) => at += i + 1,
            None => return argv.len(),
        }
    }
    at
}

/// Turns a clap error into help output or a one-line config error.
fn clap_exit(
    command: &Command,
    argv: &[OsString],
    injected: &[InjectedFlag],
    flags_file: Option<&Path>,
    err: clap::Error,
) -> CliExit {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            return CliExit::Print {
                text: err.render().to_string(),
                status: 0,
            }
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            return CliExit::Print {
                text: err.render().to_string(),
                status: 2,
            }
        }
        _ => {}
    }
    let flag = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.split_whitespace().next().map(str::to_string),
        _ => None,
    };
    let message = match (err.kind(), err.get(ContextKind::InvalidValue)) {
        (ErrorKind::ValueValidation, Some(ContextValue::String(value))) => {
            match std::error::Error::source(&err) {
                Some(source) => format!("invalid value '{value}': {source}"),
                None => first_line(&err),
            }
        }
        (ErrorKind::MissingRequiredArgument, _) => match err.get(ContextKind::InvalidArg) {
            Some(ContextValue::Strings(args)) => format!("missing {}", args.join(", ")),
            _ => first_line(&err),
        },
        _ => first_line(&err),
    };
    let origin = match &flag {
        Some(flag) => origin_of(command, argv, injected, flags_file, flag),
        None => Origin::CommandLine,
    };
    CliExit::Error(ConfigError {
        origin,
        message: crate::config::one_line(&message),
    })
}

fn first_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let line = rendered.lines().next().unwrap_or("invalid arguments");
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// Which of command line, environment or flags file supplied `flag`'s value.
fn origin_of(
    command: &Command,
    argv: &[OsString],
    injected: &[InjectedFlag],
    flags_file: Option<&Path>,
    flag: &str,
) -> Origin {
    let long = flag.trim_start_matches('-');
    if let (Some(file), true) = (flags_file, injected.iter().any(|f| f.long == long)) {
        return Origin::File {
            path: file.to_path_buf(),
            field: long.to_string(),
        };
    }
    let on_command_line = argv.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
    });
    if !on_command_line {
        if let Some(env) = find_env(command, long) {
            if std::env::var_os(&env).is_some() {
                return Origin::Env(env);
            }
        }
    }
    Origin::Flag(flag.to_string())
}

fn find_env(command: &Command, long: &str) -> Option<String> {
    let here = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned());
    here.or_else(|| {
        command
            .get_subcommands()
            .find_map(|sub| find_env(sub, long))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::HumanDuration;
    use clap::Parser;
    use std::io::Write;

    #[derive(Parser, Debug)]
    #[command(name = "podkit")]
    enum Cli {
        /// A test component.
        Thing(ThingArgs),
    }

    #[derive(clap::Args, Debug)]
    struct ThingArgs {
        /// How often.
        #[arg(long, env = "PODKIT_TEST_CLI_INTERVAL", default_value = "10s")]
        interval: HumanDuration,
        /// Where.
        #[arg(long, default_value = "127.0.0.1:1")]
        listen: String,
        /// Repeatable.
        #[arg(long)]
        backend: Vec<String>,
        /// A switch.
        #[arg(long)]
        verbose: bool,
        #[command(flatten)]
        file: FlagsFileArg,
    }

    fn parse(args: &[&str]) -> Result<Cli, CliExit> {
        try_parse_from::<Cli>(std::iter::once("podkit").chain(args.iter().copied()))
    }

    fn error(args: &[&str]) -> ConfigError {
        match parse(args) {
            Err(CliExit::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn bare_number_names_the_flag() {
        let err = error(&["thing", "--interval", "10"]);
        assert_eq!(err.origin, Origin::Flag("--interval".into()));
        assert!(err.message.contains("bare number"), "{}", err.message);
    }

    #[test]
    fn unknown_flag_is_one_line() {
        let err = error(&["thing", "--nope"]);
        assert!(!err.to_string().contains('\n'));
        assert!(err.to_string().contains("--nope"), "{err}");
    }

    #[test]
    fn help_is_printed_with_env_and_default() {
        match parse(&["thing", "--help"]) {
            Err(CliExit::Print { text, status: 0 }) => {
                assert!(text.contains("PODKIT_TEST_CLI_INTERVAL"), "{text}");
                assert!(text.contains("[default: 10s]"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    fn write_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn flags_file_sets_defaults_and_flags_win() {
        let f = write_file("interval: 2m\nlisten: 0.0.0.0:9\nbackend: [a, b]\nverbose: true\n");
        let path = f.path().to_str().unwrap();
        let Cli::Thing(t) = parse(&["thing", "--config", path, "--listen", "1.2.3.4:5"]).unwrap();
        assert_eq!(t.interval.to_string(), "2m");
        assert_eq!(t.listen, "1.2.3.4:5");
        assert_eq!(t.backend, vec!["a", "b"]);
        assert!(t.verbose);
    }

    #[test]
    fn flags_file_unknown_key_names_file_and_field() {
        let f = write_file("intervall: 2m\n");
        let path = f.path().to_str().unwrap();
        let err = error(&["thing", "--config", path]);
        assert_eq!(
            err.origin,
            Origin::File {
                path: path.into(),
                field: "intervall".into()
            }
        );
        assert!(err.message.starts_with("unknown field"), "{}", err.message);
    }

    #[test]
    fn flags_file_bad_value_names_file_and_field() {
        let f = write_file("interval: 10\n");
        let path = f.path().to_str().unwrap();
        let err = error(&["thing", "--config", path]);
        assert_eq!(
            err.origin,
            Origin::File {
                path: path.into(),
                field: "interval".into()
            }
        );
    }

    #[test]
    fn insertion_point_after_subcommands() {
        let argv: Vec<OsString> = ["podkit", "sidecar", "topz", "--x"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            insertion_point(&argv, &["sidecar".into(), "topz".into()]),
            3
        );
    }
}

/// A listen address as other servers' flags write it: `host:port` where host may be a
/// name (`localhost:8080`, resolved now), an IP, or empty (`:8080`, every interface, as
/// Go programs take it). For `value_parser`.
pub fn listen_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("'{text}' is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{port}' is not a port"))?;
    if host.is_empty() {
        return Ok(std::net::SocketAddr::from(([0, 0, 0, 0], port)));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("'{host}' does not resolve: {e}"))?
        .min_by_key(|a| !a.is_ipv4())
        .ok_or_else(|| format!("'{host}' has no address"))
}

#[cfg(test)]
mod listen_addr_tests {
    use super::listen_addr;

    #[test]
    fn names_ips_and_bare_ports() {
        assert_eq!(
            listen_addr("localhost:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(listen_addr(":9000").unwrap().to_string(), "0.0.0.0:9000");
        assert_eq!(listen_addr("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert!(listen_addr("localhost").is_err());
        assert!(listen_addr("localhost:http").is_err());
    }
}
