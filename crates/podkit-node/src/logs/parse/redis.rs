//! Redis server log: `pid:R dd Mon yyyy hh:mm:ss.mmm L msg`, with role R one of
//! X (sentinel), C (child), S (replica), M (master) and level L one of
//! `.` (debug), `-` (verbose), `*` (notice), `#` (warning).

use crate::logs::parse::scan::Cur;
use crate::logs::parse::time::Civil;
use crate::logs::parse::{Context, Format, Record};

/// Parses one Redis log line; the zone comes from the context.
pub(crate) fn parse(line: &str, ctx: &Context) -> Option<Record> {
    let mut c = Cur::new(line);
    let pid: u64 = c.digits(20).parse().ok()?;
    c.eat(b':').then_some(())?;
    let role = match c.peek()? {
        b'X' => "sentinel",
        b'C' => "child",
        b'S' => "replica",
        b'M' => "master",
        _ => return None,
    };
    c.i += 1;
    c.eat(b' ').then_some(())?;
    let d = c.num(1, 2)?;
    c.eat(b' ').then_some(())?;
    let mo = c.month()?;
    c.eat(b' ').then_some(())?;
    let y = i64::from(c.num(4, 4)?);
    c.eat(b' ').then_some(())?;
    let (h, mi, s) = c.hms(false)?;
    let frac = c.frac(b".");
    c.eat(b' ').then_some(())?;
    let level = match c.peek()? {
        b'.' => "debug",
        b'-' => "info",
        b'*' => "notice",
        b'#' => "warn",
        _ => return None,
    };
    c.i += 1;
    if !(c.at_end() || c.eat(b' ')) {
        return None;
    }
    let mut rec = Record::new(Format::Redis, c.rest().to_string()).with_level(Some(level));
    rec.ts = Some(
        Civil {
            y,
            mo,
            d,
            h,
            mi,
            s,
            frac,
        }
        .utc(ctx.utc_offset_seconds)?,
    );
    rec.put("pid", pid);
    rec.put("role", role);
    Some(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_line() {
        let r = parse(
            "28490:M 26 Nov 2026 00:17:23.249 * Ready to accept connections",
            &Context::at(0),
        )
        .unwrap();
        assert_eq!(r.ts.as_deref(), Some("2026-11-26T00:17:23.249Z"));
        assert_eq!(r.level.as_deref(), Some("notice"));
        assert_eq!(r.msg, "Ready to accept connections");
        assert_eq!(r.fields["pid"], 28490);
        assert_eq!(r.fields["role"], "master");
    }

    #[test]
    fn zone_from_context() {
        let ctx = Context {
            now_unix: 0,
            utc_offset_seconds: -5 * 3600,
        };
        let r = parse(
            "7:C 01 Jan 2026 22:00:00.000 # Background saving error",
            &ctx,
        )
        .unwrap();
        assert_eq!(r.ts.as_deref(), Some("2026-01-02T03:00:00.000Z"));
        assert_eq!(r.level.as_deref(), Some("warn"));
        assert_eq!(r.fields["role"], "child");
    }

    #[test]
    fn rejects_near_misses() {
        let ctx = Context::at(0);
        assert!(parse("28490:Q 26 Nov 2026 00:17:23.249 * x", &ctx).is_none());
        assert!(parse("28490:M 26 Nov 2026 00:17:23.249 ! x", &ctx).is_none());
        assert!(parse("[28490] 26 Nov 00:17:23.249 * x", &ctx).is_none());
    }
}
