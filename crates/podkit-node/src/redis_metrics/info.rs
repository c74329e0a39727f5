//! Redis's `INFO` text, parsed: sections of `field:value` lines, with the keyspace
//! (`db0:keys=1,expires=0,avg_ttl=0`) and command statistics
//! (`cmdstat_get:calls=2,usec=10,...`) lines read into their parts. Pure.

use std::collections::BTreeMap;

/// One parsed `INFO` reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info {
    /// Every plain `field:value`, whatever its section.
    pub fields: BTreeMap<String, String>,
    /// `dbN` → (keys, expiring keys, average TTL in milliseconds).
    pub keyspace: BTreeMap<String, Keyspace>,
    /// Command name (lowercase, as Redis writes it) → its statistics.
    pub commands: BTreeMap<String, CommandStats>,
}

/// One database of the keyspace section.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Keyspace {
    pub keys: f64,
    pub expires: f64,
    pub avg_ttl_ms: f64,
}

/// One command of the commandstats section.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommandStats {
    pub calls: f64,
    pub usec: f64,
    /// Counted from Redis 6.2 on; `None` before.
    pub rejected_calls: Option<f64>,
    pub failed_calls: Option<f64>,
}

/// `a=1,b=2` → the numeric values by name.
fn pairs(text: &str) -> BTreeMap<&str, f64> {
    text.split(',')
        .filter_map(|part| {
            let (k, v) = part.split_once('=')?;
            Some((k, v.parse::<f64>().ok()?))
        })
        .collect()
}

impl Info {
    /// Parses the text of an `INFO` reply.
    pub fn parse(text: &str) -> Info {
        let mut info = Info::default();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(name) = line.strip_prefix("# ") {
                section = name.trim().to_ascii_lowercase();
                continue;
            }
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            if section == "keyspace" && field.starts_with("db") {
                let p = pairs(value);
                info.keyspace.insert(
                    field.to_string(),
                    Keyspace {
                        keys: p.get("keys").copied().unwrap_or(0.0),
                        expires: p.get("expires").copied().unwrap_or(0.0),
                        avg_ttl_ms: p.get("avg_ttl").copied().unwrap_or(0.0),
                    },
                );
            } else if let Some(command) = field.strip_prefix("cmdstat_") {
                let p = pairs(value);
                info.commands.insert(
                    command.to_string(),
                    CommandStats {
                        calls: p.get("calls").copied().unwrap_or(0.0),
                        usec: p.get("usec").copied().unwrap_or(0.0),
                        rejected_calls: p.get("rejected_calls").copied(),
                        failed_calls: p.get("failed_calls").copied(),
                    },
                );
            } else {
                info.fields.insert(field.to_string(), value.to_string());
            }
        }
        info
    }

    /// A field as a number (`ok`/`err` and other words are not numbers).
    pub fn number(&self, field: &str) -> Option<f64> {
        self.fields.get(field)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:42\r\n\r\n# Clients\r\nconnected_clients:3\r\n# Commandstats\r\ncmdstat_get:calls=5,usec=50,usec_per_call=10.00,rejected_calls=1,failed_calls=0\r\ncmdstat_client|list:calls=1,usec=7,usec_per_call=7.00,rejected_calls=0,failed_calls=0\r\n# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=3000\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n";

    #[test]
    fn sections_keyspace_and_commands() {
        let info = Info::parse(SAMPLE);
        assert_eq!(info.fields["redis_version"], "7.0.15");
        assert_eq!(info.number("uptime_in_seconds"), Some(42.0));
        assert_eq!(info.number("connected_clients"), Some(3.0));
        assert_eq!(
            info.keyspace["db0"],
            Keyspace {
                keys: 10.0,
                expires: 2.0,
                avg_ttl_ms: 3000.0
            }
        );
        assert_eq!(info.keyspace.len(), 2);
        assert_eq!(info.commands["get"].calls, 5.0);
        assert_eq!(info.commands["get"].rejected_calls, Some(1.0));
        assert_eq!(info.commands["client|list"].usec, 7.0);
        assert!(!info.fields.contains_key("cmdstat_get"));
    }
}
