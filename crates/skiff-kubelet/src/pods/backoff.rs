//! Crash-loop back-off: how long to wait before restarting a container that exited.
//!
//! As the kubelet: the first restart is immediate, then 10 s, doubling up to 5 minutes; a
//! container that ran for 10 minutes before exiting starts over from nothing.

use std::time::{Duration, Instant};

/// First back-off delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// Longest back-off delay.
pub const MAX: Duration = Duration::from_secs(300);
/// A run at least this long resets the back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// Back-off state of one container.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    delay: Option<Duration>,
    until: Option<Instant>,
}

impl Backoff {
    /// Records an exit seen at `now` after a run of `ran`; returns the earliest time of the
    /// next start.
    pub fn on_exit(&mut self, now: Instant, ran: Duration) -> Instant {
        if ran >= RESET_AFTER {
            self.delay = None;
        }
        let wait = match self.delay {
            None => Duration::ZERO,
            Some(d) => d,
        };
        self.delay = Some(match self.delay {
            None => INITIAL,
            Some(d) => (d * 2).min(MAX),
        });
        let until = now + wait;
        self.until = Some(until);
        until
    }

    /// Whether a restart must still wait at `now` (the container is in CrashLoopBackOff).
    pub fn waiting(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// The delay that applies to the current wait, for the event message.
    pub fn current_wait(&self, now: Instant) -> Duration {
        self.until.map(|u| u.saturating_duration_since(now)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_immediately_then_doubles_up_to_five_minutes() {
        let mut b = Backoff::default();
        let t = Instant::now();
        assert_eq!(b.on_exit(t, Duration::from_secs(1)), t);
        assert!(!b.waiting(t));
        assert_eq!(b.on_exit(t, Duration::from_secs(1)), t + Duration::from_secs(10));
        assert!(b.waiting(t + Duration::from_secs(9)));
        assert!(!b.waiting(t + Duration::from_secs(10)));
        assert_eq!(b.on_exit(t, Duration::from_secs(1)), t + Duration::from_secs(20));
        for _ in 0..10 {
            b.on_exit(t, Duration::from_secs(1));
        }
        assert_eq!(b.on_exit(t, Duration::from_secs(1)), t + MAX);
    }

    #[test]
    fn a_long_run_resets_the_delay() {
        let mut b = Backoff::default();
        let t = Instant::now();
        b.on_exit(t, Duration::ZERO);
        b.on_exit(t, Duration::ZERO);
        assert_eq!(b.on_exit(t, RESET_AFTER), t);
    }
}
