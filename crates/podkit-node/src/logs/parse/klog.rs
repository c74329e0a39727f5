//! klog / glog: `Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg`, where L is one of
//! I, W, E, F. klog's structured form (`"message" key="value" ...`) is unpacked.

use crate::logs::parse::scan::{quoted, Cur};
use crate::logs::parse::time::Civil;
use crate::logs::parse::{logfmt, Context, Format, Record};

/// Parses one klog line; the year comes from the context.
pub(crate) fn parse(line: &str, ctx: &Context) -> Option<Record> {
    let mut c = Cur::new(line);
    let level = match c.peek()? {
        b'I' => "info",
        b'W' => "warn",
        b'E' => "error",
        b'F' => "fatal",
        _ => return None,
    };
    c.i += 1;
    let mo = c.num(2, 2)?;
    let d = c.num(2, 2)?;
    c.eat(b' ').then_some(())?;
    let (h, mi, s) = c.hms(false)?;
    let frac = c.frac(b".");
    (c.spaces() >= 1).then_some(())?;
    let thread: u64 = c.digits(20).parse().ok()?;
    c.eat(b' ').then_some(())?;
    let file = c.token();
    let (file, line_no) = file.strip_suffix(']')?.rsplit_once(':')?;
    let line_no: u64 = line_no.parse().ok()?;
    if file.is_empty() || !(c.at_end() || c.eat(b' ')) {
        return None;
    }
    let civil = Civil {
        y: 0,
        mo,
        d,
        h,
        mi,
        s,
        frac,
    };
    let mut rec = Record::new(Format::Klog, String::new()).with_level(Some(level));
    rec.ts = Some(civil.utc_inferring_year(ctx)?);
    rec.put("thread", thread);
    rec.put("file", file);
    rec.put("line", line_no);
    let msg = c.rest();
    match structured(msg) {
        Some((text, pairs)) => {
            rec.msg = text;
            for (k, v) in pairs {
                rec.put(k, v.map_or(serde_json::Value::Bool(true), Into::into));
            }
        }
        None => rec.msg = msg.to_string(),
    }
    Some(rec)
}

/// `"quoted message" k=v ...` as written by klog's InfoS/ErrorS.
fn structured(msg: &str) -> Option<(String, Vec<logfmt::Token<'_>>)> {
    let (text, rest) = quoted(msg)?;
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let toks = logfmt::tokens(rest)?;
    toks.iter()
        .all(|(_, v)| v.is_some())
        .then_some((text, toks))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_651_200; // 2026-11-26T00:00:00Z

    #[test]
    fn plain_line() {
        let r = parse(
            "I1126 00:15:11.123456   12345 main.go:42] Starting server",
            &Context::at(NOW),
        )
        .unwrap();
        assert_eq!(r.ts.as_deref(), Some("2026-11-26T00:15:11.123456Z"));
        assert_eq!(r.level.as_deref(), Some("info"));
        assert_eq!(r.msg, "Starting server");
        assert_eq!(r.fields["thread"], 12345);
        assert_eq!(r.fields["file"], "main.go");
        assert_eq!(r.fields["line"], 42);
    }

    #[test]
    fn structured_line_and_year_rollback() {
        let line = r#"E1231 23:59:59.000001       1 controller.go:116] "Pod status updated" pod="kube-system/dns" err="timed out" file="x""#;
        let r = parse(line, &Context::at(NOW)).unwrap();
        assert_eq!(r.ts.as_deref(), Some("2025-12-31T23:59:59.000001Z"));
        assert_eq!(r.level.as_deref(), Some("error"));
        assert_eq!(r.msg, "Pod status updated");
        assert_eq!(r.fields["pod"], "kube-system/dns");
        assert_eq!(r.fields["err"], "timed out");
        assert_eq!(r.fields["_file"], "x");
    }

    #[test]
    fn rejects_near_misses() {
        let ctx = Context::at(NOW);
        assert!(parse("I1126 00:15:11.123456 main.go:42] no thread", &ctx).is_none());
        assert!(parse("Info 1126 00:15:11", &ctx).is_none());
        assert!(parse("I1126 00:15:11.1 7 main.go] no line", &ctx).is_none());
        assert!(parse("I1332 00:15:11.1 7 main.go:1] bad date", &ctx).is_none());
    }
}
