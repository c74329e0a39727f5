//! Syslog: RFC 3164 (`<PRI>Mmm dd hh:mm:ss host tag[pid]: msg`, PRI optional) and
//! RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`).

use crate::logs::parse::scan::Cur;
use crate::logs::parse::time::{self, Civil};
use crate::logs::parse::{level, Context, Format, Record};
use serde_json::{Map, Value};

/// `<PRI>`: facility * 8 + severity, at most 191.
fn pri(c: &mut Cur) -> Option<u8> {
    c.eat(b'<').then_some(())?;
    let p = c.num(1, 3)?;
    (c.eat(b'>') && p <= 191).then_some(p as u8)
}

fn with_pri(format: Format, pri: Option<u8>) -> Record {
    let mut rec = Record::new(format, String::new());
    if let Some(p) = pri {
        rec = rec.with_level(Some(level::from_syslog_severity(p & 7)));
        rec.put("facility", level::facility_name(p >> 3));
    }
    rec
}

fn put_pid(rec: &mut Record, pid: &str) {
    match pid.parse::<u64>() {
        Ok(n) => rec.put("pid", n),
        Err(_) => rec.put("procid", pid),
    }
}

/// RFC 3164. Without PRI the stamp is required; with PRI, a line whose stamp does not
/// parse still yields a record (level and facility from PRI, the rest as message).
pub(crate) fn parse_3164(line: &str, ctx: &Context) -> Option<Record> {
    let mut c = Cur::new(line);
    let p = if c.peek() == Some(b'<') {
        Some(pri(&mut c)?)
    } else {
        None
    };
    let mut rec = with_pri(Format::Syslog3164, p);
    let after_pri = c.i;
    match header_3164(&mut c, ctx) {
        Some((ts, host)) => {
            rec.ts = Some(ts);
            if !host.is_empty() {
                rec.put("host", host);
            }
        }
        None if p.is_some() => {
            c.i = after_pri;
            rec.msg = c.rest().to_string();
            return Some(rec);
        }
        None => return None,
    }
    let rest = c.rest();
    match tag(rest) {
        Some((app, pid, msg)) => {
            rec.put("app", app);
            if let Some(pid) = pid {
                put_pid(&mut rec, pid);
            }
            rec.msg = msg.to_string();
        }
        None => rec.msg = rest.to_string(),
    }
    Some(rec)
}

/// `Mmm dd hh:mm:ss host ` (day space-padded or not).
fn header_3164<'a>(c: &mut Cur<'a>, ctx: &Context) -> Option<(String, &'a str)> {
    let mo = c.month()?;
    c.eat(b' ').then_some(())?;
    c.eat(b' ');
    let d = c.num(1, 2)?;
    c.eat(b' ').then_some(())?;
    let (h, mi, s) = c.hms(false)?;
    let frac = c.frac(b".");
    c.eat(b' ').then_some(())?;
    let mark = c.i;
    let host = c.token();
    if host.ends_with(':') {
        // No hostname (as sent to a local socket): this token is the tag.
        c.i = mark;
        let ts = Civil {
            y: 0,
            mo,
            d,
            h,
            mi,
            s,
            frac,
        }
        .utc_inferring_year(ctx)?;
        return Some((ts, ""));
    }
    if host.is_empty() || !c.eat(b' ') {
        return None;
    }
    let ts = Civil {
        y: 0,
        mo,
        d,
        h,
        mi,
        s,
        frac,
    }
    .utc_inferring_year(ctx)?;
    Some((ts, host))
}

/// `app[pid]: msg` or `app: msg`.
fn tag(s: &str) -> Option<(&str, Option<&str>, &str)> {
    let end = s.find([':', '[', ' '])?;
    let app = &s[..end];
    if app.is_empty() || end > 48 {
        return None;
    }
    let mut rest = &s[end..];
    let mut pid = None;
    if let Some(r) = rest.strip_prefix('[') {
        let close = r.find(']')?;
        pid = Some(&r[..close]);
        rest = &r[close + 1..];
    }
    let msg = rest.strip_prefix(':')?;
    Some((app, pid, msg.strip_prefix(' ').unwrap_or(msg)))
}

/// RFC 5424; structured data goes to the `structured_data` field as
/// `{sd-id: {param: value}}` (a repeated param becomes an array).
pub(crate) fn parse_5424(line: &str, ctx: &Context) -> Option<Record> {
    let mut c = Cur::new(line);
    let p = pri(&mut c)?;
    c.lit("1 ").then_some(())?;
    let mut rec = with_pri(Format::Syslog5424, Some(p));
    let stamp = c.token();
    if stamp != "-" {
        rec.ts = Some(time::parse_rfc3339(stamp, ctx.utc_offset_seconds)?);
    }
    for key in ["host", "app", "procid", "msgid"] {
        c.eat(b' ').then_some(())?;
        let v = c.token();
        if v.is_empty() {
            return None;
        }
        if v == "-" {
            continue;
        }
        match key {
            "procid" => put_pid(&mut rec, v),
            _ => rec.put(key, v),
        }
    }
    c.eat(b' ').then_some(())?;
    if !c.eat(b'-') {
        let sd = structured_data(&mut c)?;
        rec.put("structured_data", sd);
    }
    if !c.at_end() {
        c.eat(b' ').then_some(())?;
    }
    let msg = c.rest();
    rec.msg = msg.strip_prefix('\u{feff}').unwrap_or(msg).to_string();
    Some(rec)
}

/// One or more `[id name="value" ...]` elements; values escape `"`, `\` and `]`.
fn structured_data(c: &mut Cur) -> Option<Value> {
    let mut sd = Map::new();
    while c.eat(b'[') {
        let id = c.rest().split([' ', ']']).next()?;
        if id.is_empty() {
            return None;
        }
        c.i += id.len();
        let mut params = Map::new();
        while c.eat(b' ') {
            let name = c.until(b'=')?;
            c.i += 1;
            c.eat(b'"').then_some(())?;
            let mut value = String::new();
            let mut chars = c.rest().char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()? {
                        (_, e @ ('"' | '\\' | ']')) => value.push(e),
                        (_, other) => {
                            value.push('\\');
                            value.push(other);
                        }
                    },
                    (_, ch) => value.push(ch),
                }
            };
            c.i += end + 1;
            match params.get_mut(name) {
                Some(Value::Array(a)) => a.push(value.into()),
                Some(prev) => *prev = Value::Array(vec![prev.take(), value.into()]),
                None => {
                    params.insert(name.to_string(), value.into());
                }
            }
        }
        c.eat(b']').then_some(())?;
        sd.insert(id.to_string(), Value::Object(params));
    }
    (!sd.is_empty()).then_some(Value::Object(sd))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_651_200; // 2026-11-26T00:00:00Z

    #[test]
    fn bsd_with_and_without_pri() {
        let ctx = Context::at(NOW);
        let r = parse_3164("<12>Nov 26 00:17:28 vm app[28519]: warn with pid", &ctx).unwrap();
        assert_eq!(r.ts.as_deref(), Some("2026-11-26T00:17:28Z"));
        assert_eq!(r.level.as_deref(), Some("warn"));
        assert_eq!(r.fields["facility"], "user");
        assert_eq!(r.fields["host"], "vm");
        assert_eq!(r.fields["app"], "app");
        assert_eq!(r.fields["pid"], 28519);
        assert_eq!(r.msg, "warn with pid");
        let r = parse_3164("Nov  6 10:00:00 db01 kernel: oom", &ctx).unwrap();
        assert_eq!(r.ts.as_deref(), Some("2026-11-06T10:00:00Z"));
        assert_eq!(r.level, None);
        assert_eq!(r.fields["app"], "kernel");
        let r = parse_3164("<30>Nov 26 10:00:00 systemd[1]: Started x.", &ctx).unwrap();
        assert!(r.fields.get("host").is_none());
        assert_eq!(r.fields["app"], "systemd");
        assert_eq!(r.msg, "Started x.");
        let r = parse_3164("Nov 26 10:00:00 db01 no tag here", &ctx).unwrap();
        assert_eq!(r.msg, "no tag here");
        assert!(r.fields.get("app").is_none());
    }

    #[test]
    fn bsd_lenient_with_pri_strict_without() {
        let ctx = Context::at(NOW);
        let r = parse_3164("<34>not a stamp", &ctx).unwrap();
        assert_eq!(r.level.as_deref(), Some("critical"));
        assert_eq!(r.fields["facility"], "auth");
        assert_eq!(r.msg, "not a stamp");
        assert!(parse_3164("Nov 26, 2026 12:15:11 AM x", &ctx).is_none());
        assert!(parse_3164("<192>Nov 26 00:00:00 h a: m", &ctx).is_none());
    }

    #[test]
    fn ietf_with_structured_data() {
        let line = r#"<131>1 2026-11-26T00:17:28.381390+00:00 vm app - ID47 [timeQuality tzKnown="1" isSynced="0"][ex@32473 iut="3" a="x\"y\]z" a="2"] with sd"#;
        let r = parse_5424(line, &Context::at(NOW)).unwrap();
        assert_eq!(r.ts.as_deref(), Some("2026-11-26T00:17:28.381390Z"));
        assert_eq!(r.level.as_deref(), Some("error"));
        assert_eq!(r.fields["facility"], "local0");
        assert_eq!(r.fields["msgid"], "ID47");
        assert!(r.fields.get("procid").is_none() && r.fields.get("pid").is_none());
        let sd = &r.fields["structured_data"];
        assert_eq!(sd["timeQuality"]["isSynced"], "0");
        assert_eq!(sd["ex@32473"]["a"], serde_json::json!(["x\"y]z", "2"]));
        assert_eq!(r.msg, "with sd");
    }

    #[test]
    fn ietf_nil_values_and_bom() {
        let r = parse_5424("<13>1 - - - 42 - - \u{feff}hi", &Context::at(NOW)).unwrap();
        assert_eq!(r.ts, None);
        assert_eq!(r.fields["pid"], 42);
        assert_eq!(r.msg, "hi");
        let r = parse_5424("<13>1 - h a - - -", &Context::at(NOW)).unwrap();
        assert_eq!(r.msg, "");
        assert!(parse_5424("<13>1 2026-13-01T00:00:00Z h a - - - x", &Context::at(NOW)).is_none());
        assert!(parse_5424("<13>1 - h a - - [unclosed x=\"1\"", &Context::at(NOW)).is_none());
    }
}
