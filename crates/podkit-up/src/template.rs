//! Templates in args, env values and files: `{{ port "http" }}`, `{{ service "name" }}`,
//! `{{ replica }}`, `{{ dir }}`, `{{ volume "name" }}`, `{{ base }}`, `{{ podkit }}`,
//! `{{ env "NAME" }}`.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// The replica's port of this name.
    Port(String),
    /// `host:port` of a service.
    Service(String),
    /// The replica's index.
    Replica,
    /// The replica's scratch directory.
    Dir,
    /// A shared volume of the pod.
    Volume(String),
    /// The directory of the topology file.
    Base,
    /// The path of the podkit binary.
    Podkit,
    /// An environment variable of the runner.
    Env(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Part>);

/// What a template is rendered with.
#[derive(Debug, Clone, Default)]
pub struct Values {
    pub ports: BTreeMap<String, u16>,
    pub services: BTreeMap<String, String>,
    pub replica: usize,
    pub dir: PathBuf,
    pub volumes: BTreeMap<String, PathBuf>,
    pub base: PathBuf,
    pub podkit: PathBuf,
}

impl Template {
    /// Parses `text`; the error says what is wrong with which `{{ }}`.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed '{{{{' in '{text}'"))?;
            parts.push(parse_expression(after[..close].trim())?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }

    /// Renders with `values`; an unknown port or service renders empty (validation rejects
    /// them before anything runs).
    pub fn render(&self, values: &Values) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Port(name) => {
                    if let Some(port) = values.ports.get(name) {
                        out.push_str(&port.to_string());
                    }
                }
                Part::Service(name) => {
                    if let Some(addr) = values.services.get(name) {
                        out.push_str(addr);
                    }
                }
                Part::Replica => out.push_str(&values.replica.to_string()),
                Part::Dir => out.push_str(&values.dir.to_string_lossy()),
                Part::Volume(name) => {
                    if let Some(path) = values.volumes.get(name) {
                        out.push_str(&path.to_string_lossy());
                    }
                }
                Part::Base => out.push_str(&values.base.to_string_lossy()),
                Part::Podkit => out.push_str(&values.podkit.to_string_lossy()),
                Part::Env(name) => out.push_str(&std::env::var(name).unwrap_or_default()),
            }
        }
        out
    }

    /// The services the template refers to.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Service(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The ports the template refers to.
    pub fn ports(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Port(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The volumes the template refers to.
    pub fn volumes(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Volume(name) => Some(name.as_str()),
            _ => None,
        })
    }
}

fn parse_expression(expr: &str) -> Result<Part, String> {
    let mut words = expr.split_whitespace();
    let function = words.next().unwrap_or("");
    let argument = words.next().map(|w| w.trim_matches('"').to_string());
    if words.next().is_some() {
        return Err(format!("'{{{{ {expr} }}}}': too many arguments"));
    }
    let needs = |what: &str| {
        argument
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("'{{{{ {expr} }}}}': {function} needs a {what} name, e.g. {{{{ {function} \"name\" }}}}"))
    };
    Ok(match function {
        "port" => Part::Port(needs("port")?),
        "service" => Part::Service(needs("service")?),
        "volume" => Part::Volume(needs("volume")?),
        "env" => Part::Env(needs("variable")?),
        "replica" => Part::Replica,
        "dir" => Part::Dir,
        "base" => Part::Base,
        "podkit" => Part::Podkit,
        other => {
            return Err(format!(
                "'{{{{ {expr} }}}}': unknown function '{other}' (port, service, volume, env, replica, dir, base, podkit)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = Template::parse(
            "--listen=127.0.0.1:{{ port \"http\" }} --up {{service \"db\"}} r{{ replica }}",
        )
        .unwrap();
        let values = Values {
            ports: BTreeMap::from([("http".into(), 8081)]),
            services: BTreeMap::from([("db".into(), "127.0.0.1:9000".into())]),
            replica: 2,
            ..Values::default()
        };
        assert_eq!(
            t.render(&values),
            "--listen=127.0.0.1:8081 --up 127.0.0.1:9000 r2"
        );
        assert_eq!(t.services().collect::<Vec<_>>(), vec!["db"]);
        assert_eq!(t.ports().collect::<Vec<_>>(), vec!["http"]);
    }

    #[test]
    fn errors_name_the_expression() {
        assert!(Template::parse("{{ port }}")
            .unwrap_err()
            .contains("needs a port name"));
        assert!(Template::parse("{{ nope \"x\" }}")
            .unwrap_err()
            .contains("unknown function 'nope'"));
        assert!(Template::parse("{{ port \"x\"")
            .unwrap_err()
            .contains("unclosed"));
        assert_eq!(
            Template::parse("plain").unwrap().0,
            vec![Part::Text("plain".into())]
        );
    }
}
