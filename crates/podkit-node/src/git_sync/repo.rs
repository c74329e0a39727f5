//! The git side of git-sync, with gix: a bare cache repository that fetches one ref
//! (shallow when asked), and checkouts of a commit's tree into fresh directories.
//! Blocking: callers run it on a blocking thread.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// The local ref the fetched commit is stored under in the cache.
const TARGET_REF: &str = "refs/podkit-git-sync/target";

/// User name and password for an HTTP(S) remote; never printed.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    /// Reads `user:password` (or `user` and `password` on two lines) from `file`.
    pub fn from_file(file: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let text = text.trim_end_matches(['\n', '\r']);
        let (username, password) = text
            .split_once(':')
            .or_else(|| text.split_once('\n'))
            .ok_or_else(|| format!("{}: expected user:password", file.display()))?;
        Ok(Credentials {
            username: username.trim().to_string(),
            password: password.trim_end_matches('\r').to_string(),
        })
    }
}

/// What to fetch and from where.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    /// A branch, tag, `HEAD` or a full commit id.
    pub reference: String,
    /// Commits of history to fetch; `None` for all.
    pub depth: Option<NonZeroU32>,
    pub credentials: Option<Credentials>,
    /// Longest a fetch may take.
    pub timeout: std::time::Duration,
}

/// Packs in the cache above which it is made afresh (gix does not repack; with shallow
/// fetches a new cache is cheap).
const MAX_PACKS: usize = 64;

/// The bare cache repository.
pub struct Cache {
    dir: PathBuf,
    ca_file: Option<PathBuf>,
    /// The TLS configuration, read from `ca_file` (or the system roots) once.
    tls: std::sync::OnceLock<rustls::ClientConfig>,
}

impl Cache {
    /// The cache in `dir`, created when missing; HTTPS trusts `ca_file` when given.
    pub fn new(dir: PathBuf, ca_file: Option<PathBuf>) -> Cache {
        Cache {
            dir,
            ca_file,
            tls: std::sync::OnceLock::new(),
        }
    }

    /// The TLS configuration for HTTPS fetches, built on first use.
    fn tls(&self) -> Result<rustls::ClientConfig, String> {
        if let Some(tls) = self.tls.get() {
            return Ok(tls.clone());
        }
        let tls = crate::http_fetch::tls_config(self.ca_file.as_deref())?;
        Ok(self.tls.get_or_init(|| tls).clone())
    }

    fn open_options(&self) -> gix::open::Options {
        // Isolated: no user or system git config, no GIT_* variables; never prompt.
        let mut options = gix::open::Options::isolated();
        options.permissions.env.http_transport = gix::sec::Permission::Allow;
        options.config_overrides(["gitoxide.credentials.terminalPrompt=false"])
    }

    fn repository(&self) -> Result<gix::Repository, String> {
        if !self.dir.join("HEAD").exists() {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| format!("{}: {e}", self.dir.display()))?;
            gix::ThreadSafeRepository::init_opts(
                &self.dir,
                gix::create::Kind::Bare,
                gix::create::Options::default(),
                self.open_options(),
            )
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        }
        gix::open_opts(&self.dir, self.open_options())
            .map_err(|e| format!("opening {}: {e}", self.dir.display()))
    }

    /// Fetches the remote's ref and returns the commit it points at (hex). `interrupt`
    /// stops a pack being received.
    pub fn fetch(&self, remote: &Remote, interrupt: &AtomicBool) -> Result<String, String> {
        self.renew_if_bloated();
        let repo = self.repository()?;
        let refspec = format!("+{}:{TARGET_REF}", remote.reference);
        let fetcher = repo
            .remote_at(remote.url.as_str())
            .map_err(|e| format!("remote: {e}"))?
            .with_refspecs([refspec.as_str()], gix::remote::Direction::Fetch)
            .map_err(|e| format!("ref '{}': {e}", remote.reference))?
            .with_fetch_tags(gix::remote::fetch::Tags::None);
        let mut connection = fetcher
            .connect(gix::remote::Direction::Fetch)
            .map_err(|e| format!("connecting: {}", chain(&e)))?;
        if remote.url.starts_with("https://") {
            // TLS by rustls, trusting --ca-file or the system's roots.
            use gix::protocol::transport::client::blocking_io::http::{reqwest, Options};
            let tls = self.tls()?;
            let backend = reqwest::Options {
                configure_client: Some(Box::new(move |builder| {
                    Ok(builder.tls_backend_preconfigured(tls.clone()))
                })),
                configure_request: None,
            };
            let mut options = repo
                .transport_options(remote.url.as_str(), None)
                .ok()
                .flatten()
                .and_then(|o| o.downcast::<Options>().ok())
                .map(|o| *o)
                .unwrap_or_default();
            options.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(backend)));
            connection.set_transport_options(Box::new(options));
        }
        if let Some(credentials) = remote.credentials.clone() {
            connection.set_credentials(move |action| match action {
                gix::credentials::helper::Action::Get(context) => {
                    Ok(Some(gix::credentials::protocol::Outcome {
                        identity: gix::sec::identity::Account {
                            username: credentials.username.clone(),
                            password: credentials.password.clone(),
                            oauth_refresh_token: None,
                        },
                        next: context.into(),
                    }))
                }
                _ => Ok(None),
            });
        }
        let mut prepare = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| format!("listing refs: {}", chain(&e)))?;
        if let Some(depth) = remote.depth {
            prepare = prepare.with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(depth));
        }
        prepare
            .receive(gix::progress::Discard, interrupt)
            .map_err(|e| format!("fetching: {}", chain(&e)))?;
        let repo = self.repository()?;
        let commit = repo
            .find_reference(TARGET_REF)
            .map_err(|e| format!("ref '{}' was not fetched: {e}", remote.reference))?
            .peel_to_commit()
            .map_err(|e| format!("'{}' is not a commit: {e}", remote.reference))?;
        Ok(commit.id.to_string())
    }

    /// Removes the cache when it holds too many packs; the next fetch makes it again.
    fn renew_if_bloated(&self) {
        let packs = std::fs::read_dir(self.dir.join("objects/pack"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                    .count()
            })
            .unwrap_or(0);
        if packs > MAX_PACKS {
            tracing::info!(packs, "making the git cache afresh");
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Writes the tree of `commit` into `dest`, which must not exist yet.
    pub fn checkout(&self, commit: &str, dest: &Path) -> Result<(), String> {
        let repo = self.repository()?;
        let id =
            gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| format!("{commit}: {e}"))?;
        let tree = repo
            .find_commit(id)
            .map_err(|e| format!("{commit}: {e}"))?
            .tree_id()
            .map_err(|e| format!("{commit}: {e}"))?
            .detach();
        let mut index = repo
            .index_from_tree(&tree)
            .map_err(|e| format!("{commit}: {e}"))?;
        let mut options = repo
            .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)
            .map_err(|e| format!("checkout options: {e}"))?;
        options.destination_is_initially_empty = true;
        std::fs::create_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        let objects = repo
            .objects
            .clone()
            .into_arc()
            .map_err(|e| format!("objects: {e}"))?;
        let outcome = gix::worktree::state::checkout(
            &mut index,
            dest,
            objects,
            &gix::progress::Discard,
            &gix::progress::Discard,
            &AtomicBool::new(false),
            options,
        )
        .map_err(|e| format!("checkout of {commit}: {e}"))?;
        if let Some(error) = outcome.errors.first() {
            return Err(format!(
                "checkout of {commit}: {}: {}",
                error.path, error.error
            ));
        }
        Ok(())
    }
}

/// An error with its causes, one after the other (gix's `Display` shows only the first).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
