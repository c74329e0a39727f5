//! Runs tests/log_corpus.txt: real lines from redis-server, util-linux logger, nginx,
//! java.util.logging and log4j, plus hand-written lines from documented layouts.

use podkit_node::logs::parse::{Context, Format, Parser, Record};
use serde_json::Value;

/// 2026-11-26T12:00:00Z, the day the real lines were captured.
const NOW: i64 = 1_795_694_400;

struct Case {
    line_no: usize,
    format: String,
    first_line: String,
    expect: Vec<Value>,
}

fn load() -> (Vec<Case>, Vec<String>) {
    let text = include_str!("log_corpus.txt");
    let mut cases: Vec<Case> = Vec::new();
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let (tag, rest) = raw
            .split_once('\t')
            .unwrap_or_else(|| panic!("line {}: no tab", i + 1));
        match tag {
            "?" => {
                let v =
                    serde_json::from_str(rest).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
                cases.last_mut().expect("? before any case").expect.push(v);
            }
            "+" => lines.push(rest.to_string()),
            _ => {
                cases.push(Case {
                    line_no: i + 1,
                    format: tag.into(),
                    first_line: rest.into(),
                    expect: vec![],
                });
                lines.push(rest.to_string());
            }
        }
    }
    (cases, lines)
}

#[test]
fn corpus_detects_and_normalizes() {
    let (cases, lines) = load();
    let mut p = Parser::new(Format::Auto, Context::at(NOW));
    let mut recs: Vec<Record> = lines.iter().flat_map(|l| p.feed(l)).collect();
    recs.extend(p.flush());
    assert_eq!(recs.len(), cases.len(), "one record per case");
    let mut per_format = std::collections::BTreeMap::new();
    for (case, rec) in cases.iter().zip(&recs) {
        let at = format!("corpus line {}: {:?}", case.line_no, case.first_line);
        assert_eq!(rec.format.name(), case.format, "{at}: {rec:?}");
        let json = rec.to_json("corpus");
        assert_eq!(json["source"], "corpus", "{at}");
        assert_eq!(json["format"], case.format, "{at}");
        if let Some(level) = &rec.level {
            let known = [
                "trace", "debug", "info", "notice", "warn", "error", "critical", "fatal",
            ];
            assert!(known.contains(&level.as_str()), "{at}: level {level}");
        }
        if let Some(ts) = &rec.ts {
            assert!(
                ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "{at}: ts {ts}"
            );
        }
        for exp in &case.expect {
            for (k, v) in exp.as_object().unwrap() {
                assert_eq!(json.get(k), Some(v), "{at}: key {k} in {json}");
            }
        }
        *per_format.entry(case.format.clone()).or_insert(0) += 1;
    }
    println!("corpus records per format: {per_format:?}");
    for f in [
        "redis",
        "syslog3164",
        "syslog5424",
        "combined",
        "common",
        "jul",
        "log4j",
        "klog",
        "json",
        "logfmt",
        "unparsed",
    ] {
        assert!(per_format.contains_key(f), "corpus has no {f} case");
    }
}

/// Each case's first line also parses as its format when that format is fixed.
#[test]
fn corpus_fixed_formats_agree() {
    let (cases, _) = load();
    for case in cases.iter().filter(|c| c.format != "unparsed") {
        let format: Format = case.format.parse().unwrap();
        let mut p = Parser::new(format, Context::at(NOW));
        let mut recs = p.feed(&case.first_line);
        recs.extend(p.flush());
        assert_eq!(recs.len(), 1, "line {}", case.line_no);
        assert_eq!(
            recs[0].format, format,
            "line {}: {:?}",
            case.line_no, case.first_line
        );
    }
}

/// Truncated and mangled corpus lines never panic, in any format, and every
/// line still comes out in some record.
#[test]
fn corpus_prefixes_never_panic() {
    let (_, lines) = load();
    let formats = [
        "auto", "json", "logfmt", "klog", "rfc3164", "rfc5424", "common", "combined", "jul",
        "log4j", "redis",
    ];
    for name in formats {
        let format: Format = name.parse().unwrap();
        let mut p = Parser::new(format, Context::at(NOW));
        let mut fed = 0usize;
        let mut got = 0usize;
        for line in &lines {
            let cuts = line.char_indices().map(|(i, _)| i).chain([line.len()]);
            for cut in cuts {
                for variant in [
                    line[..cut].to_string(),
                    format!("{}é\u{202f}{}", &line[..cut], &line[cut..]),
                ] {
                    fed += 1;
                    got += p
                        .feed(&variant)
                        .iter()
                        .map(|r| 1 + r.msg.matches('\n').count())
                        .sum::<usize>();
                }
            }
        }
        got += p.flush().map_or(0, |r| 1 + r.msg.matches('\n').count());
        // JUL pairs two lines into one record and trailing blank lines are trimmed.
        assert!(got <= fed && got * 2 >= fed, "{name}: fed {fed}, got {got}");
    }
}
