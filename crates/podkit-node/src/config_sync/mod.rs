//! `podkit sidecar config-sync`: chapter 2's dynamic-configuration sidecar. A legacy
//! application reads its configuration from a file; this sidecar, sharing the file's
//! directory, keeps the file equal to a configuration API (an HTTP(S) URL, a file, or an
//! etcd key), validates each new version, installs it atomically, keeps the replaced
//! versions, and tells the application: SIGHUP, SIGKILL (to be restarted), or a reload URL.
//!
//! A source that is down leaves the current file untouched.

pub mod etcd;
pub mod install;
pub mod notify;
pub mod source;

use std::path::PathBuf;

use podkit_core::component::{ComponentError, Context};
use podkit_core::{ConfigError, HumanDuration};
use tokio::sync::mpsc;

use crate::http_fetch::HttpClient;
use crate::sync_metrics::{Names, SyncMetrics};
use install::Installer;
use notify::Notifier;
use source::{Polling, Source, Update};

/// The flags of `podkit sidecar config-sync`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigSyncArgs {
    /// Where the configuration comes from: `http(s)://...` (polled with conditional GETs),
    /// `file:///path` (polled) or `etcd://host:port[,host:port]/key` (watched).
    #[arg(long, env = "PODKIT_SOURCE", value_name = "URL")]
    pub source: String,
    /// The file the application reads.
    #[arg(long, env = "PODKIT_DEST", value_name = "FILE")]
    pub dest: PathBuf,
    /// How often to poll an HTTP or file source (±10% at random); for etcd, how long to
    /// wait before re-establishing a broken watch.
    #[arg(
        long,
        env = "PODKIT_INTERVAL",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub interval: HumanDuration,
    /// A shell command that must succeed on a new version before it is installed; it finds
    /// the candidate file in `$CONFIG_FILE` (e.g. `nginx -t -c "$CONFIG_FILE"`).
    #[arg(long, env = "PODKIT_VALIDATE_CMD", value_name = "CMD")]
    pub validate_cmd: Option<String>,
    /// How many replaced versions to keep (0: none).
    #[arg(long, env = "PODKIT_KEEP", default_value_t = 5, value_name = "N")]
    pub keep: usize,
    /// Where replaced versions are kept (default: `.NAME.versions` beside the file).
    #[arg(long, env = "PODKIT_VERSIONS_DIR", value_name = "DIR")]
    pub versions_dir: Option<PathBuf>,
    /// Signal to send the application after an update: HUP to reload, KILL to have it
    /// restarted by its supervisor.
    #[arg(long, env = "PODKIT_SIGNAL", value_name = "SIGNAL", value_parser = notify::parse_signal)]
    pub signal: Option<nix::sys::signal::Signal>,
    /// The application's pid file, for --signal.
    #[arg(
        long,
        env = "PODKIT_PID_FILE",
        value_name = "FILE",
        conflicts_with = "process_name"
    )]
    pub pid_file: Option<PathBuf>,
    /// The application's process name, for --signal (every process with that name).
    #[arg(long, env = "PODKIT_PROCESS_NAME", value_name = "NAME")]
    pub process_name: Option<String>,
    /// A URL to POST to after an update (the application's reload endpoint).
    #[arg(long, env = "PODKIT_RELOAD_URL", value_name = "URL")]
    pub reload_url: Option<http::Uri>,
    /// CA certificates (PEM) for an https:// source or reload URL, in place of the system's.
    #[arg(long, env = "PODKIT_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Longest a request to the source or the reload URL may take.
    #[arg(
        long,
        env = "PODKIT_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub timeout: HumanDuration,
    /// Largest configuration accepted.
    #[arg(
        long,
        env = "PODKIT_MAX_SIZE",
        default_value = "16MiB",
        value_name = "SIZE"
    )]
    pub max_size: podkit_core::ByteSize,
    /// Sync once and exit: 0 when the file is current, 1 when the source failed (for an
    /// init container).
    #[arg(long, env = "PODKIT_ONCE")]
    pub once: bool,
}

/// Everything `run` needs, checked before start.
pub struct Plan {
    source: Source,
    installer: Installer,
    notifier: Notifier,
    client: HttpClient,
}

impl ConfigSyncArgs {
    /// Checks the flags together; the error names the flag.
    pub fn plan(&self) -> Result<Plan, ConfigError> {
        let source = Source::parse(&self.source)
            .map_err(|e| ConfigError::flag("--source", format!("'{}': {e}", self.source)))?;
        let signal = notify::signal_plan(
            self.signal,
            self.pid_file.as_deref(),
            self.process_name.as_deref(),
        )?;
        let name = self
            .dest
            .file_name()
            .ok_or_else(|| ConfigError::flag("--dest", "must name a file"))?
            .to_string_lossy()
            .into_owned();
        let versions_dir = self
            .versions_dir
            .clone()
            .unwrap_or_else(|| self.dest.with_file_name(format!(".{name}.versions")));
        let client = HttpClient::new(
            self.ca_file.as_deref(),
            self.timeout.get(),
            self.max_size.bytes() as usize,
        )
        .map_err(|e| ConfigError::flag("--ca-file", e))?;
        Ok(Plan {
            source,
            installer: Installer {
                dest: self.dest.clone(),
                validate_cmd: self.validate_cmd.clone(),
                keep: self.keep,
                versions_dir,
            },
            notifier: Notifier {
                signal,
                reload_url: self.reload_url.clone(),
            },
            client,
        })
    }
}

/// Keeps the file in sync until shutdown (or after one sync with `--once`).
pub async fn run(args: ConfigSyncArgs, plan: Plan, ctx: Context) -> Result<(), ComponentError> {
    let Plan {
        source,
        installer,
        notifier,
        client,
    } = plan;
    let metrics = SyncMetrics::register(
        &ctx,
        Names {
            prefix: "podkit_config_sync",
            installed: "updates",
            installed_help: "New versions installed",
            info: "version_info",
            info_label: "version",
            info_help: "The version (ETag, etcd revision or md5 of the bytes) the file holds",
            stages: "source, validate, write, notify",
        },
    );
    tracing::info!(source = %source.describe(), dest = %installer.dest.display(), "keeping the file in sync");
    // Ready once the application has a file to read: already there, or the first install.
    let mut has_file =
        (!installer.dest.exists()).then(|| ctx.readiness.latch("a first version of the file"));
    ctx.started();
    let (tx, mut rx) = mpsc::channel(4);
    let polling = Polling {
        interval: args.interval.get(),
        jitter: 0.1,
    };
    let task = tokio::spawn(source::run(
        source,
        polling,
        client.clone(),
        tx,
        ctx.shutdown.clone(),
    ));
    let mut last_error: Option<String> = None;
    let mut result = Ok(());
    // The version being served, and one whose install or notification failed: retried
    // every interval until it succeeds (a 304 or a quiet watch would not bring it again).
    let mut version_served: Option<String> = None;
    let mut retry: Option<(bytes::Bytes, String)> = None;
    let mut notify_pending = false;
    while let Some(update) = tokio::select! {
        update = rx.recv() => update,
        _ = tokio::time::sleep(args.interval.get()), if retry.is_some() => {
            retry.take().map(|(content, version)| Update::Content { content, version })
        }
        _ = ctx.shutdown.triggered() => None,
    } {
        match update {
            Update::Unchanged => {
                last_error = None;
                if let (Some(version), None) = (&version_served, &retry) {
                    metrics.current(version);
                }
            }
            Update::Failed(error) => {
                metrics.failed("source");
                if last_error.as_ref() != Some(&error) {
                    tracing::warn!(%error, "the source cannot be read; the file is left as it is");
                    last_error = Some(error.clone());
                }
                if args.once {
                    result = Err(ComponentError::runtime(error));
                    break;
                }
            }
            Update::Content { content, version } => {
                last_error = None;
                let outcome = apply(
                    &installer,
                    &notifier,
                    &client,
                    &content,
                    &version,
                    &metrics,
                    &mut notify_pending,
                )
                .await;
                match outcome {
                    Ok(()) => {
                        retry = None;
                        metrics.current(&version);
                        version_served = Some(version);
                        if let Some(latch) = has_file.take() {
                            latch.release();
                        }
                    }
                    Err((stage, error)) => {
                        metrics.failed(stage);
                        if stage == "notify" {
                            // Installed, but the application was not told yet.
                            version_served = Some(version.clone());
                            if let Some(latch) = has_file.take() {
                                latch.release();
                            }
                        }
                        tracing::error!(%version, %stage, %error, "update failed");
                        if args.once {
                            result = Err(ComponentError::runtime(error));
                            break;
                        }
                        // A refused version is not retried; a failed write or notice is.
                        retry = (stage != "validate").then_some((content, version));
                    }
                }
                if args.once {
                    break;
                }
            }
        }
    }
    task.abort();
    result
}

/// Installs `content` if it differs from the file, then notifies the application (again,
/// while an earlier notice is pending). The error is the stage that failed and why.
async fn apply(
    installer: &Installer,
    notifier: &Notifier,
    client: &HttpClient,
    content: &[u8],
    version: &str,
    metrics: &SyncMetrics,
    notify_pending: &mut bool,
) -> Result<(), (&'static str, String)> {
    let has_notifier = notifier.signal.is_some() || notifier.reload_url.is_some();
    if installer.current().as_deref() == Some(content) {
        tracing::debug!(%version, "the file is current");
    } else {
        installer
            .install(content, version)
            .await
            .map_err(|e| (e.stage(), e.to_string()))?;
        metrics.installed();
        tracing::info!(%version, bytes = content.len(), "installed a new version");
        *notify_pending = has_notifier;
    }
    if !*notify_pending {
        return Ok(());
    }
    match notifier.notify(client).await {
        Ok(done) => {
            *notify_pending = false;
            tracing::info!(%done, "told the application");
            Ok(())
        }
        Err(e) => Err(("notify", e)),
    }
}
