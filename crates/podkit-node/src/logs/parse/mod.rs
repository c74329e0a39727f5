//! The line parser behind chapter 4's log-normalizing adapter (`podkit adapter logs`,
//! the fluentd-style sidecar of *Designing Distributed Systems*): it reads log lines of
//! heterogeneous formats, detects each line's format (or uses a fixed one), and turns
//! it into one normalized [`Record`] with an RFC 3339 UTC time, a normalized level,
//! a message and the remaining fields.
//!
//! Pure logic: no I/O, no clock reads except [`Context::default`].

mod access;
mod java;
mod json;
mod klog;
mod level;
mod logfmt;
mod redis;
mod scan;
mod syslog;
pub(crate) mod time;

use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// A log format; `Auto` detects per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Detect each line's format.
    Auto,
    /// One JSON object per line.
    Json,
    /// `key=value` pairs.
    Logfmt,
    /// Kubernetes klog / glog: `I1126 00:15:11.123456   42 file.go:10] msg`.
    Klog,
    /// BSD syslog (RFC 3164), with or without `<PRI>`.
    Syslog3164,
    /// IETF syslog (RFC 5424).
    Syslog5424,
    /// Apache/nginx Common Log Format.
    Common,
    /// Apache/nginx Combined Log Format (common plus referer and user agent).
    Combined,
    /// java.util.logging `SimpleFormatter` default (two lines per record).
    JavaUtil,
    /// log4j default layouts (`%d [%t] %-5level %logger - %msg`, TTCC).
    Log4j,
    /// Redis server log (`pid:R dd Mon yyyy hh:mm:ss.mmm * msg`).
    Redis,
    /// Nothing matched; the message is the whole line.
    Unparsed,
}

/// The names [`Format::from_str`] accepts, as listed in its error.
const FORMAT_NAMES: &str =
    "auto, json, logfmt, klog (glog), syslog3164 (rfc3164), syslog5424 (rfc5424), common, combined (apache, nginx), jul (java), log4j, redis";

impl Format {
    /// The name used in the output `format` field.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Json => "json",
            Format::Logfmt => "logfmt",
            Format::Klog => "klog",
            Format::Syslog3164 => "syslog3164",
            Format::Syslog5424 => "syslog5424",
            Format::Common => "common",
            Format::Combined => "combined",
            Format::JavaUtil => "jul",
            Format::Log4j => "log4j",
            Format::Redis => "redis",
            Format::Unparsed => "unparsed",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for an unknown format name; its message lists the valid names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown log format {:?}; valid formats: {FORMAT_NAMES}",
            self.0
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Parses a format name or alias, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Format::Auto,
            "json" => Format::Json,
            "logfmt" => Format::Logfmt,
            "klog" | "glog" => Format::Klog,
            "syslog3164" | "rfc3164" => Format::Syslog3164,
            "syslog5424" | "rfc5424" => Format::Syslog5424,
            "common" => Format::Common,
            "combined" | "apache" | "nginx" => Format::Combined,
            "jul" | "java" => Format::JavaUtil,
            "log4j" => Format::Log4j,
            "redis" => Format::Redis,
            _ => return Err(UnknownFormat(s.to_string())),
        })
    }
}

/// What zone-less or year-less timestamps need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Current time in unix seconds; gives the year for syslog 3164 and klog stamps
    /// (the previous year when the stamp would be more than a day in the future) and
    /// the date for log4j's time-of-day stamps.
    pub now_unix: i64,
    /// Assumed zone of zone-less stamps, in seconds east of UTC.
    pub utc_offset_seconds: i32,
}

impl Context {
    /// A context at `now_unix` with zone-less stamps taken as UTC.
    #[must_use]
    pub fn at(now_unix: i64) -> Context {
        Context {
            now_unix,
            utc_offset_seconds: 0,
        }
    }
}

impl Default for Context {
    /// The system clock's current time, with zone-less stamps taken as UTC.
    fn default() -> Context {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Context::at(now)
    }
}

/// One normalized record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// RFC 3339 UTC time, fractional seconds kept as given; `None` when the line has no time.
    pub ts: Option<String>,
    /// One of trace, debug, info, notice, warn, error, critical, fatal.
    pub level: Option<String>,
    /// The message (continuation lines of Java records are appended after `\n`).
    pub msg: String,
    /// What the line parsed as (`Unparsed` when nothing matched).
    pub format: Format,
    /// Every other parsed field.
    pub fields: Map<String, Value>,
}

/// Keys that [`Record::to_json`] sets itself.
const RESERVED: [&str; 5] = ["ts", "level", "msg", "source", "format"];

impl Record {
    /// A record for a line that matched no format: its message is the whole line.
    #[must_use]
    pub fn unparsed(line: &str) -> Record {
        Record::new(Format::Unparsed, line.to_string())
    }

    pub(crate) fn new(format: Format, msg: String) -> Record {
        Record {
            ts: None,
            level: None,
            msg,
            format,
            fields: Map::new(),
        }
    }

    pub(crate) fn with_level(mut self, level: Option<&str>) -> Record {
        self.level = level.map(str::to_string);
        self
    }

    /// Inserts a field, prefixing `_` to the key while it is taken.
    pub(crate) fn put(&mut self, key: &str, value: impl Into<Value>) {
        insert_unique(&mut self.fields, key.to_string(), value.into());
    }

    /// The output object: `ts`, `level` (each only when known), `msg`, `source`,
    /// `format`, then the fields flattened; a field named like one of these is
    /// written with a leading `_`.
    #[must_use]
    pub fn to_json(&self, source: &str) -> Value {
        let mut out = Map::new();
        for k in RESERVED {
            out.insert(k.to_string(), Value::Null);
        }
        for (k, v) in &self.fields {
            insert_unique(&mut out, k.clone(), v.clone());
        }
        match &self.ts {
            Some(ts) => out.insert("ts".into(), ts.clone().into()),
            None => out.remove("ts"),
        };
        match &self.level {
            Some(l) => out.insert("level".into(), l.clone().into()),
            None => out.remove("level"),
        };
        out.insert("msg".into(), self.msg.clone().into());
        out.insert("source".into(), source.into());
        out.insert("format".into(), self.format.name().into());
        Value::Object(out)
    }
}

fn insert_unique(map: &mut Map<String, Value>, mut key: String, value: Value) {
    while map.contains_key(&key) {
        key.insert(0, '_');
    }
    map.insert(key, value);
}

/// How a parsed line continues.
pub(crate) enum Parsed {
    /// A finished record.
    Done(Record),
    /// A JUL header line; the `LEVEL: message` line should follow.
    JulHeader(Record),
    /// A Java record that continuation lines (stack traces) may extend.
    Multi(Record),
}

enum Pending {
    None,
    JulHeader(Record),
    Multi(Record, usize),
}

/// Continuation lines kept at most per record; later ones start new records.
const MAX_CONTINUATION_LINES: usize = 1000;

/// Stateful line parser: java.util.logging records span two lines, and stack traces
/// or other continuation lines after a log4j or JUL record belong to that record.
pub struct Parser {
    format: Format,
    ctx: Context,
    pending: Pending,
}

impl Parser {
    /// A parser for `format` (`Format::Auto` detects per line).
    #[must_use]
    pub fn new(format: Format, context: Context) -> Parser {
        Parser {
            format,
            ctx: context,
            pending: Pending::None,
        }
    }

    /// Feeds one line (without its newline; a trailing `\r` is ignored) and returns
    /// the records completed so far (0, 1 or 2), in input order.
    pub fn feed(&mut self, line: &str) -> Vec<Record> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut out = Vec::new();
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => {}
            Pending::JulHeader(mut rec) => {
                if java::jul_level_line(line, &mut rec) {
                    self.pending = Pending::Multi(rec, 0);
                    return out;
                }
                out.push(rec);
            }
            Pending::Multi(mut rec, n) => {
                if n < MAX_CONTINUATION_LINES && java::is_continuation(line) {
                    rec.msg.push('\n');
                    rec.msg.push_str(line);
                    self.pending = Pending::Multi(rec, n + 1);
                    return out;
                }
                out.push(finish(rec));
            }
        }
        match self.parse_line(line) {
            Parsed::Done(rec) => out.push(rec),
            Parsed::JulHeader(rec) => self.pending = Pending::JulHeader(rec),
            Parsed::Multi(rec) => self.pending = Pending::Multi(rec, 0),
        }
        out
    }

    /// Whether a record is held, waiting for lines that may continue it.
    #[must_use]
    pub fn holding(&self) -> bool {
        !matches!(self.pending, Pending::None)
    }

    /// Sets the clock used for year-less and date-less timestamps (a long-running
    /// reader calls it as time passes).
    pub fn set_now(&mut self, now_unix: i64) {
        self.ctx.now_unix = now_unix;
    }

    /// Ends the input: returns a record still held (a Java record that could have
    /// had more continuation lines, or a JUL header with no message line).
    pub fn flush(&mut self) -> Option<Record> {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => None,
            Pending::JulHeader(rec) => Some(rec),
            Pending::Multi(rec, _) => Some(finish(rec)),
        }
    }

    fn parse_line(&self, line: &str) -> Parsed {
        let ctx = &self.ctx;
        let done = |r: Option<Record>| r.map(Parsed::Done);
        let parsed = match self.format {
            Format::Auto => detect(line, ctx),
            Format::Json => done(json::parse(line, ctx)),
            Format::Logfmt => done(logfmt::parse(line, ctx)),
            Format::Klog => done(klog::parse(line, ctx)),
            Format::Syslog3164 => done(syslog::parse_3164(line, ctx)),
            Format::Syslog5424 => done(syslog::parse_5424(line, ctx)),
            Format::Common => done(access::parse(line, ctx).filter(|r| r.format == Format::Common)),
            Format::Combined => done(access::parse(line, ctx)),
            Format::JavaUtil => java::parse_jul_header(line, ctx).map(Parsed::JulHeader),
            Format::Log4j => java::parse_log4j(line, ctx).map(Parsed::Multi),
            Format::Redis => done(redis::parse(line, ctx)),
            Format::Unparsed => None,
        };
        parsed.unwrap_or_else(|| Parsed::Done(Record::unparsed(line)))
    }
}

/// Drops trailing blank continuation lines (JUL prints one after a stack trace).
fn finish(mut rec: Record) -> Record {
    let kept = rec.msg.trim_end().len();
    if rec.msg.contains('\n') {
        rec.msg.truncate(kept);
    }
    rec
}

/// Auto-detection: each parser rejects on its first bytes, so trying them in turn is
/// cheap, and their shapes do not overlap. A line starting with `{` is JSON or nothing.
fn detect(line: &str, ctx: &Context) -> Option<Parsed> {
    let first = *line.as_bytes().first()?;
    if first == b'{' {
        return json::parse(line, ctx).map(Parsed::Done);
    }
    let done = |r: Option<Record>| r.map(Parsed::Done);
    if first == b'<' {
        if let Some(r) = syslog::parse_5424(line, ctx).or_else(|| syslog::parse_3164(line, ctx)) {
            return Some(Parsed::Done(r));
        }
    }
    if matches!(first, b'I' | b'W' | b'E' | b'F') {
        if let Some(r) = klog::parse(line, ctx) {
            return Some(Parsed::Done(r));
        }
    }
    if first.is_ascii_digit() {
        if let Some(r) = redis::parse(line, ctx) {
            return Some(Parsed::Done(r));
        }
        if let Some(r) = java::parse_log4j(line, ctx) {
            return Some(Parsed::Multi(r));
        }
    }
    if first.is_ascii_uppercase() {
        if let Some(r) = java::parse_jul_header(line, ctx) {
            return Some(Parsed::JulHeader(r));
        }
        if let Some(r) = syslog::parse_3164(line, ctx) {
            return Some(Parsed::Done(r));
        }
    }
    done(access::parse(line, ctx).or_else(|| logfmt::parse(line, ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for f in [
            Format::Auto,
            Format::Json,
            Format::Logfmt,
            Format::Klog,
            Format::Syslog3164,
            Format::Syslog5424,
            Format::Common,
            Format::Combined,
            Format::JavaUtil,
            Format::Log4j,
            Format::Redis,
        ] {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
        }
        assert_eq!("NGINX".parse::<Format>().unwrap(), Format::Combined);
        assert_eq!("glog".parse::<Format>().unwrap(), Format::Klog);
        assert_eq!("rfc5424".parse::<Format>().unwrap(), Format::Syslog5424);
        assert_eq!("java".parse::<Format>().unwrap(), Format::JavaUtil);
        let err = "xml".parse::<Format>().unwrap_err().to_string();
        assert!(
            err.contains("\"xml\"") && err.contains("logfmt") && err.contains("redis"),
            "{err}"
        );
    }

    #[test]
    fn to_json_flattens_and_protects_core_keys() {
        let mut r = Record::new(Format::Json, "hi".into());
        r.put("source", "from-line");
        r.put("pid", 7);
        let v = r.to_json("app-1");
        assert_eq!(v["source"], "app-1");
        assert_eq!(v["_source"], "from-line");
        assert_eq!(v["pid"], 7);
        assert_eq!(v["format"], "json");
        assert!(v.get("ts").is_none() && v.get("level").is_none());
    }

    #[test]
    fn unparsed_keeps_the_line() {
        let mut p = Parser::new(Format::Auto, Context::at(0));
        let recs = p.feed("just some words\r");
        assert_eq!(recs, vec![Record::unparsed("just some words")]);
        assert_eq!(p.feed("")[0].format, Format::Unparsed);
        assert!(p.flush().is_none());
    }

    #[test]
    fn fixed_format_rejects_other_shapes() {
        let mut p = Parser::new(Format::Redis, Context::at(0));
        let r = p.feed("{\"msg\":\"hi\"}").remove(0);
        assert_eq!(r.format, Format::Unparsed);
        let mut p = Parser::new(Format::Common, Context::at(0));
        let line =
            r#"1.2.3.4 - - [26/Nov/2026:00:17:31 +0000] "GET / HTTP/1.1" 200 3 "-" "curl/7.88.1""#;
        assert_eq!(p.feed(line)[0].format, Format::Unparsed);
        let mut p = Parser::new(Format::Combined, Context::at(0));
        assert_eq!(p.feed(line)[0].format, Format::Combined);
    }
}
