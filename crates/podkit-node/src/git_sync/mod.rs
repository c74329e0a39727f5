//! `podkit sidecar git-sync`: chapter 2's "simple PaaS". A directory the application
//! serves (or runs) from is kept equal to a branch, tag or commit of a git repository:
//! every `--interval` the ref is fetched (shallow by default) into a cache, and a new
//! commit is checked out whole into its own directory before the `--link` symlink is
//! flipped to it, so the application never sees a half-updated tree. Then the application
//! is told (`--webhook`, `--signal`). git itself is gix, in process.

pub mod repo;
pub mod worktree;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use podkit_core::component::{ComponentError, Context};
use podkit_core::{ConfigError, HumanDuration};

use crate::config_sync::notify::{self, Notifier};
use crate::http_fetch::HttpClient;
use crate::sync_metrics::{Names, SyncMetrics};
use repo::{Cache, Credentials, Remote};
use worktree::Worktrees;

/// The flags of `podkit sidecar git-sync`.
#[derive(clap::Args, Debug, Clone)]
pub struct GitSyncArgs {
    /// The repository: `https://...`, `http://...`, `file:///path` or a local path.
    #[arg(long, env = "PODKIT_REPO", value_name = "URL")]
    pub repo: String,
    /// The branch, tag or commit id to follow.
    #[arg(
        long = "ref",
        alias = "branch",
        env = "PODKIT_REF",
        default_value = "HEAD",
        value_name = "REF"
    )]
    pub reference: String,
    /// The directory holding the checkouts and the link.
    #[arg(long, env = "PODKIT_ROOT", value_name = "DIR")]
    pub root: PathBuf,
    /// The name, in the root, of the symlink to the current checkout: what the app reads.
    #[arg(
        long,
        env = "PODKIT_LINK",
        default_value = "current",
        value_name = "NAME"
    )]
    pub link: String,
    /// How often to fetch (kubernetes git-sync's `--period` is accepted too).
    #[arg(
        long,
        alias = "period",
        env = "PODKIT_INTERVAL",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub interval: HumanDuration,
    /// Commits of history to fetch (0: all).
    #[arg(long, env = "PODKIT_DEPTH", default_value_t = 1, value_name = "N")]
    pub depth: u32,
    /// A file holding `user:password` for an HTTP(S) repository; never logged.
    #[arg(long, env = "PODKIT_CREDENTIALS_FILE", value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
    /// CA certificates (PEM) for an https:// repository, in place of the system's.
    #[arg(long, env = "PODKIT_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// A URL to POST to after each new commit is published (header `Gitsync-Hash`).
    #[arg(long, env = "PODKIT_WEBHOOK", value_name = "URL")]
    pub webhook: Option<http::Uri>,
    /// Signal to send the application after each new commit (HUP, USR1, KILL...).
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
    /// The application's process name, for --signal.
    #[arg(long, env = "PODKIT_PROCESS_NAME", value_name = "NAME")]
    pub process_name: Option<String>,
    /// Older checkouts kept besides the current one.
    #[arg(long, env = "PODKIT_KEEP", default_value_t = 1, value_name = "N")]
    pub keep: usize,
    /// Longest a fetch may take before it is abandoned and retried.
    #[arg(
        long,
        env = "PODKIT_TIMEOUT",
        default_value = "2m",
        value_name = "DURATION"
    )]
    pub timeout: HumanDuration,
    /// Sync once and exit (0 when published, 1 on failure): an init container.
    #[arg(long, env = "PODKIT_ONCE")]
    pub once: bool,
}

/// What `run` needs, checked before start.
pub struct Plan {
    client: HttpClient,
    remote: Remote,
    cache: Arc<Cache>,
    worktrees: Worktrees,
    notifier: Notifier,
}

impl GitSyncArgs {
    /// Checks the flags together; the error names the flag.
    pub fn plan(&self) -> Result<Plan, ConfigError> {
        let credentials = match &self.credentials_file {
            Some(file) => Some(
                Credentials::from_file(file)
                    .map_err(|e| ConfigError::flag("--credentials-file", e))?,
            ),
            None => None,
        };
        let signal = notify::signal_plan(
            self.signal,
            self.pid_file.as_deref(),
            self.process_name.as_deref(),
        )?;
        let worktrees = Worktrees::new(self.root.clone(), self.link.clone(), self.keep)
            .map_err(|e| ConfigError::flag("--link", e))?;
        if self.repo.trim().is_empty() {
            return Err(ConfigError::flag("--repo", "empty"));
        }
        if self.reference.trim().is_empty() {
            return Err(ConfigError::flag("--ref", "empty"));
        }
        // The same CA file serves the webhook client: checked now, so a bad one exits 2.
        let client = HttpClient::new(
            self.ca_file.as_deref(),
            std::time::Duration::from_secs(10),
            1 << 20,
        )
        .map_err(|e| ConfigError::flag("--ca-file", e))?;
        Ok(Plan {
            client,
            remote: Remote {
                url: self.repo.clone(),
                reference: self.reference.clone(),
                depth: NonZeroU32::new(self.depth),
                credentials,
                timeout: self.timeout.get(),
            },
            cache: Arc::new(Cache::new(self.root.join(".cache"), self.ca_file.clone())),
            worktrees,
            notifier: Notifier {
                signal,
                reload_url: self.webhook.clone(),
            },
        })
    }
}

/// One sync: fetch, and publish the commit if it is new. Returns the commit and whether
/// it was new, or the failed stage and why.
async fn sync_once(plan: &Plan) -> Result<(String, bool), (&'static str, String)> {
    let cache = plan.cache.clone();
    let remote = plan.remote.clone();
    let timeout = remote.timeout;
    let interrupt = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = interrupt.clone();
    let fetching = tokio::task::spawn_blocking(move || cache.fetch(&remote, &stop));
    let commit = match tokio::time::timeout(timeout, fetching).await {
        Ok(joined) => joined
            .map_err(|e| ("fetch", e.to_string()))?
            .map_err(|e| ("fetch", e))?,
        Err(_) => {
            // The fetch stops at its next check of the flag; the next sync starts anew.
            interrupt.store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(("fetch", format!("no result within {timeout:?}")));
        }
    };
    if plan.worktrees.current().as_deref() == Some(commit.as_str()) {
        return Ok((commit, false));
    }
    let cache = plan.cache.clone();
    let worktrees = plan.worktrees.clone();
    let published = commit.clone();
    tokio::task::spawn_blocking(move || {
        worktrees.publish(&published, |dest| cache.checkout(&published, dest))
    })
    .await
    .map_err(|e| ("checkout", e.to_string()))?
    .map_err(|e| ("checkout", e))?;
    Ok((commit, true))
}

/// Keeps the link on the ref's commit until shutdown (or once, with `--once`).
pub async fn run(args: GitSyncArgs, plan: Plan, ctx: Context) -> Result<(), ComponentError> {
    let metrics = SyncMetrics::register(
        &ctx,
        Names {
            prefix: "podkit_git_sync",
            installed: "published",
            installed_help: "New commits published",
            info: "commit_info",
            info_label: "commit",
            info_help: "The commit the link points at",
            stages: "fetch, checkout, notify",
        },
    );
    let client = plan.client.clone();
    tracing::info!(
        repo = %crate::http_fetch::redact_url(&args.repo),
        reference = %args.reference,
        link = %plan.worktrees.link_path().display(),
        "keeping the link on the ref's commit"
    );
    let mut published =
        (plan.worktrees.current().is_none()).then(|| ctx.readiness.latch("a first checkout"));
    ctx.started();
    let mut last_error: Option<String> = None;
    loop {
        match sync_once(&plan).await {
            Ok((commit, new)) => {
                last_error = None;
                metrics.current(&commit);
                if let Some(latch) = published.take() {
                    latch.release();
                }
                if new {
                    metrics.installed();
                    tracing::info!(%commit, "published");
                    let told = plan
                        .notifier
                        .notify_with(&client, &[("gitsync-hash", commit.clone())])
                        .await;
                    match told {
                        Ok(done) if !done.is_empty() => {
                            tracing::info!(%done, "told the application")
                        }
                        Ok(_) => {}
                        Err(e) => {
                            metrics.failed("notify");
                            tracing::warn!(error = %e, "telling the application failed");
                        }
                    }
                }
            }
            Err((stage, error)) => {
                metrics.failed(stage);
                if last_error.as_ref() != Some(&error) {
                    tracing::warn!(%stage, %error, "sync failed; the link is left as it is");
                    last_error = Some(error.clone());
                }
                if args.once {
                    return Err(ComponentError::runtime(format!("{stage}: {error}")));
                }
            }
        }
        if args.once {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(args.interval.get()) => {}
            _ = ctx.shutdown.triggered() => return Ok(()),
        }
    }
}
