//! One replica of a pod: its directory, files and volumes, and a supervisor per process
//! that restarts it by the pod's policy with exponential back-off, probes it for
//! readiness and liveness, and stops it on request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::logs::Logs;
use crate::probe::{self, Streak};
use crate::process::{Launch, Process};
use crate::spec::{ContainerSpec, PodSpec, RestartPolicy};
use crate::template::{Template, Values};

/// Back-off after a process exits: doubles from 1 s up to 30 s, back to 1 s after 10 s of
/// running.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// What the runner shares with every replica.
#[derive(Debug, Clone)]
pub struct Shared {
    pub base: PathBuf,
    pub podkit: PathBuf,
    pub logs: Logs,
    pub grace: Duration,
    pub services: BTreeMap<String, String>,
}

/// The state of one process.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    /// Waiting out the back-off before a restart.
    Waiting,
    Exited,
    Stopped,
    Failed,
}

/// One process as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerStatus {
    pub name: String,
    pub state: State,
    pub ready: bool,
    pub restarts: u32,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    /// Its admin port (`PODKIT_ADMIN`), for podkit components.
    pub admin_port: u16,
    #[serde(skip)]
    has_readiness: bool,
}

/// A running replica.
#[derive(Debug)]
pub struct Replica {
    pub index: usize,
    pub ports: BTreeMap<String, u16>,
    pub dir: PathBuf,
    pub status: Arc<Mutex<Vec<ContainerStatus>>>,
    /// Set when it is being scaled away: services drop it first.
    pub terminating: bool,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Replica {
    /// Prepares the directory and files, then starts every process.
    pub fn start(
        pod: &PodSpec,
        index: usize,
        ports: BTreeMap<String, u16>,
        dir: PathBuf,
        shared: &Shared,
    ) -> std::io::Result<Replica> {
        std::fs::create_dir_all(&dir)?;
        let mut volumes = BTreeMap::new();
        for volume in &pod.volumes {
            let path = dir.join("volumes").join(volume);
            std::fs::create_dir_all(&path)?;
            volumes.insert(volume.clone(), path);
        }
        let values = Values {
            ports: ports.clone(),
            services: shared.services.clone(),
            replica: index,
            dir: dir.clone(),
            volumes,
            base: shared.base.clone(),
            podkit: shared.podkit.clone(),
        };
        for file in &pod.files {
            let path = dir.join(&file.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let content = Template::parse(&file.content)
                .map(|t| t.render(&values))
                .unwrap_or_default();
            std::fs::write(path, content)?;
        }
        let status: Vec<ContainerStatus> = pod
            .containers
            .iter()
            .map(|c| ContainerStatus {
                name: c.name.clone(),
                state: State::Starting,
                ready: false,
                restarts: 0,
                pid: None,
                exit_code: None,
                admin_port: podkit_core::ports::free_port(),
                has_readiness: c.readiness_probe.is_some(),
            })
            .collect();
        let status = Arc::new(Mutex::new(status));
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for (slot, container) in pod.containers.iter().enumerate() {
            let run = Run {
                prefix: format!("{}/{}/{}", pod.name, index, container.name),
                pod: pod.name.clone(),
                index,
                slot,
                container: container.clone(),
                policy: pod.restart_policy,
                values: values.clone(),
                shared: shared.clone(),
                status: status.clone(),
                dir: dir.clone(),
            };
            if let Some(probe) = container.readiness_probe.as_ref() {
                let probe = run.rendered(probe);
                tasks.push(tokio::spawn(readiness(run.clone(), probe, stop.clone())));
            }
            if let Some(probe) = container.liveness_probe.as_ref() {
                let probe = run.rendered(probe);
                tasks.push(tokio::spawn(liveness(run.clone(), probe, stop.clone())));
            }
            tasks.push(tokio::spawn(supervise(run, stop.clone())));
        }
        Ok(Replica {
            index,
            ports,
            dir,
            status,
            terminating: false,
            stop,
            tasks,
        })
    }

    /// Ready when every process runs and every readiness probe passes.
    pub fn is_ready(&self) -> bool {
        let status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        !self.terminating
            && status
                .iter()
                .all(|c| c.state == State::Running && (c.ready || !c.has_readiness))
    }

    /// A copy of the processes' status.
    pub fn containers(&self) -> Vec<ContainerStatus> {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for c in &mut status {
            if !c.has_readiness {
                c.ready = c.state == State::Running;
            }
        }
        status
    }

    /// Stops every process (SIGTERM, grace, SIGKILL) and waits for them.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Everything one process's supervisor needs.
#[derive(Debug, Clone)]
struct Run {
    prefix: String,
    pod: String,
    index: usize,
    slot: usize,
    container: ContainerSpec,
    policy: RestartPolicy,
    values: Values,
    shared: Shared,
    status: Arc<Mutex<Vec<ContainerStatus>>>,
    dir: PathBuf,
}

impl Run {
    fn update(&self, f: impl FnOnce(&mut ContainerStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = status.get_mut(self.slot) {
            f(c);
        }
    }

    fn current(&self) -> ContainerStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner())[self.slot].clone()
    }

    /// The pod's ports, and `admin` for this process's own admin endpoint.
    fn probe_ports(&self) -> BTreeMap<String, u16> {
        let mut ports = self.values.ports.clone();
        ports.insert(crate::spec::ADMIN_PORT.into(), self.current().admin_port);
        ports
    }

    /// The probe with its templates (exec command, HTTP path) rendered.
    fn rendered(&self, probe: &crate::spec::Probe) -> crate::spec::Probe {
        let mut probe = probe.clone();
        if let Some(exec) = probe.exec.as_mut() {
            exec.command = exec.command.iter().map(|w| self.render(w)).collect();
        }
        if let Some(http) = probe.http_get.as_mut() {
            http.path = self.render(&http.path);
        }
        probe
    }

    fn render(&self, text: &str) -> String {
        Template::parse(text)
            .map(|t| t.render(&self.values))
            .unwrap_or_else(|_| text.to_string())
    }

    /// The program: `podkit` is this binary; a path with `/` is relative to the topology file.
    fn program(&self) -> String {
        let first = self.render(&self.container.command[0]);
        if first == "podkit" {
            return self.shared.podkit.to_string_lossy().into_owned();
        }
        if first.contains('/') && !Path::new(&first).is_absolute() {
            return self.shared.base.join(first).to_string_lossy().into_owned();
        }
        first
    }

    fn launch_env(&self) -> Vec<(String, String)> {
        let admin = self.current().admin_port;
        let mut env: Vec<(String, String)> = vec![
            ("PODKIT_ADMIN".into(), format!("127.0.0.1:{admin}")),
            ("PODKIT_POD".into(), self.pod.clone()),
            ("PODKIT_REPLICA".into(), self.index.to_string()),
        ];
        env.retain(|(k, _)| !self.container.env.contains_key(k));
        env.extend(
            self.container
                .env
                .iter()
                .map(|(k, v)| (k.clone(), self.render(v))),
        );
        env
    }
}

async fn supervise(run: Run, stop: CancellationToken) {
    let mut backoff = BACKOFF_START;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let args: Vec<String> = run.container.command[1..]
            .iter()
            .chain(&run.container.args)
            .map(|a| run.render(a))
            .collect();
        let dir = match &run.container.working_dir {
            Some(dir) => run.shared.base.join(run.render(dir)),
            None => run.dir.clone(),
        };
        let program = run.program();
        let env = run.launch_env();
        let launch = Launch {
            program: &program,
            args: &args,
            env: &env,
            dir: &dir,
            prefix: run.prefix.clone(),
        };
        let started = Instant::now();
        let exit = match Process::spawn(launch, &run.shared.logs) {
            Err(err) => {
                run.shared.logs.line(
                    &run.prefix,
                    format!("podkit up: cannot start {program}: {err}"),
                );
                run.update(|c| {
                    c.state = State::Failed;
                    c.pid = None;
                });
                None
            }
            Ok(mut process) => {
                run.update(|c| {
                    c.state = State::Running;
                    c.pid = Some(process.pid);
                    c.exit_code = None;
                });
                tokio::select! {
                    status = process.wait() => status.ok(),
                    _ = stop.cancelled() => {
                        let status = process.stop(run.shared.grace).await;
                        run.update(|c| {
                            c.state = State::Stopped;
                            c.ready = false;
                            c.exit_code = status.and_then(|s| s.code());
                        });
                        return;
                    }
                }
            }
        };
        let success = exit.is_some_and(|s| s.success());
        run.update(|c| {
            c.ready = false;
            c.pid = None;
            c.exit_code = exit.and_then(|s| s.code());
            if exit.is_some() {
                c.state = State::Exited;
            }
        });
        let restart = match run.policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !success,
            RestartPolicy::Never => false,
        };
        if !restart {
            return;
        }
        if started.elapsed() >= STABLE_AFTER {
            backoff = BACKOFF_START;
        }
        run.shared.logs.line(
            &run.prefix,
            format!(
                "podkit up: exited ({}); restarting in {}s",
                describe(exit),
                backoff.as_secs()
            ),
        );
        run.update(|c| {
            c.state = State::Waiting;
            c.restarts += 1;
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => {
                run.update(|c| c.state = State::Stopped);
                return;
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn describe(exit: Option<std::process::ExitStatus>) -> String {
    match exit {
        Some(status) => status.to_string(),
        None => "could not start".into(),
    }
}

async fn readiness(run: Run, probe: crate::spec::Probe, stop: CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(probe.initial_delay.get()) => {}
        _ = stop.cancelled() => return,
    }
    let mut streak = Streak::default();
    let mut pid = None;
    loop {
        let current = run.current();
        if current.state != State::Running || current.pid != pid {
            // A new process starts unready.
            streak = Streak::default();
            pid = current.pid;
            run.update(|c| c.ready = false);
        }
        if current.state == State::Running {
            let ok = probe::check(&probe, &run.probe_ports()).await;
            if let Some(ready) = streak.record(ok, &probe) {
                run.update(|c| c.ready = ready);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(probe::interval(&probe)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn liveness(run: Run, probe: crate::spec::Probe, stop: CancellationToken) {
    let mut streak = Streak::default();
    let mut watched = None;
    let mut since = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(probe::interval(&probe)) => {}
            _ = stop.cancelled() => return,
        }
        let current = run.current();
        if current.pid != watched {
            watched = current.pid;
            streak = Streak::default();
            since = Instant::now();
        }
        let Some(pid) = current.pid.filter(|_| current.state == State::Running) else {
            continue;
        };
        if since.elapsed() < probe.initial_delay.get() {
            continue;
        }
        let ok = probe::check(&probe, &run.probe_ports()).await;
        if streak.record(ok, &probe) == Some(false) {
            run.shared.logs.line(
                &run.prefix,
                "podkit up: liveness probe failed; killing it".into(),
            );
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
