//! `podkit adapter logs`: chapter 4's logging adapter (the book's fluentd). Applications
//! write logs in their own formats; this adapter reads them — files followed as `tail -F`
//! does, stdin, Redis's slow log — and writes one normalized JSON object per record on
//! stdout (`ts` in RFC 3339 UTC, `level`, `msg`, `source`, `format` and parsed fields).
//! Lines that parse as nothing are passed through as `format: unparsed`, never dropped.
//!
//! With `--pos-file` (fluentd's `pos_file` layout) a restart resumes after the last
//! record written: nothing is lost, and nothing written is emitted again after a clean stop.
//! The adapter's own log lines go to stderr.

pub mod parse;
pub mod positions;
pub mod slowlog;
pub mod tail;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podkit_core::component::{ComponentError, Context};
use podkit_core::shutdown::Shutdown;
use podkit_core::{ConfigError, HumanDuration};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::redis_client::{Connection, RedisUrl};
use parse::{Context as ParseContext, Format, Parser, Record};
use positions::{Position, Positions};
use tail::{Event, Line, Start, Tailer};

/// A multi-line record (a Java stack trace) is emitted after this long without a line
/// that continues it.
const MULTILINE_FLUSH: Duration = Duration::from_secs(1);

/// Positions are written at most this often while running (and always at the end).
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// The flags of `podkit adapter logs`.
#[derive(clap::Args, Debug, Clone)]
pub struct LogsArgs {
    /// A file to follow (repeatable), optionally with its format:
    /// `combined:/var/log/nginx/access.log`. Without one, `--format` applies.
    #[arg(
        long = "file",
        env = "PODKIT_FILES",
        value_delimiter = ',',
        value_name = "[FORMAT:]PATH"
    )]
    pub files: Vec<String>,
    /// Read standard input too (the adapter exits at its end if it is the only source).
    #[arg(long, env = "PODKIT_STDIN")]
    pub stdin: bool,
    /// Poll this Redis's `SLOWLOG GET` and emit each entry once (`redis://host:port`).
    #[arg(
        long,
        env = "PODKIT_REDIS_SLOWLOG",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_slowlog: Option<String>,
    /// Format of sources that do not name one: auto (detect per line), json, logfmt, klog,
    /// syslog3164, syslog5424, common, combined, jul, log4j, redis.
    #[arg(long, env = "PODKIT_FORMAT", default_value = "auto", value_name = "FORMAT", value_parser = parse_format)]
    pub format: Format,
    /// Read files from their start rather than from their end (as `tail` does) when there
    /// is no saved position; also emit the slow log's existing entries.
    #[arg(long, env = "PODKIT_FROM_START")]
    pub from_start: bool,
    /// The zone of timestamps that carry none (Redis, RFC 3164 syslog, klog, log4j, JUL),
    /// as an offset from UTC: `+02:00`, `-05:00`, or `Z`.
    #[arg(long, env = "PODKIT_UTC_OFFSET", default_value = "Z", value_name = "OFFSET", value_parser = parse_offset)]
    pub utc_offset: i32,
    /// Read what is there, emit it, and exit (for normalizing files in a batch job).
    #[arg(long, env = "PODKIT_ONCE")]
    pub once: bool,
    /// Where each source was read up to, so that a restart resumes there (fluentd's
    /// `pos_file` layout).
    #[arg(long, alias = "pos_file", env = "PODKIT_POS_FILE", value_name = "FILE")]
    pub pos_file: Option<PathBuf>,
    /// How often files are checked for new lines, rotation and truncation.
    #[arg(
        long,
        env = "PODKIT_POLL_INTERVAL",
        default_value = "250ms",
        value_name = "DURATION"
    )]
    pub poll_interval: HumanDuration,
    /// How often the slow log is read.
    #[arg(
        long,
        env = "PODKIT_SLOWLOG_INTERVAL",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub slowlog_interval: HumanDuration,
    /// Entries asked for per `SLOWLOG GET`.
    #[arg(
        long,
        env = "PODKIT_SLOWLOG_COUNT",
        default_value_t = 128,
        value_name = "N"
    )]
    pub slowlog_count: u32,
}

/// `Z`, `+HH:MM` or `-HH:MM` as seconds east of UTC.
fn parse_offset(text: &str) -> Result<i32, String> {
    if text.eq_ignore_ascii_case("z") || text == "UTC" {
        return Ok(0);
    }
    let bad = || format!("'{text}' is not Z, +HH:MM or -HH:MM");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

fn parse_format(text: &str) -> Result<Format, String> {
    text.parse::<Format>().map_err(|e| e.to_string())
}

/// One source and how its lines are parsed.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    File { path: PathBuf, format: Format },
    Stdin { format: Format },
    Slowlog(RedisUrl),
}

impl SourceSpec {
    /// The `source` field of its records, and its key in the position file.
    pub fn name(&self) -> String {
        match self {
            SourceSpec::File { path, .. } => path.display().to_string(),
            SourceSpec::Stdin { .. } => "stdin".into(),
            SourceSpec::Slowlog(url) => format!("redis-slowlog:{}", url.address()),
        }
    }
}

impl LogsArgs {
    /// The sources, checked; the error names the flag.
    pub fn sources(&self) -> Result<Vec<SourceSpec>, ConfigError> {
        let mut sources = Vec::new();
        for spec in &self.files {
            let (format, path) = match spec.split_once(':') {
                Some((name, path)) if name.parse::<Format>().is_ok() => {
                    (name.parse::<Format>().unwrap_or(Format::Auto), path)
                }
                _ => (self.format, spec.as_str()),
            };
            if path.is_empty() {
                return Err(ConfigError::flag("--file", format!("'{spec}': no path")));
            }
            sources.push(SourceSpec::File {
                path: PathBuf::from(path),
                format,
            });
        }
        if self.stdin {
            sources.push(SourceSpec::Stdin {
                format: self.format,
            });
        }
        if let Some(url) = &self.redis_slowlog {
            let url = RedisUrl::parse(url)
                .map_err(|e| ConfigError::flag("--redis-slowlog", format!("'{url}': {e}")))?;
            sources.push(SourceSpec::Slowlog(url));
        }
        if sources.is_empty() {
            return Err(ConfigError::flag(
                "--file",
                "no source: give --file PATH, --stdin or --redis-slowlog URL",
            ));
        }
        Ok(sources)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    source: String,
    format: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    source: String,
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

/// The adapter's metrics.
#[derive(Clone, Default)]
struct LogMetrics {
    records: Family<RecordLabels, Counter>,
    events: Family<EventLabels, Counter>,
    errors: Family<SourceLabels, Counter>,
}

impl LogMetrics {
    fn register(ctx: &Context) -> Self {
        let m = LogMetrics::default();
        ctx.metrics.register(
            "podkit_logs_records",
            "Records written, by source and the format they parsed as (unparsed: passed through)",
            m.records.clone(),
        );
        ctx.metrics.register(
            "podkit_logs_file_events",
            "Files opened, rotated and truncated",
            m.events.clone(),
        );
        ctx.metrics.register(
            "podkit_logs_source_errors",
            "Errors reading a source",
            m.errors.clone(),
        );
        m
    }

    fn error(&self, source: &str) {
        self.errors
            .get_or_create(&SourceLabels {
                source: source.into(),
            })
            .inc();
    }
}

/// Records to write, and the position to save once they are written.
struct Batch {
    lines: Vec<String>,
    commit: Option<(String, Position)>,
}

/// What every source task shares.
#[derive(Clone)]
struct Shared {
    tx: mpsc::Sender<Batch>,
    metrics: LogMetrics,
    shutdown: Shutdown,
    once: bool,
    poll: Duration,
    /// Seconds east of UTC of timestamps without a zone.
    utc_offset: i32,
    /// Whether positions are saved: a record still held at a stop is then left for the
    /// next run to read whole, rather than emitted cut short.
    resumes: bool,
}

impl Shared {
    /// Serializes `records` from `source` and sends them with `commit`.
    async fn send(&self, source: &str, records: Vec<Record>, commit: Option<Position>) -> bool {
        if records.is_empty() && commit.is_none() {
            return true;
        }
        let lines = records
            .iter()
            .map(|r| {
                self.metrics
                    .records
                    .get_or_create(&RecordLabels {
                        source: source.into(),
                        format: r.format.name().into(),
                    })
                    .inc();
                r.to_json(source).to_string()
            })
            .collect();
        let batch = Batch {
            lines,
            commit: commit.map(|p| (source.to_string(), p)),
        };
        self.tx.send(batch).await.is_ok()
    }

    /// Waits one poll interval, or until shutdown.
    async fn pause(&self) {
        tokio::select! {
            _ = tokio::time::sleep(self.poll) => {}
            _ = self.shutdown.triggered() => {}
        }
    }
}

impl Shared {
    /// What the parser needs to place zone-less and year-less timestamps.
    fn parse_context(&self) -> ParseContext {
        ParseContext {
            now_unix: unix_now(),
            utc_offset_seconds: self.utc_offset,
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Follows one file until shutdown (or its end, with `--once`).
async fn follow_file(shared: Shared, mut tailer: Tailer, source: String, format: Format) {
    let mut parser = Parser::new(format, shared.parse_context());
    // Where the record the parser holds began: the position saved while it is held.
    let mut held_from: Option<(u64, u64)> = None;
    let mut last_line = Instant::now();
    loop {
        let mut events = Vec::new();
        let read = tailer.read(&mut events);
        for event in &events {
            let name = match event {
                Event::Opened => "opened",
                Event::Rotated => "rotated",
                Event::Truncated => "truncated",
            };
            tracing::info!(file = %source, event = name, "following");
            shared
                .metrics
                .events
                .get_or_create(&EventLabels {
                    source: source.clone(),
                    event: name.into(),
                })
                .inc();
        }
        let mut lines = match read {
            Ok(lines) => lines,
            Err(e) => {
                tracing::warn!(file = %source, error = %e, "reading failed");
                shared.metrics.error(&source);
                Vec::new()
            }
        };
        let finishing = (shared.once && !tailer.has_more()) || shared.shutdown.is_triggered();
        if shared.once && !tailer.has_more() {
            lines.extend(tailer.take_partial());
        }
        parser.set_now(unix_now());
        let mut records = Vec::new();
        if !lines.is_empty() {
            last_line = Instant::now();
        }
        for line in &lines {
            records.extend(feed(&mut parser, line, &mut held_from));
        }
        let stopping_to_resume = shared.resumes && !shared.once && finishing;
        let flush_now = if finishing {
            !stopping_to_resume
        } else {
            last_line.elapsed() >= MULTILINE_FLUSH
        };
        if parser.holding() && flush_now {
            records.extend(parser.flush());
            held_from = None;
        }
        let commit = commit_position(&tailer, held_from);
        if !shared.send(&source, records, commit).await || finishing {
            return;
        }
        // A backlog is read on at once; after a stop, one more read emits what was
        // written before it.
        if !tailer.has_more() {
            shared.pause().await;
        }
    }
}

/// Feeds `line`, tracking where a held record began.
fn feed(parser: &mut Parser, line: &Line, held_from: &mut Option<(u64, u64)>) -> Vec<Record> {
    let records = parser.feed(&line.text);
    if !parser.holding() {
        *held_from = None;
    } else if !records.is_empty() || held_from.is_none() {
        // This line began the record now held.
        *held_from = Some((line.inode, line.start));
    }
    records
}

/// The position to save: before a held record, else after the last complete line.
fn commit_position(tailer: &Tailer, held_from: Option<(u64, u64)>) -> Option<Position> {
    let (inode, offset) = held_from.or_else(|| tailer.position())?;
    Some(Position { offset, inode })
}

/// Reads stdin to its end. Bytes that are not UTF-8 are replaced, not fatal; a line
/// longer than [`tail::MAX_LINE`] is cut into pieces.
async fn read_stdin(shared: Shared, format: Format) {
    use tokio::io::AsyncBufReadExt;
    let mut input = tokio::io::BufReader::with_capacity(64 << 10, tokio::io::stdin());
    let mut parser = Parser::new(format, shared.parse_context());
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::select! {
            read = read_line(&mut input, &mut line) => read,
            _ = shared.shutdown.triggered() => Ok(0),
        };
        match read {
            Ok(0) => break,
            Ok(_) => {
                parser.set_now(unix_now());
                let text = String::from_utf8_lossy(&line);
                let records = parser.feed(text.trim_end_matches('\n'));
                if !shared.send("stdin", records, None).await {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading stdin failed");
                shared.metrics.error("stdin");
                break;
            }
        }
    }
    let rest: Vec<Record> = parser.flush().into_iter().collect();
    shared.send("stdin", rest, None).await;

    /// One line (with its newline), or [`tail::MAX_LINE`] bytes of it.
    async fn read_line(
        input: &mut (impl AsyncBufReadExt + Unpin),
        line: &mut Vec<u8>,
    ) -> std::io::Result<usize> {
        loop {
            let buf = input.fill_buf().await?;
            if buf.is_empty() {
                return Ok(line.len());
            }
            let room = tail::MAX_LINE.saturating_sub(line.len()).max(1);
            let take = buf.iter().take(room).position(|&b| b == b'\n');
            let (used, done) = match take {
                Some(at) => (at + 1, true),
                None => (
                    buf.len().min(room),
                    line.len() + buf.len().min(room) >= tail::MAX_LINE,
                ),
            };
            line.extend_from_slice(&buf[..used]);
            input.consume(used);
            if done {
                return Ok(line.len());
            }
        }
    }
}

/// Polls the slow log, emitting each entry once.
async fn poll_slowlog(
    shared: Shared,
    url: RedisUrl,
    count: u32,
    interval: Duration,
    mut next: Option<i64>,
) {
    let source = format!("redis-slowlog:{}", url.address());
    let mut connection: Option<Connection> = None;
    loop {
        let reply = async {
            if connection.is_none() {
                let mut opened = Connection::open(&url, Duration::from_secs(5)).await?;
                // Named, so that these polls' own slow-log entries can be left out.
                opened
                    .command(&["CLIENT", "SETNAME", slowlog::CLIENT_NAME])
                    .await?;
                connection = Some(opened);
            }
            match connection.as_mut() {
                Some(c) => c.command(&["SLOWLOG", "GET", &count.to_string()]).await,
                None => Err("not connected".into()),
            }
        }
        .await;
        match reply {
            Ok(reply) => {
                let entries: Vec<slowlog::Entry> = slowlog::parse_reply(&reply);
                let newest = entries.iter().map(|e| e.id).max();
                let fresh = match next {
                    Some(next) => slowlog::new_entries(entries, next),
                    // First read without --from-start: only entries from now on.
                    None => Vec::new(),
                };
                // Past the newest entry, ours included (after a Redis restart, lower).
                next = newest.map(|n| n + 1).or(next).or(Some(0));
                let records = fresh.iter().map(slowlog::record).collect();
                let commit = next.map(|n| Position {
                    offset: n as u64,
                    inode: 0,
                });
                if !shared.send(&source, records, commit).await {
                    return;
                }
            }
            Err(e) => {
                connection = None;
                shared.metrics.error(&source);
                tracing::warn!(redis = %url.address(), error = %e, "reading the slow log failed");
            }
        }
        if shared.once {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shared.shutdown.triggered() => return,
        }
    }
}

/// Writes batches to stdout, then saves their positions; returns when every source has
/// ended.
async fn write_out(
    mut rx: mpsc::Receiver<Batch>,
    positions: Arc<Mutex<Positions>>,
) -> Result<(), String> {
    let mut out = tokio::io::BufWriter::with_capacity(64 << 10, tokio::io::stdout());
    let mut saved = Instant::now();
    let save = |positions: &Arc<Mutex<Positions>>| {
        positions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .save()
            .map_err(|e| format!("saving positions: {e}"))
    };
    while let Some(first) = rx.recv().await {
        let mut commits = Vec::new();
        let mut batch = Some(first);
        // Everything already queued goes out in one flush.
        while let Some(b) = batch.take().or_else(|| rx.try_recv().ok()) {
            for line in &b.lines {
                out.write_all(line.as_bytes())
                    .await
                    .map_err(|e| format!("stdout: {e}"))?;
                out.write_all(b"\n")
                    .await
                    .map_err(|e| format!("stdout: {e}"))?;
            }
            commits.extend(b.commit);
        }
        out.flush().await.map_err(|e| format!("stdout: {e}"))?;
        {
            let mut positions = positions.lock().unwrap_or_else(|p| p.into_inner());
            for (key, position) in commits {
                positions.set(&key, position);
            }
        }
        if saved.elapsed() >= SAVE_EVERY {
            save(&positions)?;
            saved = Instant::now();
        }
    }
    save(&positions)
}

/// Runs the adapter until shutdown, or until its sources end (`--once`, stdin alone).
pub async fn run(
    args: LogsArgs,
    sources: Vec<SourceSpec>,
    ctx: Context,
) -> Result<(), ComponentError> {
    let positions = Positions::load(args.pos_file.as_deref())
        .map_err(|e| ComponentError::Config(ConfigError::flag("--pos-file", e)))?;
    let metrics = LogMetrics::register(&ctx);
    let (tx, rx) = mpsc::channel(64);
    let shared = Shared {
        tx,
        metrics,
        shutdown: ctx.shutdown.clone(),
        once: args.once,
        poll: args.poll_interval.get(),
        resumes: args.pos_file.is_some(),
        utc_offset: args.utc_offset,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for source in &sources {
        let saved = positions.get(&source.name());
        match source.clone() {
            SourceSpec::File { path, format } => {
                let start = match saved {
                    Some(p) => Start::Resume {
                        offset: p.offset,
                        inode: p.inode,
                    },
                    None if args.from_start || args.once => Start::Beginning,
                    None => Start::End,
                };
                tracing::info!(file = %path.display(), format = format.name(), ?start, "reading");
                // Opened before /readyz says ready, so no line written after it is missed.
                let mut tailer = Tailer::new(path.clone(), start);
                let mut events = Vec::new();
                if let Err(e) = tailer.open_now(&mut events) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot open yet");
                }
                tasks.spawn(follow_file(shared.clone(), tailer, source.name(), format));
            }
            SourceSpec::Stdin { format } => {
                tasks.spawn(read_stdin(shared.clone(), format));
            }
            SourceSpec::Slowlog(url) => {
                let next = match saved {
                    Some(p) => Some(p.offset as i64),
                    None if args.from_start || args.once => Some(0),
                    None => None,
                };
                tasks.spawn(poll_slowlog(
                    shared.clone(),
                    url,
                    args.slowlog_count,
                    args.slowlog_interval.get(),
                    next,
                ));
            }
        }
    }
    drop(shared);
    ctx.started();
    let positions = Arc::new(Mutex::new(positions));
    let writer = tokio::spawn(write_out(rx, positions));
    while tasks.join_next().await.is_some() {}
    match writer.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ComponentError::runtime(e)),
        Err(e) => Err(ComponentError::runtime(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_offset;

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("Z"), Ok(0));
        assert_eq!(parse_offset("+02:00"), Ok(7200));
        assert_eq!(parse_offset("-05:30"), Ok(-19800));
        assert!(parse_offset("02:00").is_err());
        assert!(parse_offset("+2").is_err());
        assert!(parse_offset("+25:00").is_err());
    }
}
