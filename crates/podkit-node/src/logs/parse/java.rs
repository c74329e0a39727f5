//! Java logging: java.util.logging's default `SimpleFormatter` (a header line
//! `Nov 26, 2026 12:15:11 AM com.example.Main main` then `INFO: message`), log4j's
//! default layouts (`%d [%t] %-5level %logger{36} - %msg%n`, log4j2's default
//! `%d{HH:mm:ss.SSS} ...` and log4j 1.x's TTCC `%r [%t] %p %c %x - %m%n`), and the
//! continuation lines (stack traces) that follow their records.

use crate::logs::parse::scan::Cur;
use crate::logs::parse::time::{self, Civil};
use crate::logs::parse::{level, Context, Format, Record};

/// JUL header line: `Mon d, yyyy h:mm:ss AM|PM source-class [method]`.
/// The record's message comes from the following level line.
pub(crate) fn parse_jul_header(line: &str, ctx: &Context) -> Option<Record> {
    let mut c = Cur::new(line);
    let mo = c.month()?;
    c.eat(b' ').then_some(())?;
    let d = c.num(1, 2)?;
    c.lit(", ").then_some(())?;
    let y = i64::from(c.num(4, 4)?);
    c.eat(b' ').then_some(())?;
    let (h12, mi, s) = c.hms(true)?;
    // Newer JDKs (CLDR 42+) put a narrow no-break space before the AM/PM marker.
    [" ", "\u{202f}", "\u{a0}"]
        .iter()
        .any(|sep| c.lit(sep))
        .then_some(())?;
    let pm = if c.lit("PM") {
        true
    } else {
        c.lit("AM").then_some(false)?
    };
    c.eat(b' ').then_some(())?;
    let source = c.rest().trim_end();
    if source.is_empty() || !(1..=12).contains(&h12) {
        return None;
    }
    let h = h12 % 12 + if pm { 12 } else { 0 };
    let mut rec = Record::new(Format::JavaUtil, String::new());
    rec.ts = Some(
        Civil {
            y,
            mo,
            d,
            h,
            mi,
            s,
            frac: "",
        }
        .utc(ctx.utc_offset_seconds)?,
    );
    match source.split_once(' ') {
        Some((logger, method)) => {
            rec.put("logger", logger);
            rec.put("method", method);
        }
        None => rec.put("logger", source),
    }
    Some(rec)
}

/// The JUL line after a header: `LEVEL: message`. Fills `rec` and returns true when it matches.
pub(crate) fn jul_level_line(line: &str, rec: &mut Record) -> bool {
    let Some((name, msg)) = line.split_once(':') else {
        return false;
    };
    if name.is_empty() || name.len() > 20 || !name.bytes().all(|b| b.is_ascii_uppercase()) {
        return false;
    }
    if !(msg.is_empty() || msg.starts_with(' ')) {
        return false;
    }
    match level::normalize(name) {
        Some(l) => rec.level = Some(l.to_string()),
        None => rec.put("level_name", name),
    }
    rec.msg = msg.strip_prefix(' ').unwrap_or(msg).to_string();
    true
}

/// log4j: `<stamp> [thread] LEVEL logger [ndc] - message`, where the stamp is a date-time
/// (`yyyy-MM-dd HH:mm:ss,SSS`), a time of day (`HH:mm:ss.SSS`) or milliseconds since start.
pub(crate) fn parse_log4j(line: &str, ctx: &Context) -> Option<Record> {
    let mut c = Cur::new(line);
    let mut rec = Record::new(Format::Log4j, String::new());
    let b = line.as_bytes();
    if b.len() > 10 && b[4] == b'-' {
        let civil = time::date_time(&mut c, b".,")?;
        rec.ts = Some(civil.utc(ctx.utc_offset_seconds)?);
    } else if b.len() > 8 && b[2] == b':' {
        let (h, mi, s) = c.hms(false)?;
        let frac = c.frac(b".,");
        rec.ts = Some(
            Civil {
                h,
                mi,
                s,
                frac,
                ..Default::default()
            }
            .utc_inferring_date(ctx)?,
        );
    } else {
        let ms: u64 = c.digits(20).parse().ok()?;
        rec.put("elapsed_ms", ms);
    }
    c.lit(" [").then_some(())?;
    let thread_len = c.rest().find("] ")?;
    let thread = &c.rest()[..thread_len];
    c.i += thread_len + 2;
    let lvl = c.token();
    let norm = match lvl {
        "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR" | "FATAL" => level::normalize(lvl),
        _ => return None,
    };
    (c.spaces() >= 1).then_some(())?;
    let logger = c.token();
    if logger.is_empty() || logger == "-" {
        return None;
    }
    c.spaces();
    let rest = c.rest();
    let (ndc, msg) = if rest == "-" {
        ("", "")
    } else if let Some(m) = rest.strip_prefix("- ") {
        ("", m)
    } else {
        let (ndc, m) = rest.split_once(" - ")?;
        (ndc.trim(), m)
    };
    rec = rec.with_level(norm);
    rec.msg = msg.to_string();
    rec.put("thread", thread);
    rec.put("logger", logger);
    if !ndc.is_empty() {
        rec.put("ndc", ndc);
    }
    Some(rec)
}

/// Whether a line continues the previous Java record: blank, indented (`\tat ...`),
/// `Caused by:`/`Suppressed:`, or an exception header like `java.lang.Foo: text`.
pub(crate) fn is_continuation(line: &str) -> bool {
    if line.trim().is_empty() || line.starts_with([' ', '\t']) {
        return true;
    }
    if line.starts_with("Caused by: ") || line.starts_with("Suppressed: ") {
        return true;
    }
    let (class, after) = line.split_once(':').unwrap_or((line, ""));
    let segments: Vec<&str> = class.split('.').collect();
    let ident = |s: &str| {
        let mut b = s.bytes();
        b.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == b'_' || f == b'$')
            && b.all(|x| x.is_ascii_alphanumeric() || x == b'_' || x == b'$')
    };
    segments.len() >= 2
        && segments.iter().all(|s| ident(s))
        && segments
            .last()
            .is_some_and(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
        && (after.is_empty() || after.starts_with(' '))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::parse::Parser;

    const NOW: i64 = 1_795_651_200; // 2026-11-26T00:00:00Z

    fn feed_all(format: crate::logs::parse::Format, lines: &[&str]) -> Vec<Record> {
        let mut p = Parser::new(format, Context::at(NOW + 3600));
        let mut out: Vec<Record> = lines.iter().flat_map(|l| p.feed(l)).collect();
        out.extend(p.flush());
        out
    }

    #[test]
    fn jul_two_lines_with_stack_trace() {
        let recs = feed_all(
            crate::logs::parse::Format::Auto,
            &[
                "Nov 26, 2026 12:17:40 AM com.example.Main main",
                "SEVERE: request failed",
                "java.lang.IllegalStateException: bad input",
                "\tat com.example.Main.parse(Main.java:21)",
                "Caused by: java.lang.NumberFormatException: For input string: \"x\"",
                "\t... 1 more",
                "",
                "Nov 26, 2026 1:05:00 PM com.example.Main$Worker run",
                "FINER: job done",
            ],
        );
        assert_eq!(recs.len(), 2);
        let r = &recs[0];
        assert_eq!(r.ts.as_deref(), Some("2026-11-26T00:17:40Z"));
        assert_eq!(r.level.as_deref(), Some("error"));
        assert!(r
            .msg
            .starts_with("request failed\njava.lang.IllegalStateException: bad input\n\tat "));
        assert!(r.msg.ends_with("\t... 1 more"));
        assert_eq!(r.fields["logger"], "com.example.Main");
        assert_eq!(r.fields["method"], "main");
        assert_eq!(recs[1].ts.as_deref(), Some("2026-11-26T13:05:00Z"));
        assert_eq!(recs[1].level.as_deref(), Some("trace"));
        assert_eq!(recs[1].fields["logger"], "com.example.Main$Worker");
    }

    #[test]
    fn jul_header_without_message_line() {
        let mut p = Parser::new(crate::logs::parse::Format::JavaUtil, Context::at(NOW));
        assert!(p
            .feed("Nov 26, 2026 12:00:00\u{202f}PM com.example.Main")
            .is_empty());
        let recs = p.feed("not a level line");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].format, crate::logs::parse::Format::JavaUtil);
        assert_eq!(recs[0].ts.as_deref(), Some("2026-11-26T12:00:00Z"));
        assert_eq!(recs[0].msg, "");
        assert_eq!(recs[1].format, crate::logs::parse::Format::Unparsed);
        assert!(p.feed("Nov 26, 2026 12:00:00 AM x").is_empty());
        assert_eq!(p.flush().unwrap().fields["logger"], "x");
    }

    #[test]
    fn log4j_layouts() {
        let ctx = Context::at(NOW + 3600);
        let r = parse_log4j(
            "2026-11-26 00:19:25,609 [main] DEBUG com.example.App - debug detail - with a dash",
            &ctx,
        )
        .unwrap();
        assert_eq!(r.ts.as_deref(), Some("2026-11-26T00:19:25.609Z"));
        assert_eq!(r.level.as_deref(), Some("debug"));
        assert_eq!(r.msg, "debug detail - with a dash");
        assert_eq!(r.fields["thread"], "main");
        assert_eq!(r.fields["logger"], "com.example.App");
        let r = parse_log4j("00:19:31.606 [pool-1 thread] ERROR c.e.App - boom", &ctx).unwrap();
        assert_eq!(r.ts.as_deref(), Some("2026-11-26T00:19:31.606Z"));
        assert_eq!(r.fields["thread"], "pool-1 thread");
        let r = parse_log4j("23:59:59.000 [main] WARN  a.B - late", &ctx).unwrap();
        assert_eq!(r.ts.as_deref(), Some("2026-11-25T23:59:59.000Z"));
        let r = parse_log4j(
            "262 [main] DEBUG org.apache.log4j.examples.SortAlgo.OUTER i=1 - Outer loop.",
            &ctx,
        )
        .unwrap();
        assert_eq!(r.ts, None);
        assert_eq!(r.fields["elapsed_ms"], 262);
        assert_eq!(r.fields["ndc"], "i=1");
        assert_eq!(r.msg, "Outer loop.");
        let r = parse_log4j("0 [main] INFO com.example.Sort  - Populating", &ctx).unwrap();
        assert_eq!(r.fields["logger"], "com.example.Sort");
        assert!(r.fields.get("ndc").is_none());
        assert!(parse_log4j("0 [main] NOTICE a.B - x", &ctx).is_none());
        assert!(parse_log4j("2026-11-26 00:19:25,609 main INFO a.B - x", &ctx).is_none());
    }

    #[test]
    fn log4j_stack_trace_then_next_record() {
        let recs = feed_all(
            crate::logs::parse::Format::Log4j,
            &[
                "2026-11-26 00:19:25,609 [main] ERROR com.example.App - could not parse config",
                "java.lang.NumberFormatException: For input string: \"zz\"",
                "\tat java.lang.Integer.parseInt(Integer.java:668) ~[?:?]",
                "2026-11-26 00:19:25,637 [main] INFO  com.example.App - next",
                "plain text",
            ],
        );
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].msg.lines().count(), 3);
        assert_eq!(recs[1].msg, "next");
        assert_eq!(recs[2].format, crate::logs::parse::Format::Unparsed);
    }

    #[test]
    fn continuation_shapes() {
        assert!(is_continuation(
            "java.lang.IllegalStateException: bad input"
        ));
        assert!(is_continuation("com.example.MyError"));
        assert!(is_continuation("\tat x.Y.z(Y.java:1)"));
        assert!(is_continuation(""));
        assert!(!is_continuation("example.com: up"));
        assert!(!is_continuation("Nov 26 00:00:00 h a: m"));
        assert!(!is_continuation("level=info msg=x"));
    }
}
