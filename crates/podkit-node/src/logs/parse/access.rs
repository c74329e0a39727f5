//! Apache / nginx access logs:
//! `host ident user [dd/Mon/yyyy:hh:mm:ss zone] "request" status bytes` (Common),
//! optionally followed by `"referer" "user-agent"` (Combined) and further fields.

use crate::logs::parse::scan::{quoted, Cur};
use crate::logs::parse::time::{self, Civil};
use crate::logs::parse::{Context, Format, Record};

/// Parses a common or combined line; the record's format says which matched.
pub(crate) fn parse(line: &str, _ctx: &Context) -> Option<Record> {
    let mut c = Cur::new(line);
    let host = c.token();
    if host.is_empty() || host.contains(['"', '[']) {
        return None;
    }
    c.eat(b' ').then_some(())?;
    let ident = c.token();
    c.eat(b' ').then_some(())?;
    let user = c.token();
    c.lit(" [").then_some(())?;
    let ts = stamp(&mut c)?;
    c.lit("] ").then_some(())?;
    let (request, rest) = quoted(c.rest())?;
    c = Cur::new(rest);
    c.eat(b' ').then_some(())?;
    let status = c.num(3, 3)?;
    c.eat(b' ').then_some(())?;
    let bytes = c.token();
    let bytes: u64 = if bytes == "-" { 0 } else { bytes.parse().ok()? };

    let mut rec = Record::new(Format::Common, request.clone());
    rec.ts = Some(ts);
    rec.put("remote_addr", host);
    if ident != "-" && !ident.is_empty() {
        rec.put("ident", ident);
    }
    if user != "-" && !user.is_empty() {
        rec.put("user", user);
    }
    let parts: Vec<&str> = request.split(' ').collect();
    match parts[..] {
        [method, path, protocol] if is_method(method) => {
            rec.put("method", method);
            rec.put("path", path);
            rec.put("protocol", protocol);
        }
        [method, path] if is_method(method) => {
            rec.put("method", method);
            rec.put("path", path);
        }
        _ => {}
    }
    rec.put("status", status);
    rec.put("bytes", bytes);
    if c.at_end() {
        return Some(rec);
    }
    // Combined: " \"referer\" \"user-agent\"", then anything a custom format appends.
    let (referer, rest) = quoted(c.rest().strip_prefix(' ')?)?;
    let (agent, rest) = quoted(rest.strip_prefix(' ')?)?;
    rec.format = Format::Combined;
    if referer != "-" {
        rec.put("referer", referer);
    }
    if agent != "-" {
        rec.put("user_agent", agent);
    }
    let extra = rest.trim();
    if !extra.is_empty() {
        rec.put("extra", extra);
    }
    Some(rec)
}

fn is_method(m: &str) -> bool {
    !m.is_empty()
        && m.bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

/// `dd/Mon/yyyy:hh:mm:ss +zzzz`.
fn stamp(c: &mut Cur) -> Option<String> {
    let d = c.num(2, 2)?;
    c.eat(b'/').then_some(())?;
    let mo = c.month()?;
    c.eat(b'/').then_some(())?;
    let y = i64::from(c.num(4, 4)?);
    c.eat(b':').then_some(())?;
    let (h, mi, s) = c.hms(false)?;
    let frac = c.frac(b".");
    c.eat(b' ').then_some(())?;
    let off = time::offset(c)?;
    Civil {
        y,
        mo,
        d,
        h,
        mi,
        s,
        frac,
    }
    .utc(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Option<Record> {
        parse(line, &Context::at(0))
    }

    #[test]
    fn apache_common() {
        let r = p(r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#).unwrap();
        assert_eq!(r.format, Format::Common);
        assert_eq!(r.ts.as_deref(), Some("2000-10-10T20:55:36Z"));
        assert_eq!(r.msg, "GET /apache_pb.gif HTTP/1.0");
        assert_eq!(r.fields["user"], "frank");
        assert_eq!(r.fields["method"], "GET");
        assert_eq!(r.fields["path"], "/apache_pb.gif");
        assert_eq!(r.fields["protocol"], "HTTP/1.0");
        assert_eq!(r.fields["status"], 200);
        assert_eq!(r.fields["bytes"], 2326);
        assert!(r.fields.get("ident").is_none());
    }

    #[test]
    fn combined_with_escapes_and_extra() {
        let line = r#"::1 - - [26/Nov/2026:00:17:31 +0100] "GET /q?a=\"b\" HTTP/1.1" 304 - "http://x/" "UA \x22q\x22" "10.0.0.1""#;
        let r = p(line).unwrap();
        assert_eq!(r.format, Format::Combined);
        assert_eq!(r.ts.as_deref(), Some("2026-11-25T23:17:31Z"));
        assert_eq!(r.fields["path"], r#"/q?a="b""#);
        assert_eq!(r.fields["bytes"], 0);
        assert_eq!(r.fields["referer"], "http://x/");
        assert_eq!(r.fields["user_agent"], r#"UA "q""#);
        assert_eq!(r.fields["extra"], r#""10.0.0.1""#);
    }

    #[test]
    fn rejects_near_misses() {
        assert!(p(r#"127.0.0.1 - - [26/Nov/2026:00:17:31] "GET / HTTP/1.1" 200 3"#).is_none());
        assert!(
            p(r#"127.0.0.1 - - [26/Nov/2026:00:17:31 +0000] "GET / HTTP/1.1" 2000 3"#).is_none()
        );
        assert!(p(
            r#"127.0.0.1 - - [26/Nov/2026:00:17:31 +0000] "GET / HTTP/1.1" 200 3 "ref-only""#
        )
        .is_none());
        assert!(p("a b c d").is_none());
    }
}
