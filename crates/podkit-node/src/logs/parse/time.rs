//! Calendar helpers: civil dates <-> days since 1970-01-01 (proleptic Gregorian),
//! RFC 3339 parsing and UTC formatting, and year inference for year-less stamps.

use crate::logs::parse::scan::Cur;
use crate::logs::parse::Context;

const SECS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    // Shift the year to start in March so the leap day is the year's last day.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // 0..=399
    let mp = (i64::from(m) + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // 0..=365
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // 0..=146096
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub(crate) fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

pub(crate) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// "Jan".."Dec" (case-insensitive) to 1..=12.
pub(crate) fn month_from_abbr(s: &str) -> Option<u32> {
    const M: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    M.iter()
        .position(|m| m.eq_ignore_ascii_case(s))
        .map(|i| i as u32 + 1)
}

/// A wall-clock stamp as read from a line; `frac` holds the fraction's digits as given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Civil<'a> {
    pub y: i64,
    pub mo: u32,
    pub d: u32,
    pub h: u32,
    pub mi: u32,
    pub s: u32,
    pub frac: &'a str,
}

impl Civil<'_> {
    fn valid(&self) -> bool {
        (1..=9999).contains(&self.y)
            && (1..=12).contains(&self.mo)
            && self.d >= 1
            && self.d <= days_in_month(self.y, self.mo)
            && self.h < 24
            && self.mi < 60
            && self.s <= 60
    }

    /// Unix seconds of this wall-clock time at `offset` seconds east of UTC.
    pub fn unix(&self, offset: i32) -> Option<i64> {
        self.valid().then(|| {
            days_from_civil(self.y, self.mo, self.d) * SECS_PER_DAY
                + i64::from(self.h * 3600 + self.mi * 60 + self.s)
                - i64::from(offset)
        })
    }

    /// RFC 3339 UTC text of this wall-clock time at `offset`.
    pub fn utc(&self, offset: i32) -> Option<String> {
        Some(format_utc(self.unix(offset)?, self.frac))
    }

    /// Fills in the year (see [`infer_year`]) and renders it as UTC.
    pub fn utc_inferring_year(mut self, ctx: &Context) -> Option<String> {
        self.y = infer_year(&self, ctx)?;
        self.utc(ctx.utc_offset_seconds)
    }

    /// Fills in the date for a time-of-day stamp: today in the assumed zone,
    /// or yesterday when that would be more than an hour in the future.
    pub fn utc_inferring_date(mut self, ctx: &Context) -> Option<String> {
        let off = ctx.utc_offset_seconds;
        let today = (ctx.now_unix + i64::from(off)).div_euclid(SECS_PER_DAY);
        for day in [today, today - 1] {
            (self.y, self.mo, self.d) = civil_from_days(day);
            if self.unix(off)? <= ctx.now_unix + 3600 {
                break;
            }
        }
        self.utc(off)
    }
}

/// Formats unix seconds as `YYYY-MM-DDThh:mm:ss[.frac]Z`.
pub(crate) fn format_utc(unix: i64, frac: &str) -> String {
    let (y, mo, d) = civil_from_days(unix.div_euclid(SECS_PER_DAY));
    let sod = unix.rem_euclid(SECS_PER_DAY);
    let dot = if frac.is_empty() { "" } else { "." };
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}{dot}{frac}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// The year for a stamp without one: the current year in the assumed zone,
/// or the previous one when the stamp would then be more than a day in the future.
pub(crate) fn infer_year(c: &Civil, ctx: &Context) -> Option<i64> {
    let off = ctx.utc_offset_seconds;
    let (now_y, _, _) = civil_from_days((ctx.now_unix + i64::from(off)).div_euclid(SECS_PER_DAY));
    let mut probe = c.clone();
    let mut first = true;
    // Feb 29 walks back to the latest leap year.
    for y in (now_y - 8..=now_y).rev() {
        probe.y = y;
        if let Some(t) = probe.unix(off) {
            if !first || t <= ctx.now_unix + SECS_PER_DAY {
                return Some(y);
            }
            first = false;
        } else if !(c.mo == 2 && c.d == 29) {
            return None;
        }
    }
    None
}

/// Parses `+hh:mm`, `+hhmm`, `+hh`, `Z`/`z` into seconds east of UTC, consuming it.
pub(crate) fn offset(c: &mut Cur) -> Option<i32> {
    if c.eat(b'Z') || c.eat(b'z') {
        return Some(0);
    }
    let sign = match c.peek()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    c.i += 1;
    let h = c.num(2, 2)?;
    c.eat(b':');
    let m = c.num(2, 2).unwrap_or(0);
    (h < 24 && m < 60).then(|| sign * (h as i32 * 3600 + m as i32 * 60))
}

/// Reads `YYYY-MM-DD[T ]hh:mm:ss[.frac]` leaving the cursor after it.
pub(crate) fn date_time<'a>(c: &mut Cur<'a>, frac_seps: &[u8]) -> Option<Civil<'a>> {
    let y = i64::from(c.num(4, 4)?);
    c.eat(b'-').then_some(())?;
    let mo = c.num(2, 2)?;
    c.eat(b'-').then_some(())?;
    let d = c.num(2, 2)?;
    if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
        return None;
    }
    let (h, mi, s) = c.hms(false)?;
    let frac = c.frac(frac_seps);
    Some(Civil {
        y,
        mo,
        d,
        h,
        mi,
        s,
        frac,
    })
}

/// Parses a whole RFC 3339 timestamp (also accepting a space for `T`, `+hhmm`
/// offsets and no zone, which then means `default_offset`) into UTC text.
pub(crate) fn parse_rfc3339(s: &str, default_offset: i32) -> Option<String> {
    let mut c = Cur::new(s.trim());
    let civil = date_time(&mut c, b".,")?;
    let off = if c.at_end() {
        default_offset
    } else {
        offset(&mut c)?
    };
    c.at_end().then_some(())?;
    civil.utc(off)
}

/// Interprets the text of a non-negative number as unix time, choosing its unit
/// by magnitude (seconds, millis, micros or nanos) and keeping its digits.
pub(crate) fn from_number_text(s: &str) -> Option<String> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let shift = match int.len() {
        0..=11 => 0,
        12..=14 => 3,
        15..=17 => 6,
        18..=20 => 9,
        _ => return None,
    };
    let (secs, sub) = int.split_at(int.len() - shift);
    let secs: i64 = if secs.is_empty() {
        0
    } else {
        secs.parse().ok()?
    };
    if secs > 253_402_300_799 {
        return None;
    }
    Some(format_utc(secs, &format!("{sub}{frac}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(now: &str) -> Context {
        let mut c = Cur::new(now);
        let civ = date_time(&mut c, b".").unwrap();
        Context {
            now_unix: civ.unix(0).unwrap(),
            utc_offset_seconds: 0,
        }
    }

    #[test]
    fn civil_round_trip() {
        for (y, m, d, days) in [
            (1970, 1, 1, 0),
            (2000, 3, 1, 11_017),
            (1969, 12, 31, -1),
            (2025, 11, 26, 20_418),
        ] {
            assert_eq!(days_from_civil(y, m, d), days);
            assert_eq!(civil_from_days(days), (y, m, d));
        }
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(
            parse_rfc3339("2026-11-26T00:17:28.379508+00:00", 0).unwrap(),
            "2026-11-26T00:17:28.379508Z"
        );
        assert_eq!(
            parse_rfc3339("2026-11-26T01:17:28+01:00", 0).unwrap(),
            "2026-11-26T00:17:28Z"
        );
        assert_eq!(
            parse_rfc3339("2026-01-01 00:00:00.5-0130", 0).unwrap(),
            "2026-01-01T01:30:00.5Z"
        );
        assert_eq!(
            parse_rfc3339("2026-11-26T00:00:00", 3600).unwrap(),
            "2026-11-25T23:00:00Z"
        );
        assert!(parse_rfc3339("2026-02-30T00:00:00Z", 0).is_none());
        assert!(parse_rfc3339("2026-11-26T00:00:00Zjunk", 0).is_none());
    }

    #[test]
    fn numbers() {
        assert_eq!(
            from_number_text("1764116111").unwrap(),
            "2025-11-26T00:15:11Z"
        );
        assert_eq!(
            from_number_text("1764116111.25").unwrap(),
            "2025-11-26T00:15:11.25Z"
        );
        assert_eq!(
            from_number_text("1764116111123").unwrap(),
            "2025-11-26T00:15:11.123Z"
        );
        assert_eq!(
            from_number_text("1764116111123456789").unwrap(),
            "2025-11-26T00:15:11.123456789Z"
        );
        assert!(from_number_text("-5").is_none());
    }

    #[test]
    fn year_inference() {
        let dec31 = Civil {
            mo: 12,
            d: 31,
            h: 23,
            mi: 59,
            s: 59,
            ..Default::default()
        };
        assert_eq!(infer_year(&dec31, &ctx("2027-01-01T00:30:00")), Some(2026));
        assert_eq!(infer_year(&dec31, &ctx("2026-12-31T00:30:00")), Some(2026));
        let jan1 = Civil {
            mo: 1,
            d: 1,
            ..Default::default()
        };
        assert_eq!(infer_year(&jan1, &ctx("2026-12-31T00:30:00")), Some(2026));
        let feb29 = Civil {
            mo: 2,
            d: 29,
            ..Default::default()
        };
        assert_eq!(infer_year(&feb29, &ctx("2027-03-01T00:00:00")), Some(2024));
        let bad = Civil {
            mo: 4,
            d: 31,
            ..Default::default()
        };
        assert_eq!(infer_year(&bad, &ctx("2027-03-01T00:00:00")), None);
    }

    #[test]
    fn date_inference() {
        let t = Civil {
            h: 23,
            mi: 0,
            s: 0,
            frac: "5",
            ..Default::default()
        };
        let c = ctx("2026-11-26T00:10:00");
        assert_eq!(t.utc_inferring_date(&c).unwrap(), "2026-11-25T23:00:00.5Z");
        let t = Civil {
            h: 0,
            mi: 5,
            s: 0,
            ..Default::default()
        };
        assert_eq!(t.utc_inferring_date(&c).unwrap(), "2026-11-26T00:05:00Z");
    }
}
