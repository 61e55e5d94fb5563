//! One worker per pod: a loop that makes the runtime match the pod (sandbox, init
//! containers in order, containers, restarts with back-off, probes), reports status, and on
//! deletion stops everything and lets the API server drop the pod.
//!
//! The loop is level-triggered: every pass re-reads the runtime's view and decides from
//! it, whatever woke it (a pod update, a probe result, or the resync timer).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Preconditions};
use skiff_runtime::runtime::{ContainerStatus as RtStatus, Phase, SandboxInfo};
use tokio::sync::{mpsc, watch};

use super::backoff::Backoff;
use super::exits::ExitWatches;
use super::probing::{Kind, Slot};
use crate::Shared;

/// What the agent knows about one container of the pod (all its attempts).
#[derive(Debug, Default)]
pub(super) struct ContainerState {
    /// Attempt number of `current` (its restart count).
    pub attempt: u32,
    /// Runtime id of the current attempt.
    pub current: Option<String>,
    /// The runtime's last word on the current attempt.
    pub status: Option<RtStatus>,
    /// The previous attempt's final status (`lastState`, `logs --previous`).
    pub last: Option<RtStatus>,
    /// Runtime id of the previous attempt, kept for its logs until the next restart.
    pub last_id: Option<String>,
    /// Restart back-off.
    pub backoff: Backoff,
    /// The current attempt's exit has been counted into the back-off.
    pub exit_counted: bool,
    /// Why there is no running container (`ErrImagePull`, `CreateContainerError`, ...).
    pub waiting: Option<(String, String)>,
    /// Image id of the current attempt.
    pub image_id: Option<String>,
    /// Probes of the current attempt.
    pub probes: BTreeMap<ProbeKey, Slot>,
    /// When the current attempt was seen running (for probe delays and back-off resets).
    pub running_since: Option<Instant>,
}

/// Orders probe slots deterministically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum ProbeKey {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKey {
    pub fn kind(self) -> Kind {
        match self {
            ProbeKey::Startup => Kind::Startup,
            ProbeKey::Liveness => Kind::Liveness,
            ProbeKey::Readiness => Kind::Readiness,
        }
    }
}

impl ContainerState {
    /// Runtime phase of the current attempt.
    pub fn phase(&self) -> Option<Phase> {
        self.status.as_ref().map(|s| s.phase)
    }

    /// The startup probe passed (or there is none) and the container runs.
    pub fn started(&self) -> bool {
        self.phase() == Some(Phase::Running)
            && self.probes.get(&ProbeKey::Startup).is_none_or(|s| s.verdict == Some(true))
    }

    /// Ready: started and the readiness probe passed (or there is none).
    pub fn ready(&self) -> bool {
        self.started() && self.probes.get(&ProbeKey::Readiness).is_none_or(|s| s.verdict == Some(true))
    }
}

/// A probe result delivered back to the worker.
#[derive(Debug)]
pub(super) struct ProbeResult {
    pub container: String,
    pub attempt: u32,
    pub key: ProbeKey,
    pub outcome: crate::probes::Outcome,
}

/// What the next pass should do.
pub(super) enum Flow {
    /// Run again after this long (or earlier when woken).
    Continue(Duration),
    /// The pod is gone: the worker ends.
    Done,
}

/// The worker of one pod.
pub struct PodWorker {
    pub(super) shared: Arc<Shared>,
    /// The latest pod, shared with the manager's channel (one copy per pod).
    pub(super) pod: Arc<Pod>,
    /// The pod disappeared from the API (force-deleted).
    pub(super) gone: bool,
    pub(super) sandbox: Option<SandboxInfo>,
    pub(super) pod_ip: Option<IpAddr>,
    /// Boxed: a map node holds eleven entries inline, and a ContainerState is large, so
    /// unboxed every pod paid for eleven of them (~6 KB) to hold its one or two.
    pub(super) containers: BTreeMap<String, Box<ContainerState>>,
    pub(super) start_time: Option<Time>,
    pub(super) last_reported: Option<super::status::Report>,
    /// The pod reached Succeeded or Failed; nothing is restarted any more.
    pub(super) terminal: Option<&'static str>,
    pub(super) recovered: bool,
    /// The pod's volumes once set up, and when they were last refreshed.
    pub(super) volumes: Option<(crate::volumes::PodVolumes, Instant)>,
    pub(super) probe_tx: mpsc::UnboundedSender<ProbeResult>,
    probe_rx: mpsc::UnboundedReceiver<ProbeResult>,
    /// A static pod from the manifests directory: its status goes to the mirror pod and
    /// the API is never asked to delete it.
    pub(super) is_static: bool,
    /// Why the agent failed the pod (`Evicted`, `DeadlineExceeded`): status reason and message.
    pub(super) failure: Option<(String, String)>,
    /// The message of the `DisruptionTarget` condition, when the agent evicted the pod.
    pub(super) disruption: Option<String>,
    /// Admission under node pressure was checked.
    admitted: bool,
    /// When `sync` last ran.
    last_full_sync: Instant,
    /// The pod's QoS class, once computed.
    pub(super) qos: Option<&'static str>,
    /// Exit watches of the running containers, and whether they cover every one of them.
    exits: ExitWatches,
    exits_cover_all: bool,
}

/// The longest a pod goes without a full sync (volume refreshes, status drift).
const FULL_RESYNC: Duration = Duration::from_secs(10);

/// When a worker that waits `wait` wakes. Waits of one resync interval end on the
/// interval's next common tick, and longer ones (idle pods) on the first common tick at or
/// after `wait`, so pods are looked at in shared wake-ups of the runtime instead of each at
/// its own moment: with 100 pods, the scattered timers were about 100 thread wake-ups a
/// second. Shorter waits (busy pods) are exact.
fn wake_at(wait: Duration, resync: Duration) -> tokio::time::Instant {
    static EPOCH: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let now = tokio::time::Instant::now();
    if wait < resync || resync.is_zero() {
        return now + wait;
    }
    let epoch = *EPOCH.get_or_init(|| now);
    let period = resync.as_nanos();
    let ticks = if wait == resync {
        now.duration_since(epoch).as_nanos() / period + 1
    } else {
        (now + wait).duration_since(epoch).as_nanos().div_ceil(period)
    };
    epoch + resync * ticks as u32
}

impl PodWorker {
    /// A worker for `pod`.
    pub fn new(shared: Arc<Shared>, pod: Arc<Pod>) -> Self {
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        let is_static = crate::static_pods::is_static(&pod);
        Self {
            is_static,
            failure: None,
            disruption: None,
            admitted: false,
            last_full_sync: Instant::now(),
            qos: None,
            exits: ExitWatches::default(),
            exits_cover_all: false,
            shared,
            pod,
            gone: false,
            sandbox: None,
            pod_ip: None,
            containers: BTreeMap::new(),
            start_time: None,
            last_reported: None,
            terminal: None,
            recovered: false,
            volumes: None,
            probe_tx,
            probe_rx,
        }
    }

    /// `namespace/name` for logs.
    pub(super) fn key(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
            self.pod.metadata.name.as_deref().unwrap_or_default()
        )
    }

    pub(super) fn uid(&self) -> String {
        self.pod.metadata.uid.clone().unwrap_or_default()
    }

    /// Runs until the pod is gone. `updates` carries the latest pod (`None` once deleted
    /// from the API); `done` gets the pod UID when the worker ends.
    pub async fn run(mut self, mut updates: watch::Receiver<Option<Arc<Pod>>>, done: mpsc::UnboundedSender<String>) {
        let uid = self.uid();
        let mut evictions = self.shared.eviction.subscribe();
        let mut timer_only = false;
        loop {
            // A timer wake-up of a settled pod only looks for changes (cheap); the full
            // sync, which rebuilds and compares the pod's whole status, runs when something
            // is due or changed, and at least every FULL_RESYNC. A settled pod whose
            // containers' exits are watched sleeps until its next probe or full sync.
            let resync = self.shared.config.resync_interval;
            let wait = if timer_only && self.settled() {
                self.idle_wait()
            } else {
                self.last_full_sync = Instant::now();
                // Boxed: the sync's state machine is most of the worker's future, which
                // otherwise every idle pod's task would hold inline between syncs.
                match Box::pin(self.sync()).await {
                    Flow::Continue(d) => {
                        self.watch_exits();
                        if d == resync && self.settled() {
                            self.idle_wait()
                        } else {
                            d
                        }
                    }
                    Flow::Done => break,
                }
            };
            timer_only = false;
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    match updates.borrow_and_update().clone() {
                        Some(pod) => self.pod = pod,
                        None => self.gone = true,
                    }
                    if self.is_static {
                        // A (new) mirror pod: write the whole status to it again.
                        self.last_reported = None;
                    }
                }
                Some(result) = self.probe_rx.recv() => self.on_probe_result(result).await,
                // A container exited, or some pod's eviction was asked for: sync now.
                _ = self.exits.any_exited() => {}
                Ok(()) = evictions.changed() => {}
                _ = tokio::time::sleep_until(wake_at(wait, resync)) => timer_only = true,
            }
        }
        self.shared.eviction.track(&uid, None);
        let _ = done.send(uid);
    }

    /// True when a timer wake-up needs no full sync: every container runs as last seen, no
    /// probe is due, no eviction or deadline is pending, and the last full sync is recent.
    /// With 100 idle pods the full syncs every second were most of the agent's idle CPU.
    fn settled(&self) -> bool {
        let now = Instant::now();
        if now.saturating_duration_since(self.last_full_sync) >= FULL_RESYNC
            || self.terminal.is_some()
            || self.gone
            || self.pod.metadata.deletion_timestamp.is_some()
            || self.sandbox.is_none()
            || self.pod.spec.as_ref().is_some_and(|s| s.active_deadline_seconds.is_some())
            || self.shared.eviction.requested(&self.uid())
        {
            return false;
        }
        let expected = self.pod.spec.as_ref().map_or(0, |s| s.containers.len());
        if self.containers.values().filter(|st| st.current.is_some()).count() < expected {
            return false;
        }
        // Init containers that ran to completion stay exited; anything else must be running
        // (an exited main container may be due a restart when its back-off ends).
        let completed_inits: Vec<&str> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .filter(|c| c.restart_policy.as_deref() != Some("Always"))
            .map(|c| c.name.as_str())
            .collect();
        for (name, st) in &self.containers {
            let Some(id) = &st.current else { continue };
            let was = st.phase();
            let may_be_exited = completed_inits.contains(&name.as_str()) && st.status.as_ref().and_then(|s| s.exit_code) == Some(0);
            match was {
                Some(Phase::Running) => {}
                Some(Phase::Exited) if may_be_exited => {}
                _ => return false,
            }
            if st.probes.values().any(|slot| slot.due(now)) {
                return false;
            }
            match self.shared.runtime.container_status(id) {
                Ok(status) if Some(status.phase) == was => {}
                _ => return false,
            }
        }
        true
    }

    /// Watch the exits of the containers that run now (after a sync read their statuses).
    fn watch_exits(&mut self) {
        let running: Vec<&str> = self
            .containers
            .values()
            .filter(|st| st.phase() == Some(Phase::Running))
            .filter_map(|st| st.current.as_deref())
            .collect();
        self.exits_cover_all = self.exits.watch_only(self.shared.runtime.as_ref(), &running);
    }

    /// How long a settled pod may sleep: until its next probe or full sync when every
    /// running container's exit is watched, else one resync interval (polling).
    fn idle_wait(&self) -> Duration {
        let resync = self.shared.config.resync_interval;
        if !self.exits_cover_all {
            return resync;
        }
        let probes = self.containers.values().flat_map(|st| st.probes.values()).filter(|s| !s.in_flight).map(|s| s.next);
        let until = probes.fold(self.last_full_sync + FULL_RESYNC, Instant::min);
        until.saturating_duration_since(Instant::now()).max(resync)
    }

    async fn sync(&mut self) -> Flow {
        if !self.recovered {
            self.recover().await;
            self.recovered = true;
        }
        if self.gone || self.pod.metadata.deletion_timestamp.is_some() {
            return self.terminate_and_remove().await;
        }
        if self.start_time.is_none() {
            self.start_time = self
                .pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .or_else(|| Some(Time(k8s_openapi::jiff::Timestamp::now())));
        }
        if let Some(phase) = self.api_terminal_phase() {
            self.terminal.get_or_insert(phase);
        }
        if self.terminal.is_none() {
            self.check_eviction_and_deadline().await;
        }
        let uid = self.uid();
        self.shared.eviction.track(&uid, self.terminal.is_none().then_some(&self.pod));
        if self.terminal.is_some() {
            self.refresh_statuses().await;
            self.stop_all(Duration::from_secs(0)).await;
            self.release_sandbox().await;
            self.report_status().await;
            return Flow::Continue(Duration::from_secs(30));
        }
        if let Err(message) = self.ensure_sandbox().await {
            self.shared.events.pod(
                &self.pod,
                None,
                crate::events::Kind::Warning,
                "FailedCreatePodSandBox",
                format!("Failed to create pod sandbox: {message}"),
            );
            self.report_status().await;
            // Usually the pod network is not up yet right after the agent starts (it waits for
            // the node's podCIDR): retrying in 5 s made the first pod on a new node take 5 s.
            return Flow::Continue(Duration::from_secs(1));
        }
        if let Err(wait) = self.ensure_volumes().await {
            self.report_status().await;
            return Flow::Continue(wait);
        }
        self.refresh_statuses().await;
        let mut busy = false;
        match self.sync_init_containers().await {
            InitOutcome::Done => busy |= self.sync_main_containers().await,
            InitOutcome::InProgress => busy = true,
            InitOutcome::Failed => self.terminal = Some("Failed"),
        }
        self.schedule_probes();
        let phase = self.report_status().await;
        if matches!(phase, "Succeeded" | "Failed") {
            self.terminal = Some(phase);
            self.stop_all(Duration::from_secs(0)).await;
            self.release_sandbox().await;
        }
        Flow::Continue(if busy { Duration::from_millis(200) } else { self.shared.config.resync_interval })
    }

    /// Fails the pod when the eviction manager asked for it, when `activeDeadlineSeconds`
    /// ran out, or when node pressure forbids starting it (admission), as the kubelet does.
    async fn check_eviction_and_deadline(&mut self) {
        let uid = self.uid();
        if let Some(eviction) = self.shared.eviction.take(&uid) {
            self.shared.events.pod(&self.pod, None, crate::events::Kind::Warning, &eviction.reason, eviction.message.clone());
            self.disruption = Some(eviction.message.clone());
            self.failure = Some((eviction.reason, eviction.message));
            self.terminal = Some("Failed");
            return;
        }
        if self.deadline_exceeded() {
            let message = "Pod was active on the node longer than the specified deadline".to_string();
            self.shared.events.pod(&self.pod, None, crate::events::Kind::Normal, "DeadlineExceeded", message.clone());
            self.failure = Some(("DeadlineExceeded".into(), message));
            self.refresh_statuses().await;
            let grace = self.grace_period();
            self.stop_all(grace).await;
            self.terminal = Some("Failed");
            return;
        }
        if !self.admitted {
            self.admitted = true;
            let fresh = self.containers.is_empty()
                && self.sandbox.is_none()
                && self.pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_none_or(|p| p == "Pending");
            if fresh {
                if let Err(message) = crate::eviction::admit(&self.pod, &self.shared.eviction.conditions()) {
                    self.shared.events.pod(&self.pod, None, crate::events::Kind::Warning, "Evicted", message.clone());
                    self.failure = Some(("Evicted".into(), format!("Pod was rejected: {message}")));
                    self.terminal = Some("Failed");
                }
            }
        }
    }

    /// `activeDeadlineSeconds` counted from the pod's start time ran out.
    fn deadline_exceeded(&self) -> bool {
        let Some(deadline) = self.pod.spec.as_ref().and_then(|s| s.active_deadline_seconds) else { return false };
        let Some(start) = &self.start_time else { return false };
        k8s_openapi::jiff::Timestamp::now().as_second() - start.0.as_second() >= deadline
    }

    fn api_terminal_phase(&self) -> Option<&'static str> {
        match self.pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded") => Some("Succeeded"),
            Some("Failed") => Some("Failed"),
            _ => None,
        }
    }

    pub(super) fn restart_policy(&self) -> &str {
        self.pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
    }

    pub(super) fn grace_period(&self) -> Duration {
        let seconds = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(super::spec::DEFAULT_GRACE_SECONDS);
        Duration::from_secs(seconds.max(0) as u64)
    }

    /// Init containers in order; sidecars (restartPolicy Always) must have started before
    /// the next one runs and keep running.
    async fn sync_init_containers(&mut self) -> InitOutcome {
        // The pod's Arc, not a clone of the list: cloning it on every sync was a large
        // allocation each time (and with glibc's allocator, a heap consolidation).
        let pod = self.pod.clone();
        let inits = pod.spec.as_ref().and_then(|s| s.init_containers.as_deref()).unwrap_or_default();
        let main_started = self.pod.spec.as_ref().is_some_and(|s| {
            s.containers.iter().any(|c| self.containers.get(&c.name).is_some_and(|st| st.current.is_some()))
        });
        for c in inits {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            if sidecar {
                self.sync_one(c, "Always").await;
                if !self.containers.get(&c.name).is_some_and(|st| st.started()) && !main_started {
                    return InitOutcome::InProgress;
                }
                continue;
            }
            if main_started {
                // Init containers ran before this agent (re)started the main ones.
                continue;
            }
            let phase = self.containers.get(&c.name).and_then(|st| st.phase());
            let exit = self.containers.get(&c.name).and_then(|st| st.status.as_ref()).and_then(|s| s.exit_code);
            match (phase, exit) {
                (Some(Phase::Exited), Some(0)) => continue,
                (Some(Phase::Exited), _) | (Some(Phase::Unknown), _) if self.restart_policy() == "Never" => {
                    return InitOutcome::Failed;
                }
                _ => {
                    // Init containers restart on failure unless the pod never restarts.
                    self.sync_one(c, "OnFailure").await;
                    return InitOutcome::InProgress;
                }
            }
        }
        InitOutcome::Done
    }

    /// Main containers; returns whether something is still starting.
    async fn sync_main_containers(&mut self) -> bool {
        // The pod's Arc, not a clone of the list (see sync_init_containers).
        let pod = self.pod.clone();
        let containers = pod.spec.as_ref().map_or(&[][..], |s| &s.containers[..]);
        let policy = self.restart_policy().to_string();
        let mut busy = false;
        for c in containers {
            busy |= self.sync_one(c, &policy).await;
        }
        busy
    }

    /// Brings one container to what `policy` wants; returns whether it is still starting.
    async fn sync_one(&mut self, c: &Container, policy: &str) -> bool {
        let now = Instant::now();
        let st = self.containers.entry(c.name.clone()).or_default();
        match st.phase() {
            None => {
                if st.backoff.waiting(now) {
                    if st.waiting.as_ref().is_some_and(|(r, _)| r == "ErrImagePull") {
                        let image = c.image.clone().unwrap_or_default();
                        st.waiting = Some(("ImagePullBackOff".into(), format!("Back-off pulling image \"{image}\"")));
                        self.shared.events.pod(
                            &self.pod,
                            Some(field_path(&self.pod, &c.name)),
                            crate::events::Kind::Normal,
                            "BackOff",
                            format!("Back-off pulling image \"{image}\""),
                        );
                    }
                    return false;
                }
                self.start_container(c).await;
                true
            }
            Some(Phase::Created) => {
                let id = st.current.clone().unwrap_or_default();
                let rt = self.shared.runtime.clone();
                let _ = tokio::task::spawn_blocking(move || rt.start_container(&id)).await;
                true
            }
            Some(Phase::Running) => {
                if st.running_since.is_none() {
                    st.running_since = Some(now);
                }
                false
            }
            Some(Phase::Exited) | Some(Phase::Unknown) => {
                let code = st.status.as_ref().and_then(|s| s.exit_code).unwrap_or(-1);
                let restart = match policy {
                    "Always" => true,
                    "OnFailure" => code != 0,
                    _ => false,
                };
                if !restart {
                    return false;
                }
                if !st.exit_counted {
                    st.exit_counted = true;
                    let ran = st.running_since.map(|s| now.saturating_duration_since(s)).unwrap_or_default();
                    st.backoff.on_exit(now, ran);
                }
                if st.backoff.waiting(now) {
                    let wait = st.backoff.current_wait(now);
                    if st.waiting.as_ref().is_none_or(|(r, _)| r != "CrashLoopBackOff") {
                        let message = format!(
                            "back-off {}s restarting failed container={} pod={}_{}({})",
                            wait.as_secs().max(1),
                            c.name,
                            self.pod.metadata.name.as_deref().unwrap_or_default(),
                            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
                            self.pod.metadata.uid.as_deref().unwrap_or_default()
                        );
                        st.waiting = Some(("CrashLoopBackOff".into(), message));
                        self.shared.events.pod(
                            &self.pod,
                            Some(field_path(&self.pod, &c.name)),
                            crate::events::Kind::Warning,
                            "BackOff",
                            "Back-off restarting failed container".into(),
                        );
                    }
                    return false;
                }
                self.start_container(c).await;
                true
            }
        }
    }

    /// Starts probe runs that are due.
    fn schedule_probes(&mut self) {
        let now = Instant::now();
        let spec_containers: Vec<Container> = self
            .pod
            .spec
            .as_ref()
            .map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()).cloned().collect())
            .unwrap_or_default();
        for c in spec_containers {
            let Some(st) = self.containers.get_mut(&c.name) else { continue };
            if st.phase() != Some(Phase::Running) {
                continue;
            }
            let started = st.running_since.unwrap_or(now);
            if st.probes.is_empty() {
                for (key, probe) in [
                    (ProbeKey::Startup, &c.startup_probe),
                    (ProbeKey::Liveness, &c.liveness_probe),
                    (ProbeKey::Readiness, &c.readiness_probe),
                ] {
                    if let Some(p) = probe {
                        st.probes.insert(key, Slot::new(p.clone(), started));
                    }
                }
            }
            let startup_done = st.probes.get(&ProbeKey::Startup).is_none_or(|s| s.verdict == Some(true));
            let Some(id) = st.current.clone() else { continue };
            for (key, slot) in st.probes.iter_mut() {
                if *key != ProbeKey::Startup && !startup_done {
                    continue;
                }
                if *key == ProbeKey::Startup && slot.verdict == Some(true) {
                    continue;
                }
                if !slot.due(now) {
                    continue;
                }
                slot.in_flight = true;
                let target = crate::probes::Target {
                    runtime: self.shared.runtime.clone(),
                    container_id: id.clone(),
                    netns: self.sandbox.as_ref().and_then(|s| s.netns_path()),
                    pod_ip: self.pod_ip,
                };
                let probe = slot.probe.clone();
                let container = c.clone();
                let tx = self.probe_tx.clone();
                let (key, attempt) = (*key, st.attempt);
                tokio::spawn(async move {
                    let outcome = crate::probes::run(&probe, &container, &target).await;
                    let _ = tx.send(ProbeResult { container: container.name.clone(), attempt, key, outcome });
                });
            }
        }
    }

    async fn on_probe_result(&mut self, result: ProbeResult) {
        let now = Instant::now();
        let Some(st) = self.containers.get_mut(&result.container) else { return };
        if st.attempt != result.attempt {
            return; // a result for an attempt that has since been replaced
        }
        let Some(slot) = st.probes.get_mut(&result.key) else { return };
        let success = result.outcome == crate::probes::Outcome::Success;
        let changed = slot.record(success, now);
        if let crate::probes::Outcome::Failure(message) = &result.outcome {
            self.shared.events.pod(
                &self.pod,
                Some(field_path(&self.pod, &result.container)),
                crate::events::Kind::Warning,
                "Unhealthy",
                format!("{} probe failed: {message}", result.key.kind().label()),
            );
        }
        if changed == Some(false) && matches!(result.key, ProbeKey::Liveness | ProbeKey::Startup) {
            let what = if result.key == ProbeKey::Liveness { "liveness" } else { "startup" };
            self.shared.events.pod(
                &self.pod,
                Some(field_path(&self.pod, &result.container)),
                crate::events::Kind::Normal,
                "Killing",
                format!("Container {} failed {what} probe, will be restarted", result.container),
            );
            let grace = self.grace_period();
            self.kill_container(&result.container, grace).await;
        }
    }
}

/// How init containers stand.
enum InitOutcome {
    Done,
    InProgress,
    Failed,
}

/// `spec.containers{name}` or `spec.initContainers{name}` for event field paths.
pub(super) fn field_path(pod: &Pod, name: &str) -> String {
    let init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|list| list.iter().any(|c| c.name == name));
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

impl PodWorker {
    /// Stops everything, removes the pod's runtime objects and, unless the pod is already
    /// gone, deletes it for good (grace 0, UID precondition) as the kubelet does.
    async fn terminate_and_remove(&mut self) -> Flow {
        let grace = if self.gone { Duration::from_secs(2) } else { self.grace_period() };
        self.refresh_statuses().await;
        self.stop_all(grace).await;
        self.remove_all().await;
        if !self.gone && !self.is_static {
            let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
            let name = self.pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &ns);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: self.pod.metadata.uid.clone(), resource_version: None }),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => {
                    tracing::warn!(pod = %self.key(), error = %e, "final pod delete failed; retrying");
                    return Flow::Continue(Duration::from_secs(2));
                }
            }
        }
        tracing::info!(pod = %self.key(), "pod removed from node");
        Flow::Done
    }
}

#[cfg(test)]
mod wake_tests {
    use super::*;

    #[test]
    fn idle_waits_end_on_common_ticks_and_others_are_exact() {
        let resync = Duration::from_millis(1000);
        let before = tokio::time::Instant::now();
        let a = wake_at(resync, resync);
        std::thread::sleep(Duration::from_millis(30));
        let b = wake_at(resync, resync);
        // The same tick, or (when a tick passed between the two calls) exactly the next one.
        let apart = b.duration_since(a);
        assert!(apart.is_zero() || apart == resync, "two idle pods looking 30 ms apart wake on common ticks: {apart:?}");
        assert!(a > before && a <= before + resync + Duration::from_millis(1), "within one interval");
        let now = tokio::time::Instant::now();
        let exact = wake_at(Duration::from_millis(200), resync);
        assert!(exact >= now + Duration::from_millis(200) && exact < now + Duration::from_millis(250));
        // Longer (idle) waits end on the first common tick at or after the wait.
        let now = tokio::time::Instant::now();
        let long = wake_at(Duration::from_millis(7300), resync);
        assert!(long >= now + Duration::from_millis(7300) && long <= now + Duration::from_millis(8301), "{:?}", long - now);
        assert_eq!(long.duration_since(a).as_nanos() % resync.as_nanos(), 0, "on a common tick");
    }
}
