//! A tiny byte cursor shared by the hand-written parsers.

/// Cursor over a line; only ever stops on ASCII bytes, so slicing stays on char boundaries.
pub(crate) struct Cur<'a> {
    pub s: &'a str,
    pub i: usize,
}

impl<'a> Cur<'a> {
    pub fn new(s: &'a str) -> Self {
        Cur { s, i: 0 }
    }

    pub fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    pub fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    pub fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    /// Consumes `c` if it is next.
    pub fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `lit` if it is next.
    pub fn lit(&mut self, lit: &str) -> bool {
        if self.rest().starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    /// Reads `min..=max` ASCII digits as a number.
    pub fn num(&mut self, min: usize, max: usize) -> Option<u32> {
        let d = self.digits(max);
        if d.len() < min {
            self.i -= d.len();
            return None;
        }
        d.parse().ok()
    }

    /// Reads up to `max` ASCII digits (possibly none).
    pub fn digits(&mut self, max: usize) -> &'a str {
        let start = self.i;
        while self.i - start < max && self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// Skips spaces, returning how many.
    pub fn spaces(&mut self) -> usize {
        let start = self.i;
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
        self.i - start
    }

    /// Reads a run of non-space bytes (possibly empty).
    pub fn token(&mut self) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(|b| b != b' ') {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// Reads up to (not including) the first `c`; fails when `c` does not occur.
    pub fn until(&mut self, c: u8) -> Option<&'a str> {
        let n = self.rest().bytes().position(|b| b == c)?;
        let out = &self.s[self.i..self.i + n];
        self.i += n;
        Some(out)
    }

    /// Reads a 3-letter English month abbreviation.
    pub fn month(&mut self) -> Option<u32> {
        let m = crate::logs::parse::time::month_from_abbr(self.rest().get(..3)?)?;
        self.i += 3;
        Some(m)
    }

    /// Reads `hh:mm:ss` (hour 1-2 digits when `loose_hour`).
    pub fn hms(&mut self, loose_hour: bool) -> Option<(u32, u32, u32)> {
        let h = self.num(if loose_hour { 1 } else { 2 }, 2)?;
        self.eat(b':').then_some(())?;
        let m = self.num(2, 2)?;
        self.eat(b':').then_some(())?;
        let s = self.num(2, 2)?;
        Some((h, m, s))
    }

    /// Reads a fraction introduced by one of `seps`, returning its digits ("" when absent).
    pub fn frac(&mut self, seps: &[u8]) -> &'a str {
        match self.peek() {
            Some(b)
                if seps.contains(&b)
                    && self
                        .s
                        .as_bytes()
                        .get(self.i + 1)
                        .is_some_and(u8::is_ascii_digit) =>
            {
                self.i += 1;
                self.digits(9)
            }
            _ => "",
        }
    }
}

/// Reads a double-quoted string at the start of `s` (opening quote included),
/// decoding `\"`, `\\`, `\n`, `\t`, `\r` and ASCII `\xHH`; other escapes are kept verbatim.
/// Returns the decoded text and the rest after the closing quote.
pub(crate) fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => match chars.next()? {
                (_, '"') => out.push('"'),
                (_, '\\') => out.push('\\'),
                (_, 'n') => out.push('\n'),
                (_, 't') => out.push('\t'),
                (_, 'r') => out.push('\r'),
                (j, 'x') => {
                    let hex = body.get(j + 1..j + 3);
                    match hex
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .filter(u8::is_ascii)
                    {
                        Some(b) => {
                            out.push(b as char);
                            chars.next();
                            chars.next();
                        }
                        None => out.push_str("\\x"),
                    }
                }
                (_, other) => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_decodes_escapes() {
        let (s, rest) = quoted(r#""a \"b\" \x22c\x22 \xe2\\" tail"#).unwrap();
        assert_eq!(s, r#"a "b" "c" \xe2\"#);
        assert_eq!(rest, " tail");
        assert!(quoted(r#""unterminated"#).is_none());
    }

    #[test]
    fn cursor_basics() {
        let mut c = Cur::new("12:05:09.250 x");
        assert_eq!(c.hms(false), Some((12, 5, 9)));
        assert_eq!(c.frac(b".,"), "250");
        assert_eq!(c.spaces(), 1);
        assert_eq!(c.token(), "x");
        assert!(c.at_end());
    }
}
