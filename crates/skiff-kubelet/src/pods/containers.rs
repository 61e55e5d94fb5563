//! The pod worker's runtime operations: adopting what a previous agent left, the sandbox,
//! starting containers (image, config, hooks), killing them (preStop, grace) and cleanup.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use skiff_runtime::runtime::{ContainerStatus as RtStatus, Phase, SandboxConfig};
use skiff_runtime::Runtime;

use super::naming;
use super::worker::{field_path, PodWorker};
use crate::events::Kind;

/// Runs a blocking runtime call off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    runtime: &Arc<dyn Runtime>,
    f: impl FnOnce(&dyn Runtime) -> skiff_runtime::Result<T> + Send + 'static,
) -> skiff_runtime::Result<T> {
    let rt = runtime.clone();
    tokio::task::spawn_blocking(move || f(rt.as_ref()))
        .await
        .unwrap_or_else(|e| Err(skiff_runtime::Error::InvalidArgument(format!("runtime task failed: {e}"))))
}

/// A lifecycle hook as a probe, so hooks share the probe runners (exec, httpGet, tcpSocket).
fn hook_as_probe(h: &LifecycleHandler, timeout_seconds: i32) -> Probe {
    Probe {
        exec: h.exec.clone(),
        http_get: h.http_get.clone(),
        tcp_socket: h.tcp_socket.clone(),
        timeout_seconds: Some(timeout_seconds.max(1)),
        ..Default::default()
    }
}

impl PodWorker {
    fn ns(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_else(|| "default".into())
    }

    /// Adopts the sandbox and containers a previous agent made for this pod, so restarts
    /// keep pods running and keep restart counts and last states.
    pub(super) async fn recover(&mut self) {
        let uid = self.uid();
        let sandbox_id = naming::sandbox_id(&uid);
        // Only this pod's sandbox and containers are read: with 100 pods arriving at once,
        // each new worker reading every record was quadratic.
        if let Ok(found) = blocking(&self.shared.runtime, move |rt| rt.sandbox(&sandbox_id)).await {
            self.sandbox = found;
            if let Some(sb) = &self.sandbox {
                self.pod_ip = self.address_of(sb);
            }
        }
        let prefix = naming::container_id_prefix(&uid);
        let Ok(all) = blocking(&self.shared.runtime, move |rt| rt.list_containers_with_prefix(&prefix)).await else { return };
        let mut by_name: BTreeMap<String, Vec<(u32, String, RtStatus)>> = BTreeMap::new();
        for info in all.into_iter().filter(|c| c.config.labels.get(naming::POD_UID) == Some(&uid)) {
            let name = info.config.labels.get(naming::CONTAINER_NAME).cloned().unwrap_or_default();
            let attempt = info.config.labels.get(naming::CONTAINER_ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0);
            by_name.entry(name).or_default().push((attempt, info.config.id.clone(), info.status));
        }
        for (name, mut attempts) in by_name {
            attempts.sort_by_key(|(a, _, _)| *a);
            let st = self.containers.entry(name).or_default();
            if let Some((attempt, id, status)) = attempts.pop() {
                st.attempt = attempt;
                st.current = Some(id);
                if status.phase == Phase::Running {
                    st.running_since = Some(Instant::now());
                }
                st.status = Some(status);
            }
            if let Some((_, id, status)) = attempts.pop() {
                st.last_id = Some(id);
                st.last = Some(status);
            }
            for (_, id, _) in attempts {
                let _ = blocking(&self.shared.runtime, move |rt| rt.remove_container(&id)).await;
            }
        }
        if !self.containers.is_empty() {
            tracing::info!(pod = %self.key(), containers = self.containers.len(), "adopted containers from the runtime");
        }
    }

    fn address_of(&self, sandbox: &skiff_runtime::runtime::SandboxInfo) -> Option<std::net::IpAddr> {
        if sandbox.config.host_network {
            Some(self.shared.config.node_ip)
        } else {
            self.shared.addresses.pod_ip(sandbox)
        }
    }

    fn host_network(&self) -> bool {
        self.pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
    }

    /// The pod's `/etc/resolv.conf` lines (dnsPolicy ClusterFirst by default).
    fn dns_lines(&self) -> Vec<String> {
        let spec = self.pod.spec.as_ref();
        let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
        let cluster_first = policy == "ClusterFirstWithHostNet" || (policy == "ClusterFirst" && !self.host_network());
        if !cluster_first {
            return Vec::new(); // the host's resolv.conf
        }
        let domain = &self.shared.config.cluster_domain;
        let ns = self.ns();
        vec![
            format!("search {ns}.svc.{domain} svc.{domain} {domain}"),
            format!("nameserver {}", self.shared.config.cluster_dns),
            "options ndots:5".into(),
        ]
    }

    /// Creates the pod's sandbox if it has none yet; the error is the event message.
    pub(super) async fn ensure_sandbox(&mut self) -> Result<(), String> {
        if self.sandbox.is_some() {
            return Ok(());
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let hosts = spec
            .host_aliases
            .iter()
            .flatten()
            .map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()))
            .collect();
        let config = SandboxConfig {
            id: naming::sandbox_id(&self.uid()),
            hostname: if self.host_network() {
                crate::config::hostname()
            } else {
                spec.hostname.clone().unwrap_or_else(|| name.clone())
            },
            host_network: self.host_network(),
            dns: self.dns_lines(),
            hosts,
            labels: naming::sandbox_labels(&self.uid(), &self.ns(), &name),
            // Init containers share it too; one container alone needs no shared one.
            shared_shm: spec.containers.len() + spec.init_containers.as_ref().map_or(0, Vec::len) > 1,
        };
        let id = config.id.clone();
        let created = blocking(&self.shared.runtime, move |rt| rt.create_sandbox(&config)).await;
        let sandbox = match created {
            Ok(s) => s,
            Err(skiff_runtime::Error::AlreadyExists { .. }) => blocking(&self.shared.runtime, |rt| rt.list_sandboxes())
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|s| s.config.id == id)
                .ok_or_else(|| format!("sandbox {id} exists but cannot be listed"))?,
            Err(e) => return Err(e.to_string()),
        };
        self.pod_ip = self.address_of(&sandbox);
        self.sandbox = Some(sandbox);
        Ok(())
    }

    /// Tears the sandbox down (releasing the pod IP) once the pod has finished.
    pub(super) async fn release_sandbox(&mut self) {
        if let Some(sb) = self.sandbox.take() {
            let id = sb.config.id.clone();
            if let Err(e) = blocking(&self.shared.runtime, move |rt| rt.remove_sandbox(&id)).await {
                tracing::warn!(pod = %self.key(), error = %e, "could not remove sandbox");
            }
        }
    }

    /// Reads the runtime's status of every current container. Called inline, not through
    /// the blocking pool: it is a few small file reads, done for every pod every second, and
    /// hopping threads for it kept dozens of blocking threads (each with its own allocator
    /// heap, several MB resident) alive in an idle agent.
    pub(super) async fn refresh_statuses(&mut self) {
        for st in self.containers.values_mut() {
            let Some(id) = st.current.clone() else { continue };
            match self.shared.runtime.container_status(&id) {
                Ok(status) => st.status = Some(status),
                Err(skiff_runtime::Error::NotFound { .. }) => {
                    st.current = None;
                    st.status = None;
                }
                Err(e) => tracing::warn!(error = %e, "reading container status failed"),
            }
        }
    }

    /// Sets the pod's volumes up once, then refreshes ConfigMap/Secret/projected/downward
    /// contents every 30 s; on failure, one FailedMount event per volume and the time to
    /// wait before trying again.
    pub(super) async fn ensure_volumes(&mut self) -> Result<(), Duration> {
        const REFRESH: Duration = Duration::from_secs(30);
        match &self.volumes {
            Some((_, at)) if at.elapsed() < REFRESH => return Ok(()),
            Some(_) => {
                if let Err(e) = self.shared.volumes.refresh(&self.pod).await {
                    tracing::warn!(pod = %self.key(), error = %e, "volume refresh failed");
                }
                if let Some((_, at)) = &mut self.volumes {
                    *at = Instant::now();
                }
                return Ok(());
            }
            None => {}
        }
        match self.shared.volumes.setup(&self.pod).await {
            Ok(vols) => {
                self.volumes = Some((vols, Instant::now()));
                Ok(())
            }
            Err(e) => {
                for failure in e.failures() {
                    self.shared.events.pod(&self.pod, None, Kind::Warning, "FailedMount", failure.to_string());
                }
                Err(Duration::from_secs(5))
            }
        }
    }

    /// The container's environment, resolved as the kubelet does (service variables,
    /// envFrom, env with references and expansion).
    async fn container_env(&self, c: &Container) -> Result<Vec<(String, String)>, String> {
        use k8s_openapi::api::core::v1::Service;
        let ns = self.ns();
        let mut services: Vec<Service> = kube::api::Api::<Service>::namespaced(self.shared.client.clone(), &ns)
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        if ns != "default" {
            if let Ok(k) = kube::api::Api::<Service>::namespaced(self.shared.client.clone(), "default").get("kubernetes").await {
                services.push(k);
            }
        }
        let pod_ips: Vec<String> = self.pod_ip.iter().map(|ip| ip.to_string()).collect();
        let host_ips = vec![self.shared.config.node_ip.to_string()];
        let ctx = crate::env::EnvContext {
            services: &services,
            pod_ips: &pod_ips,
            host_ips: &host_ips,
            node_allocatable: &self.shared.allocatable,
        };
        crate::env::container_env(&self.shared.client, &self.pod, c, &ctx).await.map_err(|e| e.to_string())
    }

    /// Makes sure the image is present as the pull policy asks; the error is
    /// (reason, message) for the waiting state.
    async fn ensure_image(&self, c: &Container) -> Result<String, (String, String)> {
        let image = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            if image.ends_with(":latest") || !image.rsplit('/').next().unwrap_or("").contains(':') {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let path = Some(field_path(&self.pod, &c.name));
        let img = image.clone();
        let present = blocking(&self.shared.runtime, move |rt| rt.image_status(&img)).await.ok().flatten();
        match (policy.as_str(), present) {
            ("Never", None) => {
                let message = format!("Container image \"{image}\" is not present with pull policy of Never");
                self.shared.events.pod(&self.pod, path, Kind::Warning, "ErrImageNeverPull", message.clone());
                Err(("ErrImageNeverPull".into(), message))
            }
            ("Always", _) | (_, None) => {
                self.shared.events.pod(&self.pod, path.clone(), Kind::Normal, "Pulling", format!("Pulling image \"{image}\""));
                let started = Instant::now();
                let img = image.clone();
                match blocking(&self.shared.runtime, move |rt| rt.pull_image(&img)).await {
                    Ok(info) => {
                        self.shared.events.pod(
                            &self.pod,
                            path,
                            Kind::Normal,
                            "Pulled",
                            format!("Successfully pulled image \"{image}\" in {}ms", started.elapsed().as_millis()),
                        );
                        Ok(info.id)
                    }
                    Err(e) => {
                        let message = format!("Failed to pull image \"{image}\": {e}");
                        self.shared.events.pod(&self.pod, path, Kind::Warning, "Failed", message.clone());
                        Err(("ErrImagePull".into(), message))
                    }
                }
            }
            (_, Some(info)) => {
                self.shared.events.pod(
                    &self.pod,
                    path,
                    Kind::Normal,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                );
                Ok(info.id)
            }
        }
    }

    /// Creates and starts the next attempt of container `c`.
    pub(super) async fn start_container(&mut self, c: &Container) {
        let now = Instant::now();
        let path = Some(field_path(&self.pod, &c.name));
        let image_id = match self.ensure_image(c).await {
            Ok(id) => id,
            Err((reason, message)) => {
                let st = self.containers.entry(c.name.clone()).or_default();
                st.backoff.on_exit(now, Duration::ZERO);
                st.waiting = Some((reason, message));
                return;
            }
        };
        let env = match self.container_env(c).await {
            Ok(env) => env,
            Err(message) => {
                self.shared.events.pod(&self.pod, path, Kind::Warning, "Failed", format!("Error: {message}"));
                let st = self.containers.entry(c.name.clone()).or_default();
                st.backoff.on_exit(now, Duration::ZERO);
                st.waiting = Some(("CreateContainerConfigError".into(), message));
                return;
            }
        };
        let mounts = match &self.volumes {
            Some((vols, _)) => match self.shared.volumes.mounts_for(&self.pod, c, vols, &env) {
                Ok(m) => m,
                Err(e) => {
                    let message = e.to_string();
                    self.shared.events.pod(&self.pod, path, Kind::Warning, "Failed", format!("Error: {message}"));
                    let st = self.containers.entry(c.name.clone()).or_default();
                    st.backoff.on_exit(now, Duration::ZERO);
                    st.waiting = Some(("CreateContainerConfigError".into(), message));
                    return;
                }
            },
            None => Vec::new(),
        };
        let seccomp_dir = self.shared.config.root.join("seccomp");
        let seccomp = match super::spec::seccomp_profile(&self.pod, c.security_context.as_ref(), &seccomp_dir) {
            Ok(s) => s,
            Err(message) => {
                self.shared.events.pod(&self.pod, path, Kind::Warning, "Failed", format!("Error: {message}"));
                let st = self.containers.entry(c.name.clone()).or_default();
                st.backoff.on_exit(now, Duration::ZERO);
                st.waiting = Some(("CreateContainerConfigError".into(), message));
                return;
            }
        };
        // The previous attempt becomes `last`; the one before it goes away.
        let (attempt, stale) = {
            let st = self.containers.entry(c.name.clone()).or_default();
            match st.current.take() {
                Some(prev) => {
                    let stale = st.last_id.replace(prev);
                    st.last = st.status.take();
                    (st.attempt + 1, stale)
                }
                None => (st.attempt, None),
            }
        };
        if let Some(old) = stale {
            let _ = blocking(&self.shared.runtime, move |rt| rt.remove_container(&old)).await;
        }
        let config = super::spec::container_config(&self.pod, c, attempt, &image_id, env, mounts, seccomp);
        let id = config.id.clone();
        let created = {
            let cfg = config.clone();
            match blocking(&self.shared.runtime, move |rt| rt.create_container(&cfg)).await {
                Err(skiff_runtime::Error::AlreadyExists { .. }) => {
                    // Left over from an agent that died between create and start: redo it.
                    let (cfg, again) = (config.clone(), id.clone());
                    blocking(&self.shared.runtime, move |rt| {
                        rt.remove_container(&again)?;
                        rt.create_container(&cfg)
                    })
                    .await
                }
                other => other,
            }
        };
        let st = self.containers.entry(c.name.clone()).or_default();
        st.attempt = attempt;
        st.exit_counted = false;
        st.probes.clear();
        st.running_since = None;
        st.image_id = Some(image_id);
        if let Err(e) = created {
            let message = e.to_string();
            st.backoff.on_exit(now, Duration::ZERO);
            st.waiting = Some(("CreateContainerError".into(), message.clone()));
            self.shared.events.pod(&self.pod, path, Kind::Warning, "Failed", format!("Error: {message}"));
            return;
        }
        st.current = Some(id.clone());
        self.shared.events.pod(&self.pod, path.clone(), Kind::Normal, "Created", format!("Created container: {}", c.name));
        let start_id = id.clone();
        let started = blocking(&self.shared.runtime, move |rt| rt.start_container(&start_id)).await;
        let status_id = id.clone();
        let status = blocking(&self.shared.runtime, move |rt| rt.container_status(&status_id)).await.ok();
        let st = self.containers.entry(c.name.clone()).or_default();
        st.status = status;
        if let Err(e) = started {
            let message = e.to_string();
            st.waiting = Some(("RunContainerError".into(), message.clone()));
            self.shared.events.pod(&self.pod, path, Kind::Warning, "Failed", format!("Error: {message}"));
            return;
        }
        st.waiting = None;
        st.running_since = Some(Instant::now());
        self.shared.events.pod(&self.pod, path.clone(), Kind::Normal, "Started", format!("Started container {}", c.name));
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            self.run_post_start(c, &id, hook).await;
        }
    }

    async fn run_post_start(&mut self, c: &Container, id: &str, hook: &LifecycleHandler) {
        if let Some(sleep) = &hook.sleep {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
            return;
        }
        let target = crate::probes::Target {
            runtime: self.shared.runtime.clone(),
            container_id: id.to_string(),
            netns: self.sandbox.as_ref().and_then(|s| s.netns_path()),
            pod_ip: self.pod_ip,
        };
        let timeout = self.grace_period().as_secs().max(1) as i32;
        if let crate::probes::Outcome::Failure(message) = crate::probes::run(&hook_as_probe(hook, timeout), c, &target).await {
            self.shared.events.pod(
                &self.pod,
                Some(field_path(&self.pod, &c.name)),
                Kind::Warning,
                "FailedPostStartHook",
                format!("PostStartHook failed: {message}"),
            );
            self.kill_container(&c.name, Duration::from_secs(2)).await;
        }
    }

    /// Stops the current attempt of container `name`: preStop hook first, then SIGTERM and
    /// SIGKILL after what is left of `grace`.
    pub(super) async fn kill_container(&mut self, name: &str, grace: Duration) {
        let deadline = Instant::now() + grace;
        let Some(id) = self.run_pre_stop(name, grace).await else { return };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let result = blocking(&self.shared.runtime, move |rt| rt.stop_container(&id, remaining)).await;
        self.record_stop(name, result);
    }

    fn record_stop(&mut self, name: &str, result: skiff_runtime::Result<RtStatus>) {
        if let Some(st) = self.containers.get_mut(name) {
            match result {
                Ok(status) => st.status = Some(status),
                Err(e) => tracing::warn!(container = name, error = %e, "stopping container failed"),
            }
        }
    }

    /// Announces the kill and runs the container's preStop hook (bounded by `grace`);
    /// returns the runtime id to stop, or `None` when nothing runs.
    async fn run_pre_stop(&mut self, name: &str, grace: Duration) -> Option<String> {
        let st = self.containers.get(name)?;
        let id = st.current.clone()?;
        if st.phase() != Some(Phase::Running) {
            return None;
        }
        let spec: Option<Container> = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().chain(s.init_containers.iter().flatten()).find(|c| c.name == name).cloned());
        self.shared.events.pod(
            &self.pod,
            Some(field_path(&self.pod, name)),
            Kind::Normal,
            "Killing",
            format!("Stopping container {name}"),
        );
        let (Some(c), Some(hook)) = (
            spec.as_ref(),
            spec.as_ref().and_then(|c| c.lifecycle.as_ref()).and_then(|l| l.pre_stop.as_ref()),
        ) else {
            return Some(id);
        };
        let run_hook = async {
            if let Some(sleep) = &hook.sleep {
                tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
                return;
            }
            let target = crate::probes::Target {
                runtime: self.shared.runtime.clone(),
                container_id: id.clone(),
                netns: self.sandbox.as_ref().and_then(|s| s.netns_path()),
                pod_ip: self.pod_ip,
            };
            let probe = hook_as_probe(hook, grace.as_secs().max(1) as i32);
            if let crate::probes::Outcome::Failure(message) = crate::probes::run(&probe, c, &target).await {
                self.shared.events.pod(
                    &self.pod,
                    Some(field_path(&self.pod, name)),
                    Kind::Warning,
                    "FailedPreStopHook",
                    format!("PreStopHook failed: {message}"),
                );
            }
        };
        let _ = tokio::time::timeout(grace, run_hook).await;
        Some(id)
    }

    /// Stops every running container of the pod: preStop hooks one after another, then
    /// all stops at once so that each container gets what is left of the same grace period.
    pub(super) async fn stop_all(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let running: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, st)| st.phase() == Some(Phase::Running))
            .map(|(n, _)| n.clone())
            .collect();
        let mut to_stop = Vec::new();
        for name in running {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(id) = self.run_pre_stop(&name, left).await {
                to_stop.push((name, id));
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let stops = to_stop.into_iter().map(|(name, id)| {
            let runtime = self.shared.runtime.clone();
            async move { (name, blocking(&runtime, move |rt| rt.stop_container(&id, remaining)).await) }
        });
        for (name, result) in futures::future::join_all(stops).await {
            self.record_stop(&name, result);
        }
    }

    /// Removes every container and the sandbox of this pod.
    pub(super) async fn remove_all(&mut self) {
        let uid = self.uid();
        let prefix = naming::container_id_prefix(&uid);
        if let Ok(all) = blocking(&self.shared.runtime, move |rt| rt.list_containers_with_prefix(&prefix)).await {
            for info in all.into_iter().filter(|c| c.config.labels.get(naming::POD_UID) == Some(&uid)) {
                let id = info.config.id.clone();
                let _ = blocking(&self.shared.runtime, move |rt| rt.remove_container(&id)).await;
            }
        }
        self.containers.clear();
        let id = naming::sandbox_id(&uid);
        let _ = blocking(&self.shared.runtime, move |rt| rt.remove_sandbox(&id)).await;
        self.sandbox = None;
        if let Err(e) = self.shared.volumes.teardown(&uid).await {
            tracing::warn!(pod = %self.key(), error = %e, "volume teardown failed");
        }
        self.volumes = None;
    }
}
