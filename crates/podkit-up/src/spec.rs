//! The topology file: pods of processes ("containers"), replicated, with probes, files
//! and shared volumes, and services in front of them — close to a Kubernetes pod spec, so
//! that the book's manifests translate almost line by line.
//!
//! ```yaml
//! pods:
//!   - name: dictionary
//!     replicas: 3
//!     containers:
//!       - name: server
//!         command: [dictionary-server]
//!         args: ["--listen", "127.0.0.1:{{ port \"http\" }}"]
//!         ports: [{ name: http }]
//!         readinessProbe: { httpGet: { path: /ready, port: http } }
//! services:
//!   - name: dictionary
//!     pod: dictionary
//!     port: http
//! ```

use std::collections::{BTreeMap, BTreeSet};

use podkit_core::HumanDuration;
use serde::{Deserialize, Serialize};

use crate::template::Template;

/// A whole topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Topology {
    pub pods: Vec<PodSpec>,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
}

/// A group of processes that run together, replicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSpec {
    pub name: String,
    #[serde(default = "one")]
    pub replicas: usize,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Directories every process of a replica sees (`{{ volume "name" }}`).
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Files written into each replica's directory before its processes start.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    pub containers: Vec<ContainerSpec>,
}

fn one() -> usize {
    1
}

/// What happens when a process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// A file written into the replica's directory (the ConfigMap analogue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileSpec {
    /// Path relative to the replica's directory.
    pub path: String,
    /// Content; templates are rendered.
    pub content: String,
}

/// One process of a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerSpec {
    pub name: String,
    /// The program and its first arguments; `podkit` means this podkit binary.
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables, as a map (`{NAME: value}`) or as Kubernetes writes them
    /// (`[{name: NAME, value: value}]`).
    #[serde(default, deserialize_with = "env_map_or_list")]
    pub env: BTreeMap<String, String>,
    /// Working directory; default the replica's directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub readiness_probe: Option<Probe>,
    #[serde(default)]
    pub liveness_probe: Option<Probe>,
}

/// A named port; `port` pins a number (only for a single replica).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortSpec {
    pub name: String,
    #[serde(default)]
    pub port: Option<u16>,
}

/// A readiness or liveness probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probe {
    #[serde(default)]
    pub http_get: Option<HttpGet>,
    #[serde(default)]
    pub tcp_socket: Option<TcpSocket>,
    #[serde(default)]
    pub exec: Option<Exec>,
    #[serde(default = "second")]
    pub interval: HumanDuration,
    #[serde(default = "second")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub initial_delay: HumanDuration,
    #[serde(default = "three")]
    pub failure_threshold: u32,
    #[serde(default = "one_u32")]
    pub success_threshold: u32,
}

fn second() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}
fn three() -> u32 {
    3
}
fn one_u32() -> u32 {
    1
}

/// `GET http://127.0.0.1:<port><path>`; 2xx and 3xx pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGet {
    #[serde(default = "slash")]
    pub path: String,
    /// A port name of the pod, or a number.
    pub port: String,
}

fn slash() -> String {
    "/".into()
}

/// A TCP connect to a port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpSocket {
    pub port: String,
}

/// A command that passes with exit status 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exec {
    pub command: Vec<String>,
}

/// A name in front of a pod's ready replicas, served by a `podkit lb`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    pub name: String,
    pub pod: String,
    /// The pod's port name that the service sends to.
    pub port: String,
    /// Where the service listens; default a free port on 127.0.0.1.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// `round-robin`, `least-conn`, `p2c` or `hash` (with `hashKey`).
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub hash_key: Option<String>,
    /// `http` (requests) or `tcp` (whole connections, e.g. TLS passing through).
    #[serde(default = "http_protocol")]
    pub protocol: String,
}

/// One variable in Kubernetes' list form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvVar {
    name: String,
    #[serde(default)]
    value: String,
}

/// Reads `env` as a map or as Kubernetes' list of `{name, value}`.
fn env_map_or_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Env {
        Map(BTreeMap<String, String>),
        List(Vec<EnvVar>),
    }
    match Env::deserialize(deserializer) {
        Ok(Env::Map(map)) => Ok(map),
        Ok(Env::List(list)) => Ok(list.into_iter().map(|v| (v.name, v.value)).collect()),
        Err(_) => Err(serde::de::Error::custom(
            "expected a map of NAME: value, or a list of {name, value}",
        )),
    }
}

fn http_protocol() -> String {
    "http".into()
}

/// A field of the topology that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Topology {
    /// Checks names, references, templates and the dependency graph; returns the pods in
    /// the order they start (a pod after every service it refers to).
    pub fn validate(&self) -> Result<Vec<usize>, Invalid> {
        if self.pods.is_empty() {
            return Err(invalid("pods", "at least one pod is needed"));
        }
        let mut pod_names = BTreeSet::new();
        for (i, pod) in self.pods.iter().enumerate() {
            let at = format!("pods[{i}]");
            check_name(&pod.name, &format!("{at}.name"))?;
            if !pod_names.insert(pod.name.as_str()) {
                return Err(invalid(
                    format!("{at}.name"),
                    format!("two pods are named '{}'", pod.name),
                ));
            }
            pod.validate(&at, self)?;
        }
        let mut service_names = BTreeSet::new();
        for (i, service) in self.services.iter().enumerate() {
            let at = format!("services[{i}]");
            check_name(&service.name, &format!("{at}.name"))?;
            if !service_names.insert(service.name.as_str()) {
                return Err(invalid(
                    format!("{at}.name"),
                    format!("two services are named '{}'", service.name),
                ));
            }
            let Some(pod) = self.pods.iter().find(|p| p.name == service.pod) else {
                return Err(invalid(
                    format!("{at}.pod"),
                    format!("no pod named '{}'", service.pod),
                ));
            };
            if !pod.port_names().any(|p| p == service.port) {
                return Err(invalid(
                    format!("{at}.port"),
                    format!("pod '{}' has no port named '{}'", pod.name, service.port),
                ));
            }
            if !["http", "tcp"].contains(&service.protocol.as_str()) {
                return Err(invalid(format!("{at}.protocol"), "http or tcp"));
            }
            if let Some(policy) = &service.policy {
                if !["round-robin", "least-conn", "p2c", "hash"].contains(&policy.as_str()) {
                    return Err(invalid(
                        format!("{at}.policy"),
                        "one of round-robin, least-conn, p2c, hash",
                    ));
                }
                if policy == "hash" && service.hash_key.is_none() {
                    return Err(invalid(
                        format!("{at}.hashKey"),
                        "the hash policy needs a hashKey",
                    ));
                }
            }
        }
        self.start_order()
    }

    /// The pods a pod needs (through the services it refers to).
    pub fn dependencies(&self, pod: &PodSpec) -> BTreeSet<usize> {
        pod.referenced_services()
            .filter_map(|name| self.services.iter().find(|s| s.name == name))
            .filter_map(|service| self.pods.iter().position(|p| p.name == service.pod))
            .collect()
    }

    fn start_order(&self) -> Result<Vec<usize>, Invalid> {
        let mut order = Vec::new();
        let mut placed = vec![false; self.pods.len()];
        while order.len() < self.pods.len() {
            let next = (0..self.pods.len()).find(|&i| {
                !placed[i]
                    && self
                        .dependencies(&self.pods[i])
                        .iter()
                        .all(|&d| placed[d] && d != i)
            });
            match next {
                Some(i) => {
                    placed[i] = true;
                    order.push(i);
                }
                None => {
                    let stuck: Vec<&str> = (0..self.pods.len())
                        .filter(|&i| !placed[i])
                        .map(|i| self.pods[i].name.as_str())
                        .collect();
                    return Err(invalid(
                        "services",
                        format!(
                            "pods {} wait for each other's services (a cycle)",
                            stuck.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(order)
    }
}

impl PodSpec {
    /// The port names of all its containers.
    pub fn port_names(&self) -> impl Iterator<Item = &str> {
        self.containers
            .iter()
            .flat_map(|c| c.ports.iter().map(|p| p.name.as_str()))
    }

    /// Every template of the pod with the field it is in.
    pub fn templates(&self) -> Vec<(String, &str)> {
        let mut all = Vec::new();
        for (j, c) in self.containers.iter().enumerate() {
            for (k, word) in c.command.iter().enumerate() {
                all.push((format!("containers[{j}].command[{k}]"), word.as_str()));
            }
            for (k, arg) in c.args.iter().enumerate() {
                all.push((format!("containers[{j}].args[{k}]"), arg.as_str()));
            }
            for (name, value) in &c.env {
                all.push((format!("containers[{j}].env.{name}"), value.as_str()));
            }
            if let Some(dir) = &c.working_dir {
                all.push((format!("containers[{j}].workingDir"), dir.as_str()));
            }
            for (kind, probe) in [
                ("readinessProbe", &c.readiness_probe),
                ("livenessProbe", &c.liveness_probe),
            ] {
                let Some(probe) = probe else { continue };
                if let Some(exec) = &probe.exec {
                    for (k, word) in exec.command.iter().enumerate() {
                        all.push((
                            format!("containers[{j}].{kind}.exec.command[{k}]"),
                            word.as_str(),
                        ));
                    }
                }
                if let Some(http) = &probe.http_get {
                    all.push((
                        format!("containers[{j}].{kind}.httpGet.path"),
                        http.path.as_str(),
                    ));
                }
            }
        }
        for (k, file) in self.files.iter().enumerate() {
            all.push((format!("files[{k}].content"), file.content.as_str()));
        }
        all
    }

    /// The services its templates refer to.
    pub fn referenced_services(&self) -> impl Iterator<Item = String> + '_ {
        self.templates()
            .into_iter()
            .filter_map(|(_, text)| Template::parse(text).ok())
            .flat_map(|t| t.services().map(str::to_string).collect::<Vec<_>>())
            .collect::<BTreeSet<_>>()
            .into_iter()
    }

    fn validate(&self, at: &str, topology: &Topology) -> Result<(), Invalid> {
        if self.containers.is_empty() {
            return Err(invalid(
                format!("{at}.containers"),
                "a pod needs at least one container",
            ));
        }
        let mut ports = BTreeSet::new();
        for (j, c) in self.containers.iter().enumerate() {
            let cat = format!("{at}.containers[{j}]");
            check_name(&c.name, &format!("{cat}.name"))?;
            if c.command.is_empty() {
                return Err(invalid(format!("{cat}.command"), "the command is empty"));
            }
            for (k, p) in c.ports.iter().enumerate() {
                check_name(&p.name, &format!("{cat}.ports[{k}].name"))?;
                if p.name == ADMIN_PORT {
                    return Err(invalid(
                        format!("{cat}.ports[{k}].name"),
                        "'admin' is each process's own admin port (PODKIT_ADMIN); choose another name",
                    ));
                }
                if !ports.insert(p.name.as_str()) {
                    return Err(invalid(
                        format!("{cat}.ports[{k}].name"),
                        format!("port '{}' is named twice in the pod", p.name),
                    ));
                }
                if p.port.is_some() && self.replicas > 1 {
                    return Err(invalid(
                        format!("{cat}.ports[{k}].port"),
                        "a pinned port cannot serve more than one replica",
                    ));
                }
            }
        }
        for (j, c) in self.containers.iter().enumerate() {
            for (kind, probe) in [
                ("readinessProbe", &c.readiness_probe),
                ("livenessProbe", &c.liveness_probe),
            ] {
                if let Some(probe) = probe {
                    probe.validate(&format!("{at}.containers[{j}].{kind}"), &ports)?;
                }
            }
        }
        for (field, text) in self.templates() {
            let template =
                Template::parse(text).map_err(|m| invalid(format!("{at}.{field}"), m))?;
            for port in template.ports() {
                if !ports.contains(port) {
                    return Err(invalid(
                        format!("{at}.{field}"),
                        format!("no port named '{port}' in pod '{}'", self.name),
                    ));
                }
            }
            for volume in template.volumes() {
                if !self.volumes.iter().any(|v| v == volume) {
                    return Err(invalid(
                        format!("{at}.{field}"),
                        format!("no volume named '{volume}' in pod '{}'", self.name),
                    ));
                }
            }
            for service in template.services() {
                if !topology.services.iter().any(|s| s.name == service) {
                    return Err(invalid(
                        format!("{at}.{field}"),
                        format!("no service named '{service}'"),
                    ));
                }
            }
        }
        for (k, file) in self.files.iter().enumerate() {
            if file.path.starts_with('/') || file.path.split('/').any(|p| p == "..") {
                return Err(invalid(
                    format!("{at}.files[{k}].path"),
                    "must be relative, inside the replica's directory",
                ));
            }
        }
        Ok(())
    }
}

impl Probe {
    fn validate(&self, at: &str, ports: &BTreeSet<&str>) -> Result<(), Invalid> {
        let kinds = [
            self.http_get.is_some(),
            self.tcp_socket.is_some(),
            self.exec.is_some(),
        ];
        if kinds.iter().filter(|&&k| k).count() != 1 {
            return Err(invalid(at, "give exactly one of httpGet, tcpSocket, exec"));
        }
        let port = self
            .http_get
            .as_ref()
            .map(|h| &h.port)
            .or(self.tcp_socket.as_ref().map(|t| &t.port));
        if let Some(port) = port {
            if port.parse::<u16>().is_err() && port != ADMIN_PORT && !ports.contains(port.as_str())
            {
                return Err(invalid(
                    format!("{at}.port"),
                    format!("no port named '{port}'"),
                ));
            }
        }
        if self.failure_threshold == 0 || self.success_threshold == 0 {
            return Err(invalid(at, "thresholds must be at least 1"));
        }
        Ok(())
    }
}

/// The port name a probe uses for the process's own admin endpoint, e.g.
/// `httpGet: { path: /readyz, port: admin }` for a podkit component.
pub const ADMIN_PORT: &str = "admin";

fn check_name(name: &str, field: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("'{name}' must be lowercase letters, digits and '-'"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Topology {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    const TIERS: &str = r#"
pods:
  - name: front
    containers:
      - name: tls
        command: [podkit, sidecar, tls]
        args: ["--upstream", "{{ service \"cache\" }}"]
  - name: cache
    replicas: 2
    containers:
      - name: cache
        command: [podkit, cache]
        args: ["--listen", "127.0.0.1:{{ port \"http\" }}", "--upstream", "http://{{ service \"app\" }}"]
        ports: [{ name: http }]
  - name: app
    replicas: 3
    containers:
      - name: server
        command: [server]
        ports: [{ name: http }]
        readinessProbe: { httpGet: { path: /ready, port: http } }
services:
  - { name: cache, pod: cache, port: http }
  - { name: app, pod: app, port: http }
"#;

    #[test]
    fn env_is_a_map_or_a_kubernetes_list() {
        let pod = |env: &str| {
            format!("pods:\n  - name: p\n    containers:\n      - name: c\n        command: [x]\n        env: {env}\n")
        };
        let map = parse(&pod("{ A: '1', B: two }"));
        let list = parse(&pod("[{ name: A, value: '1' }, { name: B, value: two }]"));
        assert_eq!(
            map.pods[0].containers[0].env,
            list.pods[0].containers[0].env
        );
        assert_eq!(list.pods[0].containers[0].env["B"], "two");
        let bad: Result<Topology, _> = serde_yaml_ng::from_str(&pod("[{ nom: A }]"));
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("a list of {name, value}"));
    }

    #[test]
    fn start_order_follows_services() {
        let t = parse(TIERS);
        let order = t.validate().unwrap();
        let names: Vec<&str> = order.iter().map(|&i| t.pods[i].name.as_str()).collect();
        assert_eq!(names, vec!["app", "cache", "front"]);
    }

    #[test]
    fn cycles_are_named() {
        let mut t = parse(TIERS);
        t.pods[2].containers[0].args = vec!["{{ service \"cache\" }}".into()];
        let err = t.validate().unwrap_err();
        assert!(
            err.message.contains("cycle")
                && err.message.contains("app")
                && err.message.contains("cache"),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_references_name_the_field() {
        let mut t = parse(TIERS);
        t.pods[0].containers[0].args = vec!["{{ service \"nope\" }}".into()];
        let err = t.validate().unwrap_err();
        assert_eq!(err.field, "pods[0].containers[0].args[0]");
        let mut t = parse(TIERS);
        t.pods[1].containers[0].args = vec!["{{ port \"grpc\" }}".into()];
        assert!(t
            .validate()
            .unwrap_err()
            .message
            .contains("no port named 'grpc'"));
        let mut t = parse(TIERS);
        t.services[0].port = "nope".into();
        assert_eq!(t.validate().unwrap_err().field, "services[0].port");
    }

    #[test]
    fn pinned_ports_need_one_replica() {
        let mut t = parse(TIERS);
        t.pods[2].containers[0].ports[0].port = Some(8080);
        assert_eq!(
            t.validate().unwrap_err().field,
            "pods[2].containers[0].ports[0].port"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_yaml_ng::from_str::<Topology>("pods: []\nservces: []\n").unwrap_err();
        assert!(err.to_string().contains("servces"));
    }
}
