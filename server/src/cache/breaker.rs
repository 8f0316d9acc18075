//! A circuit breaker for Redis: after repeated failures, stop calling for a
//! while, then let one probe through to test recovery.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use prometheus_client::metrics::gauge::Gauge;

/// Consecutive failures that open the breaker.
const FAILURES_TO_OPEN: u32 = 3;
/// First pause after opening; doubles on each failed probe.
const FIRST_COOLDOWN: Duration = Duration::from_millis(250);
/// Longest pause between probes.
const MAX_COOLDOWN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, cooldown: Duration },
    HalfOpen { cooldown: Duration },
}

/// Breaker state, shared by every Redis call of the process.
pub struct Breaker {
    // A std mutex: held for a few instructions, never across an await.
    state: Mutex<State>,
    gauge: Gauge,
}

impl Breaker {
    /// A closed breaker reporting its state on `gauge` (0 closed, 1 open, 2 half-open).
    pub fn new(gauge: Gauge) -> Self {
        gauge.set(0);
        Self { state: Mutex::new(State::Closed { failures: 0 }), gauge }
    }

    /// Whether a call may go to Redis now. While open, only the first caller
    /// after the cooldown gets through, as the probe.
    pub fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::Closed { .. } => true,
            State::Open { until, cooldown } if Instant::now() >= until => {
                *state = State::HalfOpen { cooldown };
                self.gauge.set(2);
                true
            }
            State::Open { .. } | State::HalfOpen { .. } => false,
        }
    }

    /// Records a successful call; a successful probe closes the breaker.
    pub fn success(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*state, State::Closed { failures: 0 }) {
            *state = State::Closed { failures: 0 };
            self.gauge.set(0);
        }
    }

    /// Records a failed call; enough of them (or a failed probe) open it.
    pub fn failure(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let next = match *state {
            State::Closed { failures } if failures + 1 < FAILURES_TO_OPEN => State::Closed { failures: failures + 1 },
            State::Closed { .. } => State::Open { until: Instant::now() + FIRST_COOLDOWN, cooldown: FIRST_COOLDOWN },
            State::HalfOpen { cooldown } | State::Open { cooldown, .. } => {
                let cooldown = (cooldown * 2).min(MAX_COOLDOWN);
                State::Open { until: Instant::now() + cooldown, cooldown }
            }
        };
        if matches!(next, State::Open { .. }) && !matches!(*state, State::Open { .. }) {
            tracing::warn!("Redis circuit breaker open: reads go to the database");
        }
        *state = next;
        self.gauge.set(if matches!(next, State::Closed { .. }) { 0 } else { 1 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_repeated_failures_and_probes_once() {
        let breaker = Breaker::new(Gauge::default());
        for _ in 0..FAILURES_TO_OPEN {
            assert!(breaker.allow());
            breaker.failure();
        }
        assert!(!breaker.allow(), "open: calls are skipped");
        std::thread::sleep(FIRST_COOLDOWN);
        assert!(breaker.allow(), "the first call after the cooldown probes");
        assert!(!breaker.allow(), "only one probe at a time");
        breaker.success();
        assert!(breaker.allow() && breaker.allow(), "a good probe closes it");
    }
}
