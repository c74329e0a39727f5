//! Key templates: `$remote_addr`, `$request_uri`, `$http_x_user`, `$cookie_session`,
//! literals and concatenations, in nginx's variable syntax (`$name` or `${name}`).

use std::fmt;
use std::str::FromStr;

use http::request::Parts;
use http::HeaderName;

/// A parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// The client's IP address (no port).
    RemoteAddr,
    /// Path and query as the client sent them.
    RequestUri,
    /// The path alone.
    Uri,
    /// The query string.
    Args,
    Host,
    Method,
    Scheme,
    Header(HeaderName),
    Cookie(String),
    Arg(String),
}

/// A template that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown variable ${0} (known: $remote_addr, $request_uri, $uri, $args, $host, $request_method, $scheme, $http_<header>, $cookie_<name>, $arg_<name>)")]
    UnknownVariable(String),
    #[error("'$' must be followed by a variable name")]
    EmptyVariable,
    #[error("unclosed '${{'")]
    Unclosed,
    #[error("bad header name in $http_{0}")]
    BadHeader(String),
}

/// What a template is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub parts: &'a Parts,
    pub remote_ip: std::net::IpAddr,
    pub tls: bool,
}

impl FromStr for Template {
    type Err = TemplateError;

    fn from_str(source: &str) -> Result<Self, Self::Err> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(dollar) = rest.find('$') {
            literal.push_str(&rest[..dollar]);
            rest = &rest[dollar + 1..];
            let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
                let end = braced.find('}').ok_or(TemplateError::Unclosed)?;
                (&braced[..end], &braced[end + 1..])
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            if name.is_empty() {
                return Err(TemplateError::EmptyVariable);
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(variable(name)?);
            rest = after;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }
}

fn variable(name: &str) -> Result<Part, TemplateError> {
    Ok(match name {
        "remote_addr" | "binary_remote_addr" => Part::RemoteAddr,
        "request_uri" => Part::RequestUri,
        "uri" | "document_uri" => Part::Uri,
        "args" | "query_string" => Part::Args,
        "host" => Part::Host,
        "request_method" => Part::Method,
        "scheme" => Part::Scheme,
        _ => {
            if let Some(header) = name.strip_prefix("http_") {
                let header_name = header.replace('_', "-").to_ascii_lowercase();
                Part::Header(
                    HeaderName::from_bytes(header_name.as_bytes())
                        .map_err(|_| TemplateError::BadHeader(header.to_string()))?,
                )
            } else if let Some(cookie) = name.strip_prefix("cookie_") {
                Part::Cookie(cookie.to_string())
            } else if let Some(arg) = name.strip_prefix("arg_") {
                Part::Arg(arg.to_string())
            } else {
                return Err(TemplateError::UnknownVariable(name.to_string()));
            }
        }
    })
}

impl Template {
    /// Evaluates the template; missing values are empty, as in nginx.
    pub fn render(&self, view: &RequestView<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::RemoteAddr => out.push_str(&view.remote_ip.to_string()),
                Part::RequestUri => out.push_str(
                    view.parts
                        .uri
                        .path_and_query()
                        .map_or("/", |pq| pq.as_str()),
                ),
                Part::Uri => out.push_str(view.parts.uri.path()),
                Part::Args => out.push_str(view.parts.uri.query().unwrap_or("")),
                Part::Host => out.push_str(host(view.parts)),
                Part::Method => out.push_str(view.parts.method.as_str()),
                Part::Scheme => out.push_str(if view.tls { "https" } else { "http" }),
                Part::Header(name) => {
                    if let Some(value) = view.parts.headers.get(name) {
                        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
                    }
                }
                Part::Cookie(name) => {
                    if let Some(value) = cookie(view.parts, name) {
                        out.push_str(value);
                    }
                }
                Part::Arg(name) => {
                    if let Some(value) = arg(view.parts, name) {
                        out.push_str(value);
                    }
                }
            }
        }
        out
    }

    /// Whether the template only reads the client address (no request data).
    pub fn is_remote_addr(&self) -> bool {
        self.parts == [Part::RemoteAddr]
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The request's host without port: from the URI (HTTP/2, absolute form) or `Host`.
pub fn host(parts: &Parts) -> &str {
    host_of(&parts.uri, &parts.headers)
}

/// [`host`] from a URI and headers.
pub fn host_of<'a>(uri: &'a http::Uri, headers: &'a http::HeaderMap) -> &'a str {
    let raw = uri
        .host()
        .or_else(|| headers.get(http::header::HOST)?.to_str().ok())
        .unwrap_or("");
    strip_port(raw)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn arg<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .uri
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, req: http::Request<()>) -> String {
        let t: Template = template.parse().unwrap();
        let (parts, _) = req.into_parts();
        t.render(&RequestView {
            parts: &parts,
            remote_ip: "10.1.2.3".parse().unwrap(),
            tls: true,
        })
    }

    fn req() -> http::Request<()> {
        http::Request::builder()
            .uri("/a/b?x=1&user=ann")
            .header("host", "example.com:8080")
            .header("x-user-id", "42")
            .header("cookie", "theme=dark; session=s3cr3t")
            .body(())
            .unwrap()
    }

    #[test]
    fn variables() {
        assert_eq!(render("$remote_addr", req()), "10.1.2.3");
        assert_eq!(render("$request_uri", req()), "/a/b?x=1&user=ann");
        assert_eq!(render("$uri", req()), "/a/b");
        assert_eq!(render("$args", req()), "x=1&user=ann");
        assert_eq!(render("$host", req()), "example.com");
        assert_eq!(render("$scheme://$host", req()), "https://example.com");
        assert_eq!(render("$http_x_user_id", req()), "42");
        assert_eq!(render("$cookie_session", req()), "s3cr3t");
        assert_eq!(render("$arg_user", req()), "ann");
        assert_eq!(render("u-${http_x_user_id}-$uri", req()), "u-42-/a/b");
        assert_eq!(render("$http_missing", req()), "");
    }

    #[test]
    fn errors() {
        assert_eq!(
            "$nope".parse::<Template>(),
            Err(TemplateError::UnknownVariable("nope".into()))
        );
        assert_eq!("a$".parse::<Template>(), Err(TemplateError::EmptyVariable));
        assert_eq!("${uri".parse::<Template>(), Err(TemplateError::Unclosed));
        assert!("$remote_addr".parse::<Template>().unwrap().is_remote_addr());
    }

    #[test]
    fn hosts() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("a.b"), "a.b");
    }
}
