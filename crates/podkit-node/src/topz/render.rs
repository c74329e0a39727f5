//! Rendering a snapshot as JSON, as `top`-like text, or as a sortable HTML page.

use std::fmt::Write;

use serde::Serialize;

use super::sample::ProcessRow;

/// Whole-machine figures shown above the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemSummary {
    pub uptime_seconds: f64,
    pub load_average: [f64; 3],
    pub cpus: usize,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
}

/// What `/topz` serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// When the reading was taken, RFC 3339 UTC.
    pub taken_at: String,
    /// The interval CPU % was measured over.
    pub interval_seconds: f64,
    pub system: SystemSummary,
    pub processes: Vec<ProcessRow>,
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
    Html,
}

impl Format {
    /// From `?format=`.
    pub fn from_query(value: &str) -> Option<Format> {
        match value {
            "json" => Some(Format::Json),
            "text" | "txt" | "plain" => Some(Format::Text),
            "html" => Some(Format::Html),
            _ => None,
        }
    }

    /// From an `Accept` header: HTML for browsers, JSON when asked for, else text.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let accept = accept.unwrap_or("");
        if accept.contains("text/html") {
            Format::Html
        } else if accept.contains("application/json") {
            Format::Json
        } else {
            Format::Text
        }
    }

    /// The response content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Text => "text/plain; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

/// A column to sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Pid,
    Ppid,
    User,
    Command,
    State,
    Cpu,
    Rss,
    Vsize,
    Threads,
    Fds,
    Start,
}

impl SortKey {
    /// From `?sort=`.
    pub fn parse(value: &str) -> Option<SortKey> {
        Some(match value {
            "pid" => SortKey::Pid,
            "ppid" => SortKey::Ppid,
            "user" => SortKey::User,
            "command" => SortKey::Command,
            "state" => SortKey::State,
            "cpu" => SortKey::Cpu,
            "rss" | "mem" => SortKey::Rss,
            "vsize" | "vsz" => SortKey::Vsize,
            "threads" => SortKey::Threads,
            "fds" => SortKey::Fds,
            "start" => SortKey::Start,
            _ => return None,
        })
    }
}

/// Sorts rows: numbers largest first (except pids, smallest first), text alphabetically.
pub fn sort(rows: &mut [ProcessRow], key: SortKey) {
    use std::cmp::Ordering;
    let by_pid = |a: &ProcessRow, b: &ProcessRow| a.pid.cmp(&b.pid);
    let desc = |x: f64, y: f64| y.partial_cmp(&x).unwrap_or(Ordering::Equal);
    rows.sort_by(|a, b| {
        let primary = match key {
            SortKey::Pid => Ordering::Equal,
            SortKey::Ppid => a.ppid.cmp(&b.ppid),
            SortKey::User => a.user.cmp(&b.user),
            SortKey::Command => a.command.cmp(&b.command),
            SortKey::State => a.state.cmp(&b.state),
            SortKey::Cpu => desc(a.cpu_percent, b.cpu_percent),
            SortKey::Rss => b.rss_bytes.cmp(&a.rss_bytes),
            SortKey::Vsize => b.vsize_bytes.cmp(&a.vsize_bytes),
            SortKey::Threads => b.threads.cmp(&a.threads),
            SortKey::Fds => b.open_fds.cmp(&a.open_fds),
            SortKey::Start => desc(a.start_time_seconds, b.start_time_seconds),
        };
        primary.then_with(|| by_pid(a, b))
    });
}

/// Renders the snapshot in `format`.
pub fn render(snapshot: &Snapshot, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(snapshot).unwrap_or_default() + "\n",
        Format::Text => text(snapshot),
        Format::Html => html(snapshot),
    }
}

fn text(s: &Snapshot) -> String {
    let mut out = String::new();
    let sys = &s.system;
    let running = s.processes.iter().filter(|p| p.state == "R").count();
    let _ = writeln!(
        out,
        "topz - {} up {}, load average: {:.2} {:.2} {:.2}",
        s.taken_at,
        uptime(sys.uptime_seconds),
        sys.load_average[0],
        sys.load_average[1],
        sys.load_average[2]
    );
    let _ = writeln!(
        out,
        "Tasks: {} total, {} running; CPUs: {}; Mem: {} total, {} available; CPU % over {:.1}s",
        s.processes.len(),
        running,
        sys.cpus,
        size(sys.memory_total_bytes),
        size(sys.memory_available_bytes),
        s.interval_seconds
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:>7} {:>7} {:<10} {:1} {:>6} {:>9} {:>9} {:>4} {:>5} {:<20} COMMAND",
        "PID", "PPID", "USER", "S", "%CPU", "RSS", "VSZ", "THR", "FDS", "STARTED"
    );
    for p in &s.processes {
        let fds = p
            .open_fds
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        let _ = writeln!(
            out,
            "{:>7} {:>7} {:<10} {:1} {:>6.1} {:>9} {:>9} {:>4} {:>5} {:<20} {}",
            p.pid,
            p.ppid,
            truncate(&p.user, 10),
            p.state,
            p.cpu_percent,
            size(p.rss_bytes),
            size(p.vsize_bytes),
            p.threads,
            fds,
            p.start_time,
            p.command
        );
    }
    out
}

const COLUMNS: [(&str, &str, bool); 11] = [
    ("PID", "pid", true),
    ("PPID", "ppid", true),
    ("USER", "user", false),
    ("S", "state", false),
    ("%CPU", "cpu", true),
    ("RSS", "rss", true),
    ("VSZ", "vsize", true),
    ("THR", "threads", true),
    ("FDS", "fds", true),
    ("STARTED", "start", true),
    ("COMMAND", "command", false),
];

fn html(s: &Snapshot) -> String {
    let mut out = String::with_capacity(256 + s.processes.len() * 256);
    out.push_str(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>topz</title>\n<style>\n\
         body{font-family:system-ui,sans-serif;margin:1em}\
         table{border-collapse:collapse;font-family:ui-monospace,monospace;font-size:13px}\
         th,td{padding:2px 8px;text-align:right;white-space:nowrap}\
         td.t,th.t{text-align:left}\
         th{cursor:pointer;background:#eee;position:sticky;top:0}\
         th.on::after{content:attr(data-dir)}\
         tr:nth-child(even){background:#f7f7f7}\n</style></head><body>\n",
    );
    let sys = &s.system;
    let _ = writeln!(
        out,
        "<h1>topz</h1>\n<p>{} &middot; up {} &middot; load {:.2} {:.2} {:.2} &middot; {} CPUs &middot; \
         memory {} total, {} available &middot; {} processes &middot; CPU % over {:.1}s</p>",
        escape(&s.taken_at),
        uptime(sys.uptime_seconds),
        sys.load_average[0],
        sys.load_average[1],
        sys.load_average[2],
        sys.cpus,
        size(sys.memory_total_bytes),
        size(sys.memory_available_bytes),
        s.processes.len(),
        s.interval_seconds
    );
    out.push_str("<table id=\"topz\"><thead><tr>");
    for (title, key, numeric) in COLUMNS {
        let class = if numeric { "" } else { " class=\"t\"" };
        let _ = write!(
            out,
            "<th data-key=\"{key}\" data-num=\"{numeric}\"{class}>{title}</th>"
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for p in &s.processes {
        let fds = p.open_fds.map_or(-1i64, |n| n as i64);
        let cells: [(String, String, bool); 11] = [
            (p.pid.to_string(), p.pid.to_string(), true),
            (p.ppid.to_string(), p.ppid.to_string(), true),
            (p.user.clone(), escape(&p.user), false),
            (p.state.clone(), escape(&p.state), false),
            (
                p.cpu_percent.to_string(),
                format!("{:.1}", p.cpu_percent),
                true,
            ),
            (p.rss_bytes.to_string(), size(p.rss_bytes), true),
            (p.vsize_bytes.to_string(), size(p.vsize_bytes), true),
            (p.threads.to_string(), p.threads.to_string(), true),
            (
                fds.to_string(),
                p.open_fds.map_or("-".into(), |n| n.to_string()),
                true,
            ),
            (
                p.start_time_seconds.to_string(),
                escape(&p.start_time),
                true,
            ),
            (p.command.clone(), escape(&p.command), false),
        ];
        out.push_str("<tr>");
        for (value, shown, numeric) in cells {
            let class = if numeric { "" } else { " class=\"t\"" };
            let _ = write!(out, "<td data-v=\"{}\"{class}>{shown}</td>", escape(&value));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    out.push_str(SORT_SCRIPT);
    out.push_str("</body></html>\n");
    out
}

/// Click a column header to sort by it; click again to reverse.
const SORT_SCRIPT: &str = r#"<script>
(function () {
  var table = document.getElementById("topz");
  var body = table.tBodies[0];
  var current = null, ascending = true;
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var numeric = th.dataset.num === "true";
      ascending = current === th ? !ascending : !numeric;
      if (current) { current.classList.remove("on"); }
      current = th;
      th.classList.add("on");
      th.dataset.dir = ascending ? " \u25b2" : " \u25bc";
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.v, y = b.cells[column].dataset.v;
        var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
})();
</script>
"#;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

fn uptime(seconds: f64) -> String {
    let total = seconds as u64;
    let (days, hours, minutes) = (total / 86_400, total % 86_400 / 3600, total % 3600 / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else {
        format!("{minutes}m")
    }
}

fn truncate(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let row = |pid: i32, cpu: f64, command: &str| ProcessRow {
            pid,
            ppid: 1,
            user: "root".into(),
            command: command.into(),
            state: "S".into(),
            cpu_percent: cpu,
            rss_bytes: 3 << 20,
            vsize_bytes: 10 << 20,
            threads: 2,
            open_fds: Some(5),
            start_time: "2026-11-25T18:00:00Z".into(),
            start_time_seconds: 1.0,
            pod: None,
        };

        Snapshot {
            taken_at: "2026-11-25T18:01:00Z".into(),
            interval_seconds: 2.0,
            system: SystemSummary {
                uptime_seconds: 90_000.0,
                load_average: [0.5, 0.25, 0.0],
                cpus: 2,
                memory_total_bytes: 8 << 30,
                memory_available_bytes: 4 << 30,
            },
            processes: vec![row(10, 1.5, "sleep 100"), row(11, 97.0, "burn <x> & \"y\"")],
        }
    }

    #[test]
    fn format_negotiation() {
        assert_eq!(
            Format::from_accept(Some("text/html,application/xhtml+xml")),
            Format::Html
        );
        assert_eq!(Format::from_accept(Some("application/json")), Format::Json);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(Format::from_query("json"), Some(Format::Json));
        assert_eq!(Format::from_query("yaml"), None);
    }

    #[test]
    fn sorting_by_cpu_puts_the_busiest_first() {
        let mut s = snapshot();
        sort(&mut s.processes, SortKey::Cpu);
        assert_eq!(s.processes[0].pid, 11);
        sort(&mut s.processes, SortKey::Pid);
        assert_eq!(s.processes[0].pid, 10);
    }

    #[test]
    fn text_looks_like_top() {
        let out = render(&snapshot(), Format::Text);
        assert!(
            out.starts_with("topz - 2026-11-25T18:01:00Z up 1d 1h, load average: 0.50 0.25 0.00")
        );
        assert!(out.contains("Tasks: 2 total"));
        let line = out.lines().find(|l| l.contains("sleep 100")).unwrap();
        assert!(
            line.contains("3.0MiB") && line.contains("10.0MiB") && line.contains("root"),
            "{line}"
        );
    }

    #[test]
    fn json_has_every_field() {
        let v: serde_json::Value =
            serde_json::from_str(&render(&snapshot(), Format::Json)).unwrap();
        let p = &v["processes"][1];
        for field in [
            "pid",
            "ppid",
            "user",
            "command",
            "state",
            "cpu_percent",
            "rss_bytes",
            "vsize_bytes",
            "threads",
            "open_fds",
            "start_time",
        ] {
            assert!(!p[field].is_null(), "missing {field}");
        }
        assert_eq!(p["command"], "burn <x> & \"y\"");
    }

    #[test]
    fn html_escapes_commands_and_is_sortable() {
        let out = render(&snapshot(), Format::Html);
        assert!(out.contains("burn &lt;x&gt; &amp; &quot;y&quot;"));
        assert!(!out.contains("burn <x>"));
        assert!(out.contains("data-key=\"cpu\""));
        assert!(out.contains("addEventListener(\"click\""));
    }
}
