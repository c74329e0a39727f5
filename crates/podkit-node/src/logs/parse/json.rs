//! JSON lines: one object per line.

use crate::logs::parse::{level, time, Context, Format, Record};
use serde_json::{Map, Value};

pub(crate) const TS_KEYS: [&str; 4] = ["ts", "time", "timestamp", "@timestamp"];
pub(crate) const LEVEL_KEYS: [&str; 3] = ["level", "lvl", "severity"];
pub(crate) const MSG_KEYS: [&str; 2] = ["msg", "message"];

/// Parses a JSON object line; anything else (including malformed JSON) is `None`.
pub(crate) fn parse(line: &str, ctx: &Context) -> Option<Record> {
    let Value::Object(map) = serde_json::from_str(line).ok()? else {
        return None;
    };
    Some(from_map(Format::Json, map, ctx))
}

/// Builds a record by taking time, level and message out of `map`; each comes from
/// the first listed key whose value is usable, and unusable values stay as fields.
pub(crate) fn from_map(format: Format, mut map: Map<String, Value>, ctx: &Context) -> Record {
    let ts = take_first(&mut map, &TS_KEYS, |v| time_value(v, ctx));
    let level = take_first(&mut map, &LEVEL_KEYS, level_value);
    let msg = take_first(&mut map, &MSG_KEYS, |v| {
        Some(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    });
    Record {
        ts,
        level: level.map(str::to_string),
        msg: msg.unwrap_or_default(),
        format,
        fields: map,
    }
}

fn take_first<T>(
    map: &mut Map<String, Value>,
    keys: &[&str],
    f: impl Fn(&Value) -> Option<T>,
) -> Option<T> {
    for k in keys {
        if let Some(t) = map.get(*k).and_then(&f) {
            map.remove(*k);
            return Some(t);
        }
    }
    None
}

fn time_value(v: &Value, ctx: &Context) -> Option<String> {
    match v {
        Value::String(s) => {
            time::parse_rfc3339(s, ctx.utc_offset_seconds).or_else(|| time::from_number_text(s))
        }
        Value::Number(n) => {
            let text = n.to_string();
            if text.contains(['e', 'E']) {
                time::from_number_text(&format!("{:.6}", n.as_f64()?))
            } else {
                time::from_number_text(&text)
            }
        }
        _ => None,
    }
}

fn level_value(v: &Value) -> Option<&'static str> {
    match v {
        Value::String(s) => level::normalize(s),
        Value::Number(n) => level::from_number(n.as_i64()?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Option<Record> {
        parse(line, &Context::at(1_790_000_000))
    }

    #[test]
    fn typical_object() {
        let r = p(r#"{"ts":"2026-11-26T01:15:11.123+01:00","level":"WARN","msg":"slow","user":{"id":7},"ms":12.5}"#).unwrap();
        assert_eq!(r.ts.as_deref(), Some("2026-11-26T00:15:11.123Z"));
        assert_eq!(r.level.as_deref(), Some("warn"));
        assert_eq!(r.msg, "slow");
        assert_eq!(r.fields["user"]["id"], 7);
        assert_eq!(r.fields["ms"], 12.5);
        assert_eq!(r.fields.len(), 2);
    }

    #[test]
    fn numeric_times_and_levels() {
        let r = p(r#"{"time":1764116111123,"level":30,"message":"pino"}"#).unwrap();
        assert_eq!(r.ts.as_deref(), Some("2025-11-26T00:15:11.123Z"));
        assert_eq!(r.level.as_deref(), Some("info"));
        assert_eq!(r.msg, "pino");
        let r = p(r#"{"ts":1764116111.5,"lvl":"dbg","msg":"zap"}"#).unwrap();
        assert_eq!(r.ts.as_deref(), Some("2025-11-26T00:15:11.5Z"));
        assert_eq!(r.level.as_deref(), Some("debug"));
    }

    #[test]
    fn unusable_values_stay_as_fields() {
        let r = p(r#"{"ts":"yesterday","@timestamp":"2026-11-26T00:00:00Z","level":"loud","msg":{"a":1}}"#).unwrap();
        assert_eq!(r.ts.as_deref(), Some("2026-11-26T00:00:00Z"));
        assert_eq!(r.fields["ts"], "yesterday");
        assert_eq!(r.fields["level"], "loud");
        assert_eq!(r.level, None);
        assert_eq!(r.msg, r#"{"a":1}"#);
    }

    #[test]
    fn malformed_or_not_an_object() {
        assert!(p(r#"{"msg":"cut"#).is_none());
        assert!(p("[1,2]").is_none());
        assert!(p(r#"{"a":1} trailing"#).is_none());
    }
}
