//! Quantities with units: durations (`10s`, `500ms`, `2m`, `1h30m`) and byte sizes
//! (`512MiB`, `2GiB`, `64k`).
//!
//! Every quantity a user writes carries its unit. Chapter 2 tells of a container whose
//! `UPDATE_FREQUENCY` parameter changed from seconds to milliseconds: a bare `10` means
//! whatever the reader assumes. So a bare number is rejected (except `0`, which means the
//! same in every unit), with a message that says how to write it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a duration or byte size could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty value")]
    Empty,
    #[error(
        "'{0}' is a bare number: write the unit, e.g. {0}s or {0}ms \
         (a unitless number means whatever its reader assumes)"
    )]
    BareDuration(String),
    #[error("'{0}' is a bare number: write the unit, e.g. {0}B, {0}KiB or {0}MiB")]
    BareSize(String),
    #[error("'{value}': unknown unit '{unit}' (use {expected})")]
    UnknownUnit {
        value: String,
        unit: String,
        expected: &'static str,
    },
    #[error("'{0}' is not a number followed by a unit")]
    Malformed(String),
    #[error("'{0}' is too large")]
    Overflow(String),
}

const DURATION_UNITS: &str = "ns, us, ms, s, m, h or d";
const SIZE_UNITS: &str = "B, K/KiB, M/MiB, G/GiB, T/TiB, KB, MB, GB or TB";

/// A [`Duration`] that parses from and prints as text with units.
///
/// Accepts one or more `<number><unit>` terms (`1h30m`, `1.5s`); units are `ns`, `us`
/// (or `µs`), `ms`, `s`, `m`, `h`, `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The wrapped duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration(d)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl FromStr for HumanDuration {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.trim();
        if s.is_empty() {
            return Err(UnitError::Empty);
        }
        if is_number(s) {
            return if s.parse::<f64>().ok() == Some(0.0) {
                Ok(HumanDuration(Duration::ZERO))
            } else {
                Err(UnitError::BareDuration(s.to_string()))
            };
        }
        let mut total_nanos: u128 = 0;
        for (number, unit) in terms(s).map_err(|_| UnitError::Malformed(s.to_string()))? {
            let nanos_per_unit: u128 = match unit {
                "ns" => 1,
                "us" | "µs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "d" => 86_400_000_000_000,
                other => {
                    return Err(UnitError::UnknownUnit {
                        value: s.to_string(),
                        unit: other.to_string(),
                        expected: DURATION_UNITS,
                    })
                }
            };
            total_nanos += scale(number, nanos_per_unit, s)?;
        }
        let secs = u64::try_from(total_nanos / 1_000_000_000)
            .map_err(|_| UnitError::Overflow(s.to_string()))?;
        Ok(HumanDuration(Duration::new(
            secs,
            (total_nanos % 1_000_000_000) as u32,
        )))
    }
}

impl fmt::Display for HumanDuration {
    /// Prints the shortest exact form: `1h30m`, `10s`, `250ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        const STEPS: [(u128, &str); 7] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        for (size, unit) in STEPS {
            if nanos >= size {
                write!(f, "{}{}", nanos / size, unit)?;
                nanos %= size;
            }
        }
        Ok(())
    }
}

/// A number of bytes that parses from and prints as text with units.
///
/// Binary units (`KiB`, `MiB`, `GiB`, `TiB`, and the single letters `K`, `M`, `G`, `T` as
/// Varnish and nginx read them) are powers of 1024; `KB`, `MB`, `GB`, `TB` are powers of
/// 1000; `B` is bytes. Units are case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.trim();
        if s.is_empty() {
            return Err(UnitError::Empty);
        }
        if is_number(s) {
            return if s.parse::<f64>().ok() == Some(0.0) {
                Ok(ByteSize(0))
            } else {
                Err(UnitError::BareSize(s.to_string()))
            };
        }
        let parsed = terms(s).map_err(|_| UnitError::Malformed(s.to_string()))?;
        let [(number, unit)] = parsed.as_slice() else {
            return Err(UnitError::Malformed(s.to_string()));
        };
        let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
            "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => {
                return Err(UnitError::UnknownUnit {
                    value: s.to_string(),
                    unit: unit.to_string(),
                    expected: SIZE_UNITS,
                })
            }
        };
        let bytes = scale(number, multiplier, s)?;
        u64::try_from(bytes)
            .map(ByteSize)
            .map_err(|_| UnitError::Overflow(s.to_string()))
    }
}

impl fmt::Display for ByteSize {
    /// Prints the largest binary unit that divides the size exactly: `2GiB`, `1536KiB`, `7B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{}", self.0 / size, unit);
            }
        }
        write!(f, "{}B", self.0)
    }
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') && s.parse::<f64>().is_ok()
}

/// Splits `1h30.5m` into `[("1", "h"), ("30.5", "m")]`.
fn terms(s: &str) -> Result<Vec<(&str, &str)>, ()> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(())?;
        if number_len == 0 {
            return Err(());
        }
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        out.push((number, unit.trim()));
        rest = tail;
    }
    Ok(out)
}

/// `number` (decimal text, possibly fractional) times `multiplier`, exactly for integers.
fn scale(number: &str, multiplier: u128, whole: &str) -> Result<u128, UnitError> {
    let malformed = || UnitError::Malformed(whole.to_string());
    let overflow = || UnitError::Overflow(whole.to_string());
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(malformed());
    }
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| overflow())?
    };
    let mut value = int.checked_mul(multiplier).ok_or_else(overflow)?;
    if !frac_part.is_empty() {
        if !frac_part.chars().all(|c| c.is_ascii_digit()) {
            return Err(malformed());
        }
        let digits = &frac_part[..frac_part.len().min(18)];
        let frac: u128 = digits.parse().map_err(|_| malformed())?;
        let denom = 10u128.pow(digits.len() as u32);
        value = value
            .checked_add(frac.checked_mul(multiplier).ok_or_else(overflow)? / denom)
            .ok_or_else(overflow)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<Duration, UnitError> {
        s.parse::<HumanDuration>().map(|h| h.0)
    }

    #[test]
    fn durations_with_units() {
        assert_eq!(d("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(d("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(d("3d"), Ok(Duration::from_secs(3 * 86400)));
        assert_eq!(d("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bare_duration_is_rejected_with_advice() {
        let err = d("10").unwrap_err();
        assert_eq!(err, UnitError::BareDuration("10".into()));
        assert!(err.to_string().contains("10s"), "{err}");
    }

    #[test]
    fn bad_durations() {
        assert!(matches!(
            d("10 parsecs"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(d("s"), Err(UnitError::Malformed(_))));
        assert!(matches!(d(""), Err(UnitError::Empty)));
        assert!(matches!(
            d("99999999999999999999d"),
            Err(UnitError::Overflow(_))
        ));
    }

    #[test]
    fn duration_display_round_trips() {
        for s in ["1h30m", "10s", "250ms", "0s", "1d2h3m4s5ms6us7ns"] {
            let parsed: HumanDuration = s.parse().unwrap();
            assert_eq!(parsed.to_string(), s);
        }
    }

    #[test]
    fn byte_sizes() {
        let b = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(b("512MiB"), Ok(512 << 20));
        assert_eq!(b("2GiB"), Ok(2 << 30));
        assert_eq!(b("2G"), Ok(2 << 30));
        assert_eq!(b("64k"), Ok(64 << 10));
        assert_eq!(b("1MB"), Ok(1_000_000));
        assert_eq!(b("1.5KiB"), Ok(1536));
        assert_eq!(b("100B"), Ok(100));
        assert_eq!(b("0"), Ok(0));
        assert!(matches!(b("1024"), Err(UnitError::BareSize(_))));
        assert!(matches!(b("1 parsec"), Err(UnitError::UnknownUnit { .. })));
        assert!(matches!(b("1G2M"), Err(UnitError::Malformed(_))));
        assert!(matches!(b("99999999999TiB"), Err(UnitError::Overflow(_))));
    }

    #[test]
    fn byte_size_display() {
        assert_eq!(ByteSize(2 << 30).to_string(), "2GiB");
        assert_eq!(ByteSize(1536 << 10).to_string(), "1536KiB");
        assert_eq!(ByteSize(7).to_string(), "7B");
        for s in ["2GiB", "3MiB", "7B"] {
            assert_eq!(s.parse::<ByteSize>().unwrap().to_string(), s);
        }
    }
}

// === impl serde ===

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor::<HumanDuration>::default())
    }
}

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor::<ByteSize>::default())
    }
}

/// Reads a quantity from a string, or from a number (which is then a bare number, and
/// rejected with the same advice as on the command line).
struct QuantityVisitor<T>(std::marker::PhantomData<T>);

impl<T> Default for QuantityVisitor<T> {
    fn default() -> Self {
        QuantityVisitor(std::marker::PhantomData)
    }
}

impl<T: FromStr<Err = UnitError>> serde::de::Visitor<'_> for QuantityVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quantity with its unit, such as 10s or 512MiB")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        v.to_string().parse().map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        v.to_string().parse().map_err(E::custom)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<T, E> {
        v.to_string().parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod serde_tests {
    use super::*;

    #[test]
    fn quantities_in_yaml() {
        let d: HumanDuration = serde_yaml_ng::from_str("1m30s").unwrap();
        assert_eq!(d.get(), Duration::from_secs(90));
        let err = serde_yaml_ng::from_str::<HumanDuration>("10").unwrap_err();
        assert!(err.to_string().contains("bare number"), "{err}");
        let b: ByteSize = serde_yaml_ng::from_str("2GiB").unwrap();
        assert_eq!(b.bytes(), 2 << 30);
        assert_eq!(serde_yaml_ng::to_string(&b).unwrap().trim(), "2GiB");
    }
}
