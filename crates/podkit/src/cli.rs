//! The command tree. Names are part of podkit's API (DESIGN.md, "The catalog").

use clap::{Args, Parser, Subcommand};
use podkit_core::cli::FlagsFileArg;
use podkit_core::ContractArgs;

/// The catalog of the book's patterns, shown after `podkit --help`.
const CATALOG: &str = "\
Patterns of Designing Distributed Systems, by chapter:
  ch2  sidecar    topz, HTTPS, config, git sync  podkit sidecar topz|tls|config-sync|git-sync
  ch3  ambassador sharding, experiments, service broker    podkit ambassador shard|split|broker
  ch4  adapter    metrics, logs, health                    podkit adapter metrics|logs|health
  ch5  lb         replicated load-balanced services        podkit lb
  ch5  cache      caching layer, rate limiting             podkit cache
  ch6  shard      sharded services                         podkit shard
  all  proxy      the HTTP engine, configured by YAML      podkit proxy -c FILE
  ch7  scatter    scatter/gather                           (coming)
  ch8  fn         functions and event-driven processing    (coming)
  ch9  lock/elect ownership election, fencing (etcd)        podkit lock|elect NAME -- CMD
  ch9  store      an etcd-compatible store on one machine  podkit store serve --data DIR
  ch10 queue      work queues: manager, sources, workers    podkit queue run|status|retry, podkit source dir|file|filter|merge, podkit worker multi
  ch11 flow       event-driven batch processing            (coming)
  ch12 join/reduce coordinated batch processing            (coming)
  all  up         run a topology on one machine            podkit up FILE


Every component takes --admin (serving /healthz, /readyz, /metrics), --log-format,
--log-level and --drain-timeout; every flag has a PODKIT_* environment twin.";

/// podkit: the patterns of Designing Distributed Systems as reusable components.
#[derive(Parser, Debug)]
#[command(name = "podkit", version, after_help = CATALOG, propagate_version = true)]
pub enum Cli {
    /// Sidecars (ch2): add a capability to an application without its knowledge.
    #[command(subcommand)]
    Sidecar(SidecarCommand),
    /// Ambassadors (ch3): broker the application's traffic to the world.
    #[command(subcommand)]
    Ambassador(AmbassadorCommand),
    /// Adapters (ch4): present an application's monitoring and logs in a standard form.
    #[command(subcommand)]
    Adapter(AdapterCommand),
    /// Replicated load-balanced service (ch5): spread requests over ready replicas.
    Lb(Lb),
    /// Caching layer (ch5): an RFC 9111 shared cache with rate limiting, in front of a service.
    Cache(Cache),
    /// Sharded service (ch6): send each key to its shard on a consistent hash ring.
    Shard(Shard),
    /// The HTTP proxy engine in its general form, configured by a YAML file.
    Proxy(Proxy),
    /// Run a topology of pods, replicas and services on this machine.
    Up(Up),
    /// Ownership (ch9): run a command while holding a lock on etcd (like `etcdctl lock`).
    Lock(Lock),
    /// Master election (ch9): run a command only while this replica leads; stop it at
    /// once when leadership is lost.
    Elect(Elect),
    /// The embedded store (ch9): a durable, single-machine store speaking etcd's v3 API.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Work queues (ch10): run a worker for every item of a source, durably.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Work-queue sources (ch10): serve /api/v1/items from a directory or a file.
    #[command(subcommand)]
    Source(SourceCommand),
    /// Reusable work-queue workers (ch10).
    #[command(subcommand)]
    Worker(WorkerCommand),
}

/// `podkit lock`
#[derive(Args, Debug)]
#[command(
    after_help = "Its admin endpoint takes a free port unless --admin names one; it runs on one thread unless --threads says otherwise."
)]
pub struct Lock {
    #[command(flatten)]
    pub lock: podkit_owner::commands::LockArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
}

/// `podkit elect`
#[derive(Args, Debug)]
#[command(
    after_help = "The admin endpoint serves /leader: the leader's id and fencing token, and whether this replica leads."
)]
pub struct Elect {
    #[command(flatten)]
    pub elect: podkit_owner::commands::ElectArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
}

/// `podkit worker ...`
#[derive(Subcommand, Debug)]
pub enum WorkerCommand {
    /// Run several worker commands in order on the same WORK_ITEM_FILE (the multi-worker).
    Multi(WorkerMulti),
}

/// `podkit worker multi`
#[derive(Args, Debug)]
pub struct WorkerMulti {
    #[command(flatten)]
    pub multi: podkit_queue::multi::MultiArgs,
}

/// `podkit store ...`
#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Serve the store: etcd's v3 gRPC API (KV, Lease, Watch) from a durable database.
    ///
    /// A durable key-value store that speaks the subset of etcd's v3 gRPC API podkit uses
    /// (KV Range/Put/DeleteRange/Txn, Lease Grant/Revoke/KeepAlive/TimeToLive/Leases,
    /// Watch, Maintenance Status), so `podkit lock`, `podkit elect` and etcdctl work
    /// against it unchanged.
    ///
    /// It is ONE MACHINE's store, not a replicated one: it is as available as this
    /// machine, and a change is acknowledged once it is fsynced to --data. For a store
    /// that survives the loss of a machine, run an etcd cluster and point --store at it;
    /// nothing else changes.
    Serve(StoreServe),
}

/// `podkit store serve`
#[derive(Args, Debug)]
#[command(
    after_help = "Only the newest version of each key is kept: reads at a past revision and watches from one are served while the last --history revisions of events reach back to it, and refused as compacted beyond. Leases survive a restart and get their full TTL again, as etcd's do."
)]
pub struct StoreServe {
    #[command(flatten)]
    pub serve: podkit_owner::embedded::serve::ServeArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
}

/// `podkit queue ...`
#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// The manager: list the source, run the worker for each item not yet done, retry, record.
    Run(Box<QueueRun>),
    /// Counts, rate, processing times and ETA of a manager's queue.
    Status(QueueStatus),
    /// Try failed items again (all of them, or those named).
    Retry(QueueRetry),
    /// Started by `queue run`: stops the workers of a manager that died.
    #[command(hide = true)]
    Reaper,
}

/// `podkit queue run`
#[derive(Args, Debug)]
pub struct QueueRun {
    #[command(flatten)]
    pub run: podkit_queue::manager::RunArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
    #[command(flatten)]
    pub flags_file: FlagsFileArg,
}

/// `podkit queue status`
#[derive(Args, Debug)]
pub struct QueueStatus {
    #[command(flatten)]
    pub status: podkit_queue::status::StatusArgs,
}

/// `podkit queue retry`
#[derive(Args, Debug)]
pub struct QueueRetry {
    #[command(flatten)]
    pub retry: podkit_queue::status::RetryArgs,
}

/// `podkit source ...`
#[derive(Subcommand, Debug)]
pub enum SourceCommand {
    /// The files of a directory that match a pattern (the book's NFS source).
    Dir(SourceDir),
    /// A static list of items from a JSON-lines file.
    File(SourceFile),
    /// The items of another source whose data satisfy an expression (ch11's filter).
    Filter(SourceFilter),
    /// The items of several sources as one (ch11's merger).
    Merge(SourceMerge),
}

/// `podkit source filter`
#[derive(Args, Debug)]
pub struct SourceFilter {
    #[command(flatten)]
    pub filter: podkit_queue::wrap::FilterArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
    #[command(flatten)]
    pub flags_file: FlagsFileArg,
}

/// `podkit source merge`
#[derive(Args, Debug)]
pub struct SourceMerge {
    #[command(flatten)]
    pub merge: podkit_queue::wrap::MergeArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
    #[command(flatten)]
    pub flags_file: FlagsFileArg,
}

/// `podkit source dir`
#[derive(Args, Debug)]
pub struct SourceDir {
    #[command(flatten)]
    pub dir: podkit_queue::sources::DirArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
    #[command(flatten)]
    pub flags_file: FlagsFileArg,
}

/// `podkit source file`
#[derive(Args, Debug)]
pub struct SourceFile {
    #[command(flatten)]
    pub file: podkit_queue::sources::FileArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
    #[command(flatten)]
    pub flags_file: FlagsFileArg,
}

/// `podkit up`
#[derive(Args, Debug)]
pub struct Up {
    #[command(flatten)]
    pub up: podkit_up::UpArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
}

/// `podkit sidecar ...`
#[derive(Subcommand, Debug)]
pub enum SidecarCommand {
    /// Serve /topz: every process in this PID namespace with its CPU and memory use.
    Topz(Topz),
    /// Terminate HTTPS (h2 and http/1.1) in front of a legacy HTTP service on localhost.
    Tls(Tls),
    /// Keep an application's configuration file equal to an HTTP(S) URL, a file or an etcd
    /// key: validate, install atomically, keep old versions, signal or call the app.
    ConfigSync(ConfigSync),
    /// Keep a directory on a git branch, tag or commit, swapping checkouts atomically
    /// (the book's simple PaaS).
    GitSync(GitSync),
}

/// `podkit sidecar git-sync`
#[derive(Args, Debug)]
pub struct GitSync {
    #[command(flatten)]
    pub sync: podkit_node::git_sync::GitSyncArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
    #[command(flatten)]
    pub flags_file: FlagsFileArg,
}

/// `podkit sidecar config-sync`
#[derive(Args, Debug)]
pub struct ConfigSync {
    #[command(flatten)]
    pub sync: podkit_node::config_sync::ConfigSyncArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
    #[command(flatten)]
    pub flags_file: FlagsFileArg,
}

/// `podkit adapter ...`
#[derive(Subcommand, Debug)]
pub enum AdapterCommand {
    /// Serve Redis's statistics as Prometheus metrics named as redis_exporter names them,
    /// or any JSON stats endpoint through a mapping file.
    Metrics(AdapterMetrics),
    /// Answer HTTP health checks by running a query on MySQL, PostgreSQL or Redis.
    Health(AdapterHealth),
    /// Normalize logs of many formats (files followed like tail -F, stdin, Redis's slow
    /// log) into one JSON object per line on stdout.
    Logs(AdapterLogs),
}

/// `podkit adapter logs`
#[derive(Args, Debug)]
pub struct AdapterLogs {
    #[command(flatten)]
    pub logs: podkit_node::logs::LogsArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
    #[command(flatten)]
    pub flags_file: FlagsFileArg,
}

/// `podkit adapter health`
#[derive(Args, Debug)]
pub struct AdapterHealth {
    #[command(flatten)]
    pub health: podkit_node::health::HealthArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
    #[command(flatten)]
    pub flags_file: FlagsFileArg,
}

/// `podkit adapter metrics`
#[derive(Args, Debug)]
pub struct AdapterMetrics {
    #[command(flatten)]
    pub metrics: podkit_node::metrics_adapter::MetricsArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
    #[command(flatten)]
    pub flags_file: FlagsFileArg,
}

/// `podkit ambassador broker`
#[derive(Args, Debug)]
pub struct Broker {
    #[command(flatten)]
    pub broker: podkit_node::broker::BrokerArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
    #[command(flatten)]
    pub flags_file: FlagsFileArg,
}

/// `podkit ambassador ...`
#[derive(Subcommand, Debug)]
pub enum AmbassadorCommand {
    /// Service broker: forward TCP from localhost to this environment's endpoint for a
    /// service (mapping file, DNS SRV, env var), re-resolved as it changes.
    Broker(Broker),
    /// Split clients between sides by weight (a 10% experiment), optionally teeing requests.
    Split(Split),
    /// Shard Redis or memcache like twemproxy: its nutcracker.yaml, its flags, its key placement.
    Shard(KvShard),
}

/// `podkit ambassador shard`
#[derive(Args, Debug)]
pub struct KvShard {
    #[command(flatten)]
    pub shard: podkit_kv::ShardArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
}

/// `podkit lb`
#[derive(Args, Debug)]
pub struct Lb {
    #[command(flatten)]
    pub preset: podkit_proxy::presets::LbArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
}

/// `podkit cache`
#[derive(Args, Debug)]
pub struct Cache {
    #[command(flatten)]
    pub preset: podkit_proxy::presets::CacheArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
}

/// `podkit shard`
#[derive(Args, Debug)]
pub struct Shard {
    #[command(flatten)]
    pub preset: podkit_proxy::presets::ShardArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
}

/// `podkit proxy`
#[derive(Args, Debug)]
pub struct Proxy {
    #[command(flatten)]
    pub proxy: podkit_proxy::presets::ProxyArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
}

/// `podkit sidecar tls`
#[derive(Args, Debug)]
pub struct Tls {
    #[command(flatten)]
    pub preset: podkit_proxy::presets::TlsArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
}

/// `podkit ambassador split`
#[derive(Args, Debug)]
pub struct Split {
    #[command(flatten)]
    pub preset: podkit_proxy::presets::SplitArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
}

/// `podkit sidecar topz`
#[derive(Args, Debug)]
pub struct Topz {
    #[command(flatten)]
    pub topz: podkit_node::topz::TopzArgs,
    #[command(flatten)]
    pub contract: ContractArgs,
    #[command(flatten)]
    pub flags_file: FlagsFileArg,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn leaves(command: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        if command.get_subcommands().next().is_none() {
            out.push((path.clone(), command.clone()));
        }
        for sub in command.get_subcommands() {
            leaves(sub, format!("{path} {}", sub.get_name()), out);
        }
    }

    /// Chapter 2: a container's parameters are its API. Every flag of every component has
    /// an environment twin named PODKIT_*, and help that shows it.
    #[test]
    fn every_flag_has_an_env_twin_and_help() {
        let mut all = Vec::new();
        leaves(&Cli::command(), "podkit".into(), &mut all);
        assert!(!all.is_empty());
        for (path, command) in all {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_positional() {
                    continue;
                }
                let env = arg
                    .get_env()
                    .unwrap_or_else(|| panic!("{path} --{id} has no env twin"));
                assert!(
                    env.to_string_lossy().starts_with("PODKIT_"),
                    "{path} --{id}: env twin {env:?} should start with PODKIT_"
                );
                assert!(arg.get_help().is_some(), "{path} --{id} has no help");
            }
        }
    }

    #[test]
    fn command_tree_is_valid() {
        Cli::command().debug_assert();
    }
}
