//! Redis's slow log as a log source (fluentd's `redis_slowlog` input): `SLOWLOG GET`
//! polled, each entry emitted once, in id order, as a normalized record.

use podkit_kv::resp::Frame;
use serde_json::{json, Map, Value};

use super::parse::{time, Format, Record};

/// The client name the adapter's connection takes; its own entries are not emitted.
pub const CLIENT_NAME: &str = "podkit-adapter-logs";

/// One slow-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub timestamp: i64,
    pub micros: i64,
    pub args: Vec<String>,
    pub client: Option<String>,
    pub client_name: Option<String>,
}

/// Reads the reply to `SLOWLOG GET`; entries that do not have the expected shape are
/// skipped.
pub fn parse_reply(reply: &Frame) -> Vec<Entry> {
    let Frame::Array(items) = reply else {
        return Vec::new();
    };
    items.iter().filter_map(parse_entry).collect()
}

fn parse_entry(item: &Frame) -> Option<Entry> {
    let Frame::Array(fields) = item else {
        return None;
    };
    let int = |i: usize| match fields.get(i) {
        Some(Frame::Integer(n)) => Some(*n),
        _ => None,
    };
    let text = |f: &Frame| match f {
        Frame::Bulk(b) | Frame::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    let args = match fields.get(3) {
        Some(Frame::Array(args)) => args.iter().filter_map(text).collect(),
        _ => return None,
    };
    Some(Entry {
        id: int(0)?,
        timestamp: int(1)?,
        micros: int(2)?,
        args,
        client: fields.get(4).and_then(text).filter(|s| !s.is_empty()),
        client_name: fields.get(5).and_then(text).filter(|s| !s.is_empty()),
    })
}

/// The entries not emitted yet, oldest first, given the next id expected, without the
/// adapter's own commands. When the newest id is below `next`, Redis restarted and counts
/// again from 0: everything is new.
pub fn new_entries(mut entries: Vec<Entry>, next: i64) -> Vec<Entry> {
    entries.sort_by_key(|e| e.id);
    let restarted = entries.last().is_some_and(|e| e.id + 1 < next) && next > 0;
    entries
        .into_iter()
        .filter(|e| restarted || e.id >= next)
        .filter(|e| e.client_name.as_deref() != Some(CLIENT_NAME))
        .collect()
}

/// The entry as a record: the command as the message, its duration and client as fields.
pub fn record(entry: &Entry) -> Record {
    let mut fields = Map::new();
    fields.insert("id".into(), json!(entry.id));
    fields.insert("duration_us".into(), json!(entry.micros));
    fields.insert("args".into(), Value::from(entry.args.clone()));
    if let Some(client) = &entry.client {
        fields.insert("client_addr".into(), json!(client));
    }
    if let Some(name) = &entry.client_name {
        fields.insert("client_name".into(), json!(name));
    }
    Record {
        ts: Some(time::format_utc(entry.timestamp, "")),
        level: Some("warn".into()),
        msg: entry.args.join(" "),
        format: Format::Redis,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(id: i64) -> Entry {
        Entry {
            id,
            timestamp: 1_764_115_200,
            micros: 12,
            args: vec!["GET".into(), "k".into()],
            client: Some("127.0.0.1:5000".into()),
            client_name: None,
        }
    }

    #[test]
    fn replies_parse_into_entries() {
        let bulk = |s: &str| Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()));
        let reply = Frame::Array(vec![Frame::Array(vec![
            Frame::Integer(7),
            Frame::Integer(1_764_115_200),
            Frame::Integer(12),
            Frame::Array(vec![bulk("GET"), bulk("k")]),
            bulk("127.0.0.1:5000"),
            bulk(""),
        ])]);
        assert_eq!(parse_reply(&reply), [Entry { id: 7, ..entry(7) }]);
    }

    #[test]
    fn each_entry_once_in_order_and_all_after_a_restart() {
        let got: Vec<i64> = new_entries(vec![entry(5), entry(3), entry(4)], 4)
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(got, [4, 5]);
        let got: Vec<i64> = new_entries(vec![entry(1), entry(0)], 40)
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(got, [0, 1], "ids went back: Redis restarted");
        assert!(new_entries(vec![entry(5)], 6).is_empty());
        let own = Entry {
            client_name: Some(CLIENT_NAME.into()),
            ..entry(6)
        };
        assert!(
            new_entries(vec![own], 6).is_empty(),
            "the adapter's own polls"
        );
    }

    #[test]
    fn records_carry_the_command() {
        let r = record(&entry(1));
        assert_eq!(r.ts.as_deref(), Some("2025-11-26T00:00:00Z"));
        assert_eq!(r.msg, "GET k");
        assert_eq!(r.fields["duration_us"], 12);
    }
}
