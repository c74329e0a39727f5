//! The runner: starts services and pods in dependency order, keeps each service's
//! backends file in step with the ready replicas of its pod, scales pods, reports status,
//! and stops everything in reverse order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::replica::{ContainerStatus, Replica, Shared};
use crate::spec::{ContainerSpec, PodSpec, RestartPolicy, ServiceSpec, Topology};

/// How often services are brought in step with their pods.
const SYNC_EVERY: Duration = Duration::from_millis(100);
/// After this long a load balancer has read a new backends file (it checks every 500 ms).
const FILE_SEEN_AFTER: Duration = Duration::from_millis(1100);

/// A pod and its replicas.
#[derive(Debug)]
struct PodRuntime {
    spec: PodSpec,
    replicas: Vec<Replica>,
    next_index: usize,
}

/// A service: its address, the file its `podkit lb` follows, and the lb itself.
#[derive(Debug)]
struct ServiceRuntime {
    spec: ServiceSpec,
    listen: SocketAddr,
    file: PathBuf,
    /// Backends its load balancer has surely read.
    backends: usize,
    /// Backends just written to the file, and when.
    pending: Option<(usize, std::time::Instant)>,
}

/// A running topology.
#[derive(Debug)]
pub struct Runner {
    topology: Topology,
    order: Vec<usize>,
    state_dir: PathBuf,
    shared: Shared,
    pods: Mutex<BTreeMap<String, PodRuntime>>,
    services: Mutex<BTreeMap<String, ServiceRuntime>>,
    /// The `podkit lb` of each service, run as a one-process pod.
    service_pods: Mutex<BTreeMap<String, Replica>>,
}

/// `/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub pods: Vec<PodStatus>,
    pub services: Vec<ServiceStatus>,
}

/// One pod in `/status`.
#[derive(Debug, Serialize)]
pub struct PodStatus {
    pub name: String,
    pub replicas: Vec<ReplicaStatus>,
}

/// One replica in `/status`.
#[derive(Debug, Serialize)]
pub struct ReplicaStatus {
    pub index: usize,
    pub ready: bool,
    pub ports: BTreeMap<String, u16>,
    /// The replica's directory: its `files`, scratch space and volumes.
    pub dir: PathBuf,
    pub containers: Vec<ContainerStatus>,
}

/// One service in `/status`.
#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub pod: String,
    pub url: String,
    pub backends: usize,
}

impl Runner {
    /// Prepares a validated topology: service addresses are fixed here.
    pub fn new(
        topology: Topology,
        order: Vec<usize>,
        state_dir: PathBuf,
        mut shared: Shared,
    ) -> Runner {
        let mut services = BTreeMap::new();
        for spec in &topology.services {
            let listen = spec.listen.unwrap_or_else(|| {
                SocketAddr::from(([127, 0, 0, 1], podkit_core::ports::free_port()))
            });
            shared
                .services
                .insert(spec.name.clone(), listen.to_string());
            services.insert(
                spec.name.clone(),
                ServiceRuntime {
                    spec: spec.clone(),
                    listen,
                    file: state_dir
                        .join("services")
                        .join(format!("{}.backends", spec.name)),
                    backends: 0,
                    pending: None,
                },
            );
        }
        Runner {
            topology,
            order,
            state_dir,
            shared,
            pods: Mutex::new(BTreeMap::new()),
            services: Mutex::new(services),
            service_pods: Mutex::new(BTreeMap::new()),
        }
    }

    /// Starts the services, then the pods in order, each once the services it refers to
    /// have a ready replica. Returns when everything has been started.
    pub async fn start(self: &Arc<Self>) -> std::io::Result<()> {
        std::fs::create_dir_all(self.state_dir.join("services"))?;
        let services: Vec<ServiceRuntime> = self
            .lock_services()
            .values()
            .map(|s| s.clone_for_start())
            .collect();
        for service in services {
            std::fs::write(&service.file, "")?;
            self.start_service(&service)?;
        }
        let runner = self.clone();
        tokio::spawn(async move { runner.sync_services().await });
        for &index in &self.order {
            let pod = self.topology.pods[index].clone();
            for name in pod.referenced_services().collect::<Vec<_>>() {
                self.wait_for_service(&name).await;
            }
            self.lock_pods().insert(
                pod.name.clone(),
                PodRuntime {
                    spec: pod.clone(),
                    replicas: Vec::new(),
                    next_index: 0,
                },
            );
            self.scale(&pod.name, pod.replicas)?;
        }
        Ok(())
    }

    fn start_service(&self, service: &ServiceRuntime) -> std::io::Result<()> {
        let mut args = vec![
            "--listen".to_string(),
            service.listen.to_string(),
            "--backends-file".into(),
            service.file.to_string_lossy().into_owned(),
            "--ready-path".into(),
            String::new(),
            "--drain-timeout".into(),
            "5s".into(),
        ];
        if service.spec.protocol == "tcp" {
            args.extend(["--protocol".into(), "tcp".into()]);
        }
        if let Some(policy) = &service.spec.policy {
            args.extend(["--policy".into(), policy.clone()]);
        }
        if let Some(key) = &service.spec.hash_key {
            args.extend(["--hash-key".into(), key.clone()]);
        }
        let pod = PodSpec {
            name: format!("service-{}", service.spec.name),
            replicas: 1,
            restart_policy: RestartPolicy::Always,
            volumes: Vec::new(),
            files: Vec::new(),
            containers: vec![ContainerSpec {
                name: "lb".into(),
                command: vec!["podkit".into(), "lb".into()],
                args,
                env: BTreeMap::new(),
                working_dir: None,
                ports: Vec::new(),
                readiness_probe: None,
                liveness_probe: None,
            }],
        };
        let dir = self.state_dir.join("services").join(&service.spec.name);
        let replica = Replica::start(&pod, 0, BTreeMap::new(), dir, &self.shared)?;
        self.lock_service_pods()
            .insert(service.spec.name.clone(), replica);
        Ok(())
    }

    async fn wait_for_service(&self, name: &str) {
        let mut waited = Duration::ZERO;
        loop {
            if self
                .lock_services()
                .get(name)
                .is_some_and(|s| s.backends > 0)
            {
                return;
            }
            if waited == Duration::from_secs(10) {
                tracing::info!(service = name, "waiting for a ready replica of the service");
            }
            tokio::time::sleep(SYNC_EVERY).await;
            waited += SYNC_EVERY;
        }
    }

    /// Keeps every service's backends file equal to the ready replicas of its pod.
    async fn sync_services(self: Arc<Self>) {
        let mut written: BTreeMap<String, String> = BTreeMap::new();
        loop {
            let ready: BTreeMap<String, Vec<String>> = {
                let pods = self.lock_pods();
                let services = self.lock_services();
                services
                    .values()
                    .map(|s| {
                        let urls = pods
                            .get(&s.spec.pod)
                            .map(|pod| {
                                pod.replicas
                                    .iter()
                                    .filter(|r| r.is_ready())
                                    .filter_map(|r| r.ports.get(&s.spec.port))
                                    .map(|port| format!("http://127.0.0.1:{port}"))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (s.spec.name.clone(), urls)
                    })
                    .collect()
            };
            for (name, urls) in ready {
                let text: String = urls.iter().map(|u| format!("{u}\n")).collect();
                if written.get(&name) == Some(&text) {
                    continue;
                }
                let file = match self.lock_services().get(&name) {
                    Some(s) => s.file.clone(),
                    None => continue,
                };
                let temp = file.with_extension("tmp");
                if std::fs::write(&temp, &text)
                    .and_then(|_| std::fs::rename(&temp, &file))
                    .is_ok()
                {
                    written.insert(name.clone(), text);
                    if let Some(service) = self.lock_services().get_mut(&name) {
                        service.pending = Some((urls.len(), std::time::Instant::now()));
                    }
                }
            }
            // A load balancer reads its file every half second: a count is shown once it
            // has surely been read.
            for service in self.lock_services().values_mut() {
                if let Some((count, since)) = service.pending {
                    if since.elapsed() >= FILE_SEEN_AFTER {
                        service.backends = count;
                        service.pending = None;
                    }
                }
            }
            tokio::time::sleep(SYNC_EVERY).await;
        }
    }

    /// Sets the number of replicas of `pod`: new ones start, the highest ones are taken
    /// out of their services and then stopped.
    pub fn scale(self: &Arc<Self>, pod: &str, replicas: usize) -> std::io::Result<()> {
        let mut pods = self.lock_pods();
        let Some(runtime) = pods.get_mut(pod) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no pod named '{pod}'"),
            ));
        };
        while runtime.replicas.len() < replicas {
            let index = runtime.next_index;
            runtime.next_index += 1;
            let ports = allocate_ports(&runtime.spec);
            let dir = self.state_dir.join("pods").join(format!("{pod}-{index}"));
            let replica = Replica::start(&runtime.spec, index, ports, dir, &self.shared)?;
            runtime.replicas.push(replica);
        }
        if runtime.replicas.len() > replicas {
            let leaving: Vec<Replica> = runtime.replicas.drain(replicas..).collect();
            drop(pods);
            let runner = self.clone();
            tokio::spawn(async move { runner.retire(leaving).await });
        }
        Ok(())
    }

    /// Takes replicas out of service, lets the services see it, then stops them.
    async fn retire(&self, mut leaving: Vec<Replica>) {
        for replica in &mut leaving {
            replica.terminating = true;
        }
        // They are no longer in the pod's list: the next sync drops them from the files,
        // and the load balancers follow within a second.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        for replica in leaving {
            replica.stop().await;
        }
    }

    /// Stops everything: pods in reverse start order, each pod's services just before it.
    pub async fn stop(&self) {
        for &index in self.order.iter().rev() {
            let name = self.topology.pods[index].name.clone();
            let serving: Vec<String> = self
                .topology
                .services
                .iter()
                .filter(|s| s.pod == name)
                .map(|s| s.name.clone())
                .collect();
            for service in serving {
                let lb = self.lock_service_pods().remove(&service);
                if let Some(lb) = lb {
                    lb.stop().await;
                }
            }
            let replicas = self
                .lock_pods()
                .get_mut(&name)
                .map(|p| std::mem::take(&mut p.replicas))
                .unwrap_or_default();
            let stops: Vec<_> = replicas
                .into_iter()
                .map(|r| tokio::spawn(r.stop()))
                .collect();
            for stop in stops {
                let _ = stop.await;
            }
        }
        let rest: Vec<Replica> = std::mem::take(&mut *self.lock_service_pods())
            .into_values()
            .collect();
        for lb in rest {
            lb.stop().await;
        }
    }

    /// The status of every pod and service.
    pub fn status(&self) -> Status {
        let pods = self.lock_pods();
        let services = self.lock_services();
        Status {
            pods: self
                .order
                .iter()
                .map(|&i| &self.topology.pods[i].name)
                .filter_map(|name| pods.get(name))
                .map(|pod| PodStatus {
                    name: pod.spec.name.clone(),
                    replicas: pod
                        .replicas
                        .iter()
                        .map(|r| ReplicaStatus {
                            index: r.index,
                            ready: r.is_ready(),
                            ports: r.ports.clone(),
                            dir: r.dir.clone(),
                            containers: r.containers(),
                        })
                        .collect(),
                })
                .collect(),
            services: services
                .values()
                .map(|s| ServiceStatus {
                    name: s.spec.name.clone(),
                    pod: s.spec.pod.clone(),
                    url: format!("http://{}", s.listen),
                    backends: s.backends,
                })
                .collect(),
        }
    }

    /// Whether every pod has all its replicas ready and every service a backend.
    pub fn all_ready(&self) -> bool {
        let status = self.status();
        status.pods.len() == self.topology.pods.len()
            && status
                .pods
                .iter()
                .all(|p| p.replicas.iter().all(|r| r.ready))
            && status.services.iter().all(|s| s.backends > 0)
    }

    fn lock_pods(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PodRuntime>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_services(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ServiceRuntime>> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_service_pods(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Replica>> {
        self.service_pods.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ServiceRuntime {
    fn clone_for_start(&self) -> ServiceRuntime {
        ServiceRuntime {
            spec: self.spec.clone(),
            listen: self.listen,
            file: self.file.clone(),
            backends: 0,
            pending: None,
        }
    }
}

/// A free port for each named port of the pod (or the pinned one).
fn allocate_ports(pod: &PodSpec) -> BTreeMap<String, u16> {
    pod.containers
        .iter()
        .flat_map(|c| &c.ports)
        .map(|p| {
            (
                p.name.clone(),
                p.port.unwrap_or_else(podkit_core::ports::free_port),
            )
        })
        .collect()
}

/// The status as a table for people.
pub fn table(status: &Status) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<20} {:<8} {:<14} {:<9} {:<6} {:<9} {}\n",
        "POD", "REPLICA", "PROCESS", "STATE", "READY", "RESTARTS", "PORTS"
    ));
    for pod in &status.pods {
        for replica in &pod.replicas {
            let ports = replica
                .ports
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            for c in &replica.containers {
                out.push_str(&format!(
                    "{:<20} {:<8} {:<14} {:<9} {:<6} {:<9} {}\n",
                    pod.name,
                    replica.index,
                    c.name,
                    format!("{:?}", c.state).to_lowercase(),
                    if c.ready { "yes" } else { "no" },
                    c.restarts,
                    ports
                ));
            }
        }
    }
    if !status.services.is_empty() {
        out.push_str(&format!(
            "\n{:<20} {:<28} {}\n",
            "SERVICE", "URL", "READY BACKENDS"
        ));
        for s in &status.services {
            out.push_str(&format!("{:<20} {:<28} {}\n", s.name, s.url, s.backends));
        }
    }
    out
}
