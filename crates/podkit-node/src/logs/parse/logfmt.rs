//! logfmt: `key=value key2="quoted value" flag`.

use crate::logs::parse::scan::quoted;
use crate::logs::parse::{json, Context, Format, Record};
use serde_json::{Map, Value};

/// One token: `key=value` (value `Some`) or a bare word (value `None`).
pub(crate) type Token<'a> = (&'a str, Option<String>);

/// Splits a line into tokens; `None` when a quote is unterminated or a key is empty.
pub(crate) fn tokens(s: &str) -> Option<Vec<Token<'_>>> {
    let mut out = Vec::new();
    let mut rest = s.trim_start_matches(' ');
    while !rest.is_empty() {
        let key_end = rest.find([' ', '=']).unwrap_or(rest.len());
        let key = &rest[..key_end];
        if key.is_empty() || key.contains('"') {
            return None;
        }
        rest = &rest[key_end..];
        if let Some(after) = rest.strip_prefix('=') {
            if after.starts_with('"') {
                let (v, tail) = quoted(after)?;
                if !(tail.is_empty() || tail.starts_with(' ')) {
                    return None;
                }
                out.push((key, Some(v)));
                rest = tail;
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                out.push((key, Some(after[..end].to_string())));
                rest = &after[end..];
            }
        } else {
            out.push((key, None));
        }
        rest = rest.trim_start_matches(' ');
    }
    Some(out)
}

/// A logfmt line has at least two pairs and either a well-known key
/// (msg, message, level, ts, time) or nothing but pairs.
pub(crate) fn parse(line: &str, ctx: &Context) -> Option<Record> {
    let toks = tokens(line)?;
    let pairs = toks.iter().filter(|(_, v)| v.is_some()).count();
    let known = toks
        .iter()
        .any(|(k, v)| v.is_some() && matches!(*k, "msg" | "message" | "level" | "ts" | "time"));
    if pairs < 2 || !(known || pairs == toks.len()) {
        return None;
    }
    let mut map = Map::new();
    for (k, v) in toks {
        let v = v.map_or(Value::Bool(true), Value::String);
        let mut key = k.to_string();
        while map.contains_key(&key) {
            key.insert(0, '_');
        }
        map.insert(key, v);
    }
    Some(json::from_map(Format::Logfmt, map, ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Option<Record> {
        parse(line, &Context::at(0))
    }

    #[test]
    fn go_kit_style() {
        let r = p(r#"ts=2026-11-26T00:15:11.5Z level=info msg="listening on :8080" caller=main.go:42 tls"#).unwrap();
        assert_eq!(r.ts.as_deref(), Some("2026-11-26T00:15:11.5Z"));
        assert_eq!(r.level.as_deref(), Some("info"));
        assert_eq!(r.msg, "listening on :8080");
        assert_eq!(r.fields["caller"], "main.go:42");
        assert_eq!(r.fields["tls"], true);
    }

    #[test]
    fn all_pairs_without_known_keys() {
        let r = p("a=1 b= c=\"x y\"").unwrap();
        assert_eq!(r.msg, "");
        assert_eq!(r.fields["a"], "1");
        assert_eq!(r.fields["b"], "");
        assert_eq!(r.fields["c"], "x y");
    }

    #[test]
    fn rejects_prose() {
        assert!(p("a=1").is_none());
        assert!(p("the value a=1 and b=2 was set").is_none());
        assert!(p(r#"msg="unterminated level=info"#).is_none());
        assert!(p("=x a=1 b=2").is_none());
    }

    #[test]
    fn duplicate_keys_kept() {
        let r = p("msg=a k=1 k=2").unwrap();
        assert_eq!(r.fields["k"], "1");
        assert_eq!(r.fields["_k"], "2");
    }
}
