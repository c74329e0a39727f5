//! `INFO` (and the other replies a scrape collects) as Prometheus metrics **named as
//! redis_exporter names them**, so that dashboards and alerts written for it keep working:
//! `redis_up`, `redis_connected_clients`, `redis_memory_used_bytes`,
//! `redis_commands_processed_total`, `redis_keyspace_hits_total`, `redis_db_keys{db="db0"}`,
//! `redis_commands_total{cmd="get"}`, `redis_instance_info{role=...}` and so on. Pure.

use super::info::Info;
use crate::exposition::{Exposition, Kind, Labels};

/// INFO fields exported as gauges: (field, metric, help, scale).
const GAUGES: &[(&str, &str, &str, f64)] = &[
    (
        "uptime_in_seconds",
        "redis_uptime_in_seconds",
        "Seconds since the server started",
        1.0,
    ),
    (
        "process_id",
        "redis_process_id",
        "The server's process id",
        1.0,
    ),
    (
        "connected_clients",
        "redis_connected_clients",
        "Client connections",
        1.0,
    ),
    (
        "blocked_clients",
        "redis_blocked_clients",
        "Clients blocked in a blocking call",
        1.0,
    ),
    (
        "maxclients",
        "redis_max_clients",
        "The most clients the server accepts",
        1.0,
    ),
    (
        "used_memory",
        "redis_memory_used_bytes",
        "Memory allocated by Redis",
        1.0,
    ),
    (
        "used_memory_rss",
        "redis_memory_used_rss_bytes",
        "Resident memory of the server",
        1.0,
    ),
    (
        "used_memory_peak",
        "redis_memory_used_peak_bytes",
        "Peak memory allocated by Redis",
        1.0,
    ),
    (
        "maxmemory",
        "redis_memory_max_bytes",
        "The maxmemory setting (0: no limit)",
        1.0,
    ),
    (
        "mem_fragmentation_ratio",
        "redis_mem_fragmentation_ratio",
        "Resident over allocated memory",
        1.0,
    ),
    (
        "connected_slaves",
        "redis_connected_slaves",
        "Connected replicas",
        1.0,
    ),
    (
        "master_repl_offset",
        "redis_master_repl_offset",
        "Replication offset",
        1.0,
    ),
    (
        "rdb_changes_since_last_save",
        "redis_rdb_changes_since_last_save",
        "Changes since the last RDB save",
        1.0,
    ),
    (
        "rdb_last_save_time",
        "redis_rdb_last_save_timestamp_seconds",
        "Time of the last RDB save",
        1.0,
    ),
    (
        "rdb_bgsave_in_progress",
        "redis_rdb_bgsave_in_progress",
        "1 while an RDB save runs",
        1.0,
    ),
    (
        "rdb_last_bgsave_status",
        "redis_rdb_last_bgsave_status",
        "1 if the last RDB save succeeded",
        1.0,
    ),
    (
        "loading",
        "redis_loading_dump_file",
        "1 while a dump file loads",
        1.0,
    ),
    (
        "aof_enabled",
        "redis_aof_enabled",
        "1 if the append-only file is on",
        1.0,
    ),
    (
        "repl_backlog_size",
        "redis_replication_backlog_bytes",
        "Replication backlog size",
        1.0,
    ),
    (
        "repl_backlog_active",
        "redis_repl_backlog_is_active",
        "1 if the replication backlog is active",
        1.0,
    ),
    (
        "latest_fork_usec",
        "redis_latest_fork_seconds",
        "Duration of the latest fork",
        1e-6,
    ),
    ("hz", "redis_hz", "The server's timer frequency", 1.0),
    (
        "configured_hz",
        "redis_configured_hz",
        "The configured timer frequency",
        1.0,
    ),
];

/// INFO fields exported as counters: (field, metric, help, scale).
const COUNTERS: &[(&str, &str, &str, f64)] = &[
    (
        "total_connections_received",
        "redis_connections_received_total",
        "Connections accepted",
        1.0,
    ),
    (
        "total_commands_processed",
        "redis_commands_processed_total",
        "Commands processed",
        1.0,
    ),
    (
        "rejected_connections",
        "redis_rejected_connections_total",
        "Connections rejected for maxclients",
        1.0,
    ),
    (
        "expired_keys",
        "redis_expired_keys_total",
        "Keys expired",
        1.0,
    ),
    (
        "evicted_keys",
        "redis_evicted_keys_total",
        "Keys evicted for maxmemory",
        1.0,
    ),
    (
        "keyspace_hits",
        "redis_keyspace_hits_total",
        "Successful key lookups",
        1.0,
    ),
    (
        "keyspace_misses",
        "redis_keyspace_misses_total",
        "Failed key lookups",
        1.0,
    ),
    (
        "total_net_input_bytes",
        "redis_net_input_bytes_total",
        "Bytes received",
        1.0,
    ),
    (
        "total_net_output_bytes",
        "redis_net_output_bytes_total",
        "Bytes sent",
        1.0,
    ),
    (
        "used_cpu_sys",
        "redis_cpu_sys_seconds_total",
        "System CPU time of the server",
        1.0,
    ),
    (
        "used_cpu_user",
        "redis_cpu_user_seconds_total",
        "User CPU time of the server",
        1.0,
    ),
    (
        "used_cpu_sys_children",
        "redis_cpu_sys_children_seconds_total",
        "System CPU time of its children",
        1.0,
    ),
    (
        "used_cpu_user_children",
        "redis_cpu_user_children_seconds_total",
        "User CPU time of its children",
        1.0,
    ),
];

/// `instance_info` labels, in redis_exporter's order.
const INSTANCE_LABELS: &[&str] = &[
    "role",
    "redis_version",
    "redis_build_id",
    "redis_mode",
    "os",
    "maxmemory_policy",
    "tcp_port",
    "run_id",
    "process_id",
    "master_replid",
];

/// What one scrape collected.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub info: Info,
    /// `SLOWLOG LEN`.
    pub slowlog_length: Option<f64>,
    /// `CONFIG GET databases`, `maxclients`, `maxmemory`, when CONFIG is allowed.
    pub databases: Option<u32>,
    pub config_maxclients: Option<f64>,
    pub config_maxmemory: Option<f64>,
}

/// A field as redis_exporter reads it: a number, or `ok`/`true` as 1 and
/// `err`/`fail`/`false` as 0.
fn value(info: &Info, field: &str) -> Option<f64> {
    let raw = info.fields.get(field)?;
    match raw.as_str() {
        "ok" | "true" => Some(1.0),
        "err" | "fail" | "false" => Some(0.0),
        other => other.parse().ok(),
    }
}

/// Renders a successful scrape; `now` (Unix seconds) gives `redis_start_time_seconds`.
pub fn render_scrape(scrape: &Scrape, now: f64, out: &mut Exposition) {
    let info = &scrape.info;
    out.one(
        "redis_up",
        Kind::Gauge,
        "1 if the last scrape reached Redis",
        1.0,
    );
    let instance: Labels = INSTANCE_LABELS
        .iter()
        .map(|&label| (label, info.fields.get(label).cloned().unwrap_or_default()))
        .collect();
    out.family(
        "redis_instance_info",
        Kind::Gauge,
        "Information about the Redis instance",
        &[(instance, 1.0)],
    );
    for (kind, table) in [(Kind::Gauge, GAUGES), (Kind::Counter, COUNTERS)] {
        for &(field, metric, help, scale) in table {
            if let Some(v) = value(info, field) {
                out.one(metric, kind, help, v * scale);
            }
        }
    }
    if let Some(uptime) = value(info, "uptime_in_seconds") {
        out.one(
            "redis_start_time_seconds",
            Kind::Gauge,
            "Start time of the server (Unix seconds)",
            now - uptime,
        );
    }
    keyspace(scrape, out);
    commands(info, out);
    if let Some(len) = scrape.slowlog_length {
        out.one(
            "redis_slowlog_length",
            Kind::Gauge,
            "Entries in the slow log",
            len,
        );
    }
    if let Some(v) = scrape.config_maxclients {
        out.one(
            "redis_config_maxclients",
            Kind::Gauge,
            "The maxclients setting",
            v,
        );
    }
    if let Some(v) = scrape.config_maxmemory {
        out.one(
            "redis_config_maxmemory",
            Kind::Gauge,
            "The maxmemory setting",
            v,
        );
    }
}

fn keyspace(scrape: &Scrape, out: &mut Exposition) {
    let info = &scrape.info;
    let mut keys = Vec::new();
    let mut expiring = Vec::new();
    let mut ttl = Vec::new();
    // Every database is listed, empty ones as 0, as redis_exporter does by default.
    let count = scrape.databases.unwrap_or(16);
    let mut names: Vec<String> = (0..count).map(|i| format!("db{i}")).collect();
    for name in info.keyspace.keys() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    for name in names {
        let db = info.keyspace.get(&name).copied().unwrap_or_default();
        keys.push((vec![("db", name.clone())], db.keys));
        expiring.push((vec![("db", name.clone())], db.expires));
        if info.keyspace.contains_key(&name) {
            ttl.push((vec![("db", name)], db.avg_ttl_ms / 1000.0));
        }
    }
    out.family("redis_db_keys", Kind::Gauge, "Keys per database", &keys);
    out.family(
        "redis_db_keys_expiring",
        Kind::Gauge,
        "Keys with a TTL per database",
        &expiring,
    );
    out.family(
        "redis_db_avg_ttl_seconds",
        Kind::Gauge,
        "Average TTL per database",
        &ttl,
    );
}

fn commands(info: &Info, out: &mut Exposition) {
    let label = |cmd: &String| -> Labels { vec![("cmd", cmd.clone())] };
    let calls: Vec<(Labels, f64)> = info
        .commands
        .iter()
        .map(|(c, s)| (label(c), s.calls))
        .collect();
    let seconds: Vec<(Labels, f64)> = info
        .commands
        .iter()
        .map(|(c, s)| (label(c), s.usec / 1e6))
        .collect();
    let rejected: Vec<(Labels, f64)> = info
        .commands
        .iter()
        .filter_map(|(c, s)| Some((label(c), s.rejected_calls?)))
        .collect();
    let failed: Vec<(Labels, f64)> = info
        .commands
        .iter()
        .filter_map(|(c, s)| Some((label(c), s.failed_calls?)))
        .collect();
    out.family(
        "redis_commands_total",
        Kind::Counter,
        "Calls per command",
        &calls,
    );
    out.family(
        "redis_commands_duration_seconds_total",
        Kind::Counter,
        "Time spent per command",
        &seconds,
    );
    out.family(
        "redis_commands_rejected_calls_total",
        Kind::Counter,
        "Rejected calls per command",
        &rejected,
    );
    out.family(
        "redis_commands_failed_calls_total",
        Kind::Counter,
        "Failed calls per command",
        &failed,
    );
}

/// The adapter's own metrics, after a scrape that took `seconds` and ended in `error`
/// (then `redis_up` is 0).
pub fn render_exporter(error: Option<&str>, seconds: f64, scrapes: u64, out: &mut Exposition) {
    if let Some(err) = error {
        out.one(
            "redis_up",
            Kind::Gauge,
            "1 if the last scrape reached Redis",
            0.0,
        );
        out.family(
            "redis_exporter_last_scrape_error",
            Kind::Gauge,
            "1 if the last scrape failed, with the error",
            &[(vec![("err", err.to_string())], 1.0)],
        );
    } else {
        out.family(
            "redis_exporter_last_scrape_error",
            Kind::Gauge,
            "1 if the last scrape failed, with the error",
            &[(vec![("err", String::new())], 0.0)],
        );
    }
    out.one(
        "redis_exporter_last_scrape_duration_seconds",
        Kind::Gauge,
        "Duration of the last scrape",
        seconds,
    );
    out.one(
        "redis_exporter_scrapes_total",
        Kind::Counter,
        "Scrapes of Redis",
        scrapes as f64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_redis_exporter() {
        let info = Info::parse(
            "# Server\r\nredis_version:7.0.15\r\nrole:master\r\nuptime_in_seconds:100\r\n\
             # Memory\r\nused_memory:2048\r\n# Persistence\r\nrdb_last_bgsave_status:ok\r\n\
             latest_fork_usec:1500\r\n# Stats\r\nkeyspace_hits:7\r\n\
             # Commandstats\r\ncmdstat_get:calls=5,usec=250,usec_per_call=50.00,rejected_calls=0,failed_calls=1\r\n\
             # Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=3000\r\n",
        );
        let scrape = Scrape {
            info,
            slowlog_length: Some(0.0),
            databases: Some(2),
            ..Scrape::default()
        };
        let mut out = Exposition::default();
        render_scrape(&scrape, 1000.0, &mut out);
        let text = out.finish();
        for line in [
            "redis_up 1",
            "redis_memory_used_bytes 2048",
            "redis_rdb_last_bgsave_status 1",
            "redis_latest_fork_seconds 0.0015",
            "redis_keyspace_hits_total 7",
            "redis_start_time_seconds 900",
            "redis_db_keys{db=\"db0\"} 10",
            "redis_db_keys{db=\"db1\"} 0",
            "redis_db_keys_expiring{db=\"db0\"} 2",
            "redis_db_avg_ttl_seconds{db=\"db0\"} 3",
            "redis_commands_total{cmd=\"get\"} 5",
            "redis_commands_duration_seconds_total{cmd=\"get\"} 0.00025",
            "redis_commands_failed_calls_total{cmd=\"get\"} 1",
            "redis_slowlog_length 0",
            "# TYPE redis_keyspace_hits_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.contains("redis_instance_info{role=\"master\",redis_version=\"7.0.15\","));
        assert!(!text.contains("redis_db_avg_ttl_seconds{db=\"db1\"}"));
    }
}
