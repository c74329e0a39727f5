//! The multiplexed log: every line of every process, prefixed with pod/replica/process.
//! JSON lines of podkit components are rendered readably. Lines wait in a buffer until the
//! status table has been printed.

use std::fmt::Write as _;
use std::io::Write as _;

use tokio::sync::mpsc;

enum Message {
    Line {
        prefix: String,
        line: String,
    },
    /// Print everything held back, and from now on print as lines come.
    Release,
}

/// A handle to the log printer.
#[derive(Clone, Debug)]
pub struct Logs {
    tx: mpsc::UnboundedSender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl Logs {
    /// Starts the printer.
    pub fn start() -> Logs {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held: Option<Vec<String>> = Some(Vec::new());
            while let Some(message) = rx.recv().await {
                match message {
                    Message::Line { prefix, line } => {
                        let text = format!("{prefix:<28} | {}", render(&line));
                        match held.as_mut() {
                            Some(buffer) if buffer.len() < 10_000 => buffer.push(text),
                            Some(_) => {}
                            None => print_line(&text),
                        }
                    }
                    Message::Release => {
                        for text in held.take().unwrap_or_default() {
                            print_line(&text);
                        }
                    }
                }
            }
        });
        Logs { tx }
    }

    /// Queues one line of output.
    pub fn line(&self, prefix: &str, line: String) {
        let _ = self.tx.send(Message::Line {
            prefix: prefix.to_string(),
            line,
        });
    }

    /// Stops holding lines back.
    pub fn release(&self) {
        let _ = self.tx.send(Message::Release);
    }
}

fn print_line(text: &str) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = writeln!(out, "{text}");
}

/// A podkit JSON log line as `LEVEL message key=value ...`; any other line unchanged.
pub fn render(line: &str) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_string();
    };
    let (Some(level), Some(message)) = (
        map.get("level").and_then(|v| v.as_str()),
        map.get("message").and_then(|v| v.as_str()),
    ) else {
        return line.to_string();
    };
    let mut out = format!("{level:<5} {message}");
    for (key, value) in &map {
        if matches!(key.as_str(), "level" | "message" | "timestamp" | "target") {
            continue;
        }
        match value {
            serde_json::Value::String(s) => {
                let _ = write!(out, " {key}={s}");
            }
            other => {
                let _ = write!(out, " {key}={other}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_podkit_json_lines() {
        let line = r#"{"timestamp":"2026-11-25T18:23:35Z","level":"INFO","message":"listening","listen":"127.0.0.1:80","tls":false,"target":"podkit_proxy::server"}"#;
        assert_eq!(
            super::render(line),
            "INFO  listening listen=127.0.0.1:80 tls=false"
        );
        assert_eq!(super::render("plain text"), "plain text");
        assert_eq!(super::render("{\"a\":1}"), "{\"a\":1}");
    }
}
