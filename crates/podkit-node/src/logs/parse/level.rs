//! Level normalization onto: trace, debug, info, notice, warn, error, critical, fatal.

/// Normalizes a level name from any of the supported formats (case-insensitive).
pub(crate) fn normalize(s: &str) -> Option<&'static str> {
    let l = s.trim().to_ascii_lowercase();
    Some(match l.as_str() {
        "trace" | "trc" | "finest" | "finer" => "trace",
        "debug" | "dbg" | "dbug" | "d" | "fine" | "config" | "verbose" => "debug",
        "info" | "inf" | "information" | "informational" | "i" => "info",
        "notice" | "note" => "notice",
        "warn" | "warning" | "wrn" | "w" => "warn",
        "error" | "err" | "eror" | "e" | "severe" => "error",
        "critical" | "crit" | "alert" => "critical",
        "fatal" | "emerg" | "emergency" | "panic" | "dpanic" | "f" => "fatal",
        _ => return None,
    })
}

/// Numeric levels as written by pino and bunyan (10 trace .. 60 fatal).
pub(crate) fn from_number(n: i64) -> Option<&'static str> {
    Some(match n {
        10 => "trace",
        20 => "debug",
        30 => "info",
        40 => "warn",
        50 => "error",
        60 => "fatal",
        _ => return None,
    })
}

/// Syslog severity (0 emergency .. 7 debug).
pub(crate) fn from_syslog_severity(sev: u8) -> &'static str {
    match sev {
        0 => "fatal",
        1 | 2 => "critical",
        3 => "error",
        4 => "warn",
        5 => "notice",
        6 => "info",
        _ => "debug",
    }
}

/// Syslog facility code to its conventional name.
pub(crate) fn facility_name(fac: u8) -> &'static str {
    const NAMES: [&str; 24] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ];
    NAMES.get(usize::from(fac)).copied().unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize("WARNING"), Some("warn"));
        assert_eq!(normalize("Severe"), Some("error"));
        assert_eq!(normalize("FINER"), Some("trace"));
        assert_eq!(normalize("CONFIG"), Some("debug"));
        assert_eq!(normalize("emerg"), Some("fatal"));
        assert_eq!(normalize("loud"), None);
        assert_eq!(from_number(30), Some("info"));
        assert_eq!(from_syslog_severity(5), "notice");
        assert_eq!(facility_name(16), "local0");
    }
}
