//! Probe scheduling for one container attempt: when each probe is due, its consecutive
//! successes and failures against the thresholds, and the verdict.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Probe;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `startupProbe`: holds the others back until it passes; failing it restarts.
    Startup,
    /// `livenessProbe`: failing it restarts the container.
    Liveness,
    /// `readinessProbe`: gates the container's (and so the pod's) readiness.
    Readiness,
}

impl Kind {
    /// The name used in events (`Liveness probe failed: ...`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// State of one probe of one container attempt.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The probe spec.
    pub probe: Probe,
    /// When it may run next.
    pub next: Instant,
    /// A run is in progress.
    pub in_flight: bool,
    successes: i32,
    failures: i32,
    /// The settled verdict: `Some(true)` once successThreshold consecutive successes were
    /// seen, `Some(false)` after failureThreshold consecutive failures.
    pub verdict: Option<bool>,
}

impl Slot {
    /// A slot for a container that started at `started`.
    pub fn new(probe: Probe, started: Instant) -> Self {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        Self { probe, next: started + delay, in_flight: false, successes: 0, failures: 0, verdict: None }
    }

    /// Whether a run should start at `now`.
    pub fn due(&self, now: Instant) -> bool {
        !self.in_flight && now >= self.next
    }

    fn period(&self) -> Duration {
        Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64)
    }

    /// Records a finished run at `now`; returns the verdict if this run changed it.
    pub fn record(&mut self, success: bool, now: Instant) -> Option<bool> {
        self.in_flight = false;
        self.next = now + self.period();
        let before = self.verdict;
        if success {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
                self.verdict = Some(true);
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) {
                self.verdict = Some(false);
            }
        }
        (self.verdict != before).then_some(self.verdict).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn thresholds_settle_the_verdict() {
        let t = Instant::now();
        let mut s = Slot::new(probe(serde_json::json!({"failureThreshold": 2, "successThreshold": 2, "periodSeconds": 5, "initialDelaySeconds": 3})), t);
        assert!(!s.due(t));
        assert!(s.due(t + Duration::from_secs(3)));
        s.in_flight = true;
        assert!(!s.due(t + Duration::from_secs(3)));
        assert_eq!(s.record(true, t), None);
        assert_eq!(s.next, t + Duration::from_secs(5));
        assert_eq!(s.record(true, t), Some(true));
        assert_eq!(s.record(false, t), None);
        assert_eq!(s.record(false, t), Some(false));
        assert_eq!(s.record(false, t), None);
        assert_eq!(s.verdict, Some(false));
    }

    #[test]
    fn defaults_are_upstreams() {
        let t = Instant::now();
        let mut s = Slot::new(probe(serde_json::json!({})), t);
        assert!(s.due(t));
        assert_eq!(s.record(true, t), Some(true));
        assert_eq!(s.next, t + Duration::from_secs(10));
        s.record(false, t);
        s.record(false, t);
        assert_eq!(s.record(false, t), Some(false));
    }
}
