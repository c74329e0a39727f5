//! The mapping from a JSON stats document to Prometheus metrics, and applying it. Pure.
//!
//! ```yaml
//! metrics:
//!   - name: etcd_store_sets_success_total   # counters end in _total (added if missing)
//!     type: counter                         # or gauge (the default)
//!     help: Successful sets
//!     path: setsSuccess                     # dotted path into the document
//!   - name: etcd_server_is_leader
//!     path: state
//!     values: { StateLeader: 1 }            # strings to numbers (others: 0)
//!   - name: twemproxy_server_requests_total
//!     type: counter
//!     path: "*.*.requests"                  # * matches any key or index...
//!     labels: { pool: $1, server: $2 }      # ...captured as $1, $2
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::exposition::{Exposition, Kind};

/// The whole mapping file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub metrics: Vec<MetricSpec>,
}

/// The type of a mapped metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    #[default]
    Gauge,
    Counter,
}

/// One metric: where its values are in the document and how they are labelled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: MetricType,
    #[serde(default)]
    pub help: Option<String>,
    pub path: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// String values to numbers; a string not listed counts 0.
    #[serde(default)]
    pub values: BTreeMap<String, f64>,
}

impl Mapping {
    /// Parses and checks the mapping: names and label names must be valid Prometheus
    /// names, and `$N` must not exceed the path's wildcards.
    pub fn parse(text: &str) -> Result<Mapping, String> {
        let mut mapping: Mapping = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if mapping.metrics.is_empty() {
            return Err("metrics: at least one".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, m) in mapping.metrics.iter_mut().enumerate() {
            let name = m.name.clone();
            let at = |e: String| format!("metrics[{i}] ({name}): {e}");
            if !valid_name(&m.name, true) {
                return Err(at("not a valid metric name".into()));
            }
            if m.kind == MetricType::Counter && !m.name.ends_with("_total") {
                m.name.push_str("_total");
            }
            if !names.insert(m.name.clone()) {
                return Err(at("a second metric of that name".into()));
            }
            let wildcards = m.path.split('.').filter(|s| *s == "*").count();
            let used: Vec<usize> = m.labels.values().flat_map(|t| captures_used(t)).collect();
            if let Some(n) = (1..=wildcards).find(|n| !used.contains(n)) {
                return Err(at(format!(
                    "no label uses ${n}: the samples it matches would collide"
                )));
            }
            for (label, template) in &m.labels {
                if !valid_name(label, false) || label.starts_with("__") {
                    return Err(at(format!("'{label}' is not a valid label name")));
                }
                for n in captures_used(template) {
                    if n == 0 || n > wildcards {
                        return Err(at(format!(
                            "label {label} uses ${n}, the path has {wildcards} wildcard(s)"
                        )));
                    }
                }
            }
            if m.path.is_empty() {
                return Err(at("empty path".into()));
            }
        }
        Ok(mapping)
    }

    /// Renders every metric found in `doc`; metrics whose path matches nothing are left
    /// out. Returns how many samples were written.
    pub fn render(&self, doc: &Value, out: &mut Exposition) -> usize {
        let mut written = 0;
        for m in &self.metrics {
            let segments: Vec<&str> = m.path.split('.').collect();
            let mut found = Vec::new();
            walk(doc, &segments, &mut Vec::new(), &mut found);
            let samples: Vec<(Vec<(String, String)>, f64)> = found
                .into_iter()
                .filter_map(|(captures, value)| {
                    let number = numeric(value, &m.values)?;
                    let labels = m
                        .labels
                        .iter()
                        .map(|(k, t)| (k.clone(), fill(t, &captures)))
                        .collect();
                    Some((labels, number))
                })
                .collect();
            let kind = match m.kind {
                MetricType::Gauge => Kind::Gauge,
                MetricType::Counter => Kind::Counter,
            };
            let help = m.help.clone().unwrap_or_else(|| format!("From {}", m.path));
            written += samples.len();
            out.family(&m.name, kind, &help, &samples);
        }
        written
    }
}

/// Collects the values at `segments` below `value`, with the keys `*` matched.
fn walk<'a>(
    value: &'a Value,
    segments: &[&str],
    captures: &mut Vec<String>,
    found: &mut Vec<(Vec<String>, &'a Value)>,
) {
    let Some((first, rest)) = segments.split_first() else {
        found.push((captures.clone(), value));
        return;
    };
    let children: Vec<(String, &Value)> = match (value, *first) {
        (Value::Object(map), "*") => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        (Value::Array(items), "*") => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        (Value::Object(map), key) => map
            .get(key)
            .map(|v| vec![(String::new(), v)])
            .unwrap_or_default(),
        (Value::Array(items), index) => index
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get(i))
            .map(|v| vec![(String::new(), v)])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    for (key, child) in children {
        let wildcard = *first == "*";
        if wildcard {
            captures.push(key);
        }
        walk(child, rest, captures, found);
        if wildcard {
            captures.pop();
        }
    }
}

/// A number from a JSON value: numbers, booleans, numeric strings, and strings listed in
/// `values`. Objects, arrays and null give none.
fn numeric(value: &Value, values: &BTreeMap<String, f64>) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::String(s) if !values.is_empty() => Some(values.get(s).copied().unwrap_or(0.0)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `template` with `$N` replaced by capture N (1-based).
fn fill(template: &str, captures: &[String]) -> String {
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = n * 10 + d as usize;
                chars.next();
            }
            out.push_str(captures.get(n.wrapping_sub(1)).map_or("", String::as_str));
        } else {
            out.push(c);
        }
    }
    out
}

fn captures_used(template: &str) -> Vec<usize> {
    let bytes = template.as_bytes();
    let mut used = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let digits: String = template[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse() {
                used.push(n);
            }
            i += 1 + digits.len();
        } else {
            i += 1;
        }
    }
    used
}

/// Prometheus metric names: `[a-zA-Z_:][a-zA-Z0-9_:]*`; label names without `:`.
fn valid_name(name: &str, colons: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic()
            || c == '_'
            || (colons && c == ':')
            || (!first && c.is_ascii_digit())
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPPING: &str = r#"
metrics:
  - name: twemproxy_server_requests
    type: counter
    path: "*.*.requests"
    labels: { pool: $1, server: "s-$2" }
  - name: twemproxy_uptime_seconds
    path: uptime
    help: Seconds up
  - name: etcd_is_leader
    path: state
    values: { StateLeader: 1 }
  - name: absent_metric
    path: nothing.here
"#;

    #[test]
    fn wildcards_capture_labels_and_strings_map_to_numbers() {
        let mapping = Mapping::parse(MAPPING).unwrap();
        let doc: Value = serde_json::json!({
            "uptime": 12, "state": "StateFollower", "service": "nutcracker",
            "alpha": { "client_eof": 0, "one": { "requests": 5 }, "two": { "requests": "7" } },
        });
        let mut out = Exposition::default();
        assert_eq!(mapping.render(&doc, &mut out), 4);
        assert_eq!(
            out.finish(),
            "# HELP twemproxy_server_requests_total From *.*.requests\n\
             # TYPE twemproxy_server_requests_total counter\n\
             twemproxy_server_requests_total{pool=\"alpha\",server=\"s-one\"} 5\n\
             twemproxy_server_requests_total{pool=\"alpha\",server=\"s-two\"} 7\n\
             # HELP twemproxy_uptime_seconds Seconds up\n\
             # TYPE twemproxy_uptime_seconds gauge\ntwemproxy_uptime_seconds 12\n\
             # HELP etcd_is_leader From state\n# TYPE etcd_is_leader gauge\netcd_is_leader 0\n"
        );
    }

    #[test]
    fn arrays_by_index_and_by_wildcard() {
        let mapping = Mapping::parse(
            "metrics:\n  - {name: first, path: items.0.v}\n  - {name: each, path: items.*.v, labels: {i: $1}}\n",
        )
        .unwrap();
        let doc = serde_json::json!({"items": [{"v": 1}, {"v": true}]});
        let mut out = Exposition::default();
        assert_eq!(mapping.render(&doc, &mut out), 3);
        let text = out.finish();
        assert!(
            text.contains("first 1\n") && text.contains("each{i=\"1\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn bad_mappings_say_what_is_wrong() {
        for (text, needle) in [
            ("metrics: []", "at least one"),
            (
                "metrics:\n  - {name: 9bad, path: a}",
                "not a valid metric name",
            ),
            (
                "metrics:\n  - {name: m, path: a, labels: {x: $1}}",
                "uses $1",
            ),
            (
                "metrics:\n  - {name: m, path: '*', labels: {__x: $1}}",
                "not a valid label",
            ),
            (
                "metrics:\n  - {name: m, path: a, colour: red}",
                "unknown field",
            ),
        ] {
            let e = Mapping::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
