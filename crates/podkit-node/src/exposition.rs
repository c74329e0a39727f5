//! Prometheus text exposition (format 0.0.4) for metrics whose names are known only at
//! scrape time: families with `# HELP` and `# TYPE`, escaped label values. Pure.

use std::fmt::Write as _;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// Labels of one sample, in order (names known when the code is written).
pub type Labels = Vec<(&'static str, String)>;

/// Text being built.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

impl Exposition {
    /// Adds one family and its samples (nothing when there are none). Label names may be
    /// `&'static str` or, when they come from configuration, `String`.
    pub fn family<K: AsRef<str>>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        samples: &[(Vec<(K, String)>, f64)],
    ) {
        if samples.is_empty() {
            return;
        }
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(self.text, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.text.push_str(name);
            if !labels.is_empty() {
                self.text.push('{');
                for (i, (label, value)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    let _ = write!(self.text, "{}=\"{}\"", label.as_ref(), escape(value));
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {}", number(*value));
        }
    }

    /// Adds a family of one unlabelled sample.
    pub fn one(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family::<&str>(name, kind, help, &[(Vec::new(), value)]);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_as_text_format() {
        let mut e = Exposition::default();
        e.one("redis_up", Kind::Gauge, "Up", 1.0);
        e.family(
            "redis_commands_total",
            Kind::Counter,
            "Calls",
            &[
                (vec![("cmd", "get".into())], 5.0),
                (vec![("cmd", "a\"b\\c".into())], 0.5),
            ],
        );
        e.family::<&str>("redis_empty", Kind::Gauge, "none", &[]);
        assert_eq!(
            e.finish(),
            "# HELP redis_up Up\n# TYPE redis_up gauge\nredis_up 1\n\
             # HELP redis_commands_total Calls\n# TYPE redis_commands_total counter\n\
             redis_commands_total{cmd=\"get\"} 5\nredis_commands_total{cmd=\"a\\\"b\\\\c\"} 0.5\n"
        );
    }
}
