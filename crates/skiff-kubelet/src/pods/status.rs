//! Building the pod's status from the worker's state and writing it through the status
//! subresource when it changed.

use k8s_openapi::api::core::v1::{
    Container, ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodIP, HostIP,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use skiff_runtime::runtime::{ContainerStatus as RtStatus, Phase};

use super::phase::main_phase;
use super::worker::{ContainerState, PodWorker};

fn parse_time(s: Option<&String>) -> Option<Time> {
    s.and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok()).map(Time)
}

fn terminated(rt: &RtStatus, id: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: rt.exit_code.unwrap_or(-1),
        reason: rt.reason.clone().or_else(|| Some(if rt.exit_code == Some(0) { "Completed".into() } else { "Error".into() })),
        message: rt.message.clone(),
        started_at: parse_time(rt.started_at.as_ref()),
        finished_at: parse_time(rt.finished_at.as_ref()),
        container_id: Some(format!("skiff://{id}")),
        signal: None,
    }
}

fn waiting(reason: &str, message: Option<String>) -> K8sState {
    K8sState { waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }), ..Default::default() }
}

/// The status of one container; `default_waiting` is the reason shown before it exists.
fn container_status(c: &Container, st: Option<&ContainerState>, default_waiting: &str) -> ContainerStatus {
    let mut out = ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(waiting(default_waiting, None)),
        ..Default::default()
    };
    let Some(st) = st else { return out };
    out.restart_count = st.attempt as i32;
    out.image_id = st.image_id.clone().unwrap_or_default();
    out.container_id = st.current.as_ref().map(|id| format!("skiff://{id}"));
    out.ready = st.ready();
    out.started = Some(st.started());
    if let (Some(last), Some(id)) = (&st.last, &st.last_id) {
        out.last_state = Some(K8sState { terminated: Some(terminated(last, id)), ..Default::default() });
    }
    let id = st.current.clone().unwrap_or_default();
    out.state = Some(match (&st.status, &st.waiting) {
        (Some(rt), _) if rt.phase == Phase::Running => K8sState {
            running: Some(ContainerStateRunning { started_at: parse_time(rt.started_at.as_ref()) }),
            ..Default::default()
        },
        (Some(rt), Some((reason, message))) if matches!(rt.phase, Phase::Exited | Phase::Unknown) => {
            // Exited and waiting to restart: the exit becomes the last state.
            out.last_state = Some(K8sState { terminated: Some(terminated(rt, &id)), ..Default::default() });
            waiting(reason, Some(message.clone()))
        }
        (Some(rt), _) if matches!(rt.phase, Phase::Exited | Phase::Unknown) => {
            K8sState { terminated: Some(terminated(rt, &id)), ..Default::default() }
        }
        (_, Some((reason, message))) => waiting(reason, Some(message.clone())),
        _ => waiting("ContainerCreating", None),
    });
    out
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, previous: &[PodCondition]) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|p| p.type_ == kind && p.status == status)
        .and_then(|p| p.last_transition_time.clone())
        .or_else(|| Some(Time(k8s_openapi::jiff::Timestamp::now())));
    PodCondition {
        type_: kind.into(),
        status: status.into(),
        reason: if ok { None } else { reason.map(str::to_string) },
        last_transition_time,
        ..Default::default()
    }
}

/// What the agent last wrote into a pod's status (the parts it owns).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Report {
    phase: &'static str,
    conditions: Vec<PodCondition>,
    statuses: Vec<ContainerStatus>,
    init_statuses: Vec<ContainerStatus>,
    pod_ip: Option<std::net::IpAddr>,
    failure: Option<(String, String)>,
    start_time: Option<Time>,
}

impl Report {
    /// The status subresource's body, for a node at `node_ip`.
    fn to_json(&self, node_ip: &str, qos: &str) -> serde_json::Value {
        let mut status = json!({
            "phase": self.phase,
            "conditions": self.conditions,
            "hostIP": node_ip,
            "hostIPs": [HostIP { ip: node_ip.to_string() }],
            "startTime": self.start_time,
            "containerStatuses": self.statuses,
            "qosClass": qos,
        });
        if !self.init_statuses.is_empty() {
            status["initContainerStatuses"] = json!(self.init_statuses);
        }
        if let Some((reason, message)) = &self.failure {
            status["reason"] = json!(reason);
            status["message"] = json!(message);
        }
        if let Some(ip) = self.pod_ip.map(|ip| ip.to_string()) {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([PodIP { ip }]);
        }
        status
    }
}

impl PodWorker {
    /// Computes the status, writes it if it changed, and returns the phase.
    pub(super) async fn report_status(&mut self) -> &'static str {
        // Resources cannot change on a running pod: the class is computed once per worker.
        if self.qos.is_none() {
            let spec = self.pod.spec.as_ref().and_then(|s| serde_json::to_value(s).ok());
            self.qos = Some(spec.map_or("BestEffort", |v| skiff_api::defaults::pod_qos(&v)));
        }
        let default_spec = k8s_openapi::api::core::v1::PodSpec::default();
        let spec = self.pod.spec.as_ref().unwrap_or(&default_spec);
        let inits: &[Container] = spec.init_containers.as_deref().unwrap_or_default();
        let init_statuses: Vec<ContainerStatus> = inits
            .iter()
            .map(|c| container_status(c, self.containers.get(&c.name).map(|b| &**b), "PodInitializing"))
            .collect();
        let initialized = inits.iter().zip(&init_statuses).all(|(c, s)| {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            if sidecar {
                s.started == Some(true)
            } else {
                s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_some_and(|t| t.exit_code == 0)
            }
        }) || spec.containers.iter().any(|c| self.containers.get(&c.name).is_some_and(|st| st.current.is_some()));
        let main_default = if initialized { "ContainerCreating" } else { "PodInitializing" };
        let statuses: Vec<ContainerStatus> = spec
            .containers
            .iter()
            .map(|c| container_status(c, self.containers.get(&c.name).map(|b| &**b), main_default))
            .collect();
        let phase: &'static str = if let Some(t) = self.terminal {
            t
        } else if !initialized {
            "Pending"
        } else {
            main_phase(&statuses, spec.containers.len(), self.restart_policy())
        };
        // What this agent last wrote comes first (the pod from the watch may not show it
        // yet), then what the API has (conditions others own, such as PodScheduled).
        let mut previous: Vec<PodCondition> = self.last_reported.as_ref().map(|r| r.conditions.clone()).unwrap_or_default();
        previous.extend(self.pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default());
        let all_ready = statuses.iter().all(|s| s.ready) && !statuses.is_empty();
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let ready_reason = if terminal { "PodCompleted" } else { "ContainersNotReady" };
        let mut conditions = vec![
            condition("PodReadyToStartContainers", self.sandbox.is_some() || terminal, None, &previous),
            condition("Initialized", initialized, Some("ContainersNotInitialized"), &previous),
            condition("Ready", all_ready && !terminal, Some(ready_reason), &previous),
            condition("ContainersReady", all_ready && !terminal, Some(ready_reason), &previous),
        ];
        if let Some(message) = &self.disruption {
            let since = previous
                .iter()
                .find(|p| p.type_ == "DisruptionTarget" && p.status == "True")
                .and_then(|p| p.last_transition_time.clone())
                .or_else(|| Some(Time(k8s_openapi::jiff::Timestamp::now())));
            conditions.push(PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("TerminationByKubelet".into()),
                message: Some(message.clone()),
                last_transition_time: since,
                ..Default::default()
            });
        }
        // Conditions others own (PodScheduled from the scheduler, DisruptionTarget, ...) stay.
        for p in &previous {
            if !conditions.iter().any(|c| c.type_ == p.type_) {
                conditions.push(p.clone());
            }
        }
        let report = Report {
            phase,
            conditions,
            statuses,
            init_statuses,
            pod_ip: self.pod_ip,
            failure: self.failure.clone(),
            start_time: self.start_time.clone(),
        };
        // Compared as built, before any JSON: with 100 idle pods, building and comparing
        // the JSON form on every full sync was a large share of the agent's idle CPU.
        if self.last_reported.as_ref() == Some(&report) {
            return phase;
        }
        let status = report.to_json(&self.shared.config.node_ip.to_string(), self.qos.unwrap_or("BestEffort"));
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(self.shared.client.clone(), &ns);
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))).await {
            // The pod with this status reaches the worker through the watch; keeping the
            // response too would hold a second copy of the pod.
            Ok(_) => self.last_reported = Some(report),
            // A static pod's mirror may not exist yet (or the API server is down).
            Err(e) if self.is_static => tracing::debug!(pod = %self.key(), error = %e, "mirror pod status update failed"),
            Err(e) => tracing::warn!(pod = %self.key(), error = %e, "status update failed"),
        }
        phase
    }
}
