//! Reconnect backoff as a pure state machine: time is an argument, and every failure or success
//! returns the [`Transition`] the caller should log, so an outage is logged once when it starts
//! and once when it ends, never every round.

use std::time::{Duration, Instant};

/// How long to wait between connection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Wait after the first failure.
    pub initial: Duration,
    /// Upper bound of the wait.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    /// 1 s doubling to 60 s: quick to notice a restarted libvirtd, cheap while it stays away.
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl BackoffPolicy {
    /// The wait after `failures` consecutive failures (1-based): initial * 2^(failures-1),
    /// capped at `max`.
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << shift)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// Where the link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Connected, or never tried yet.
    Up,
    /// Failing since `since`; the next attempt is allowed at `next_try`.
    Down {
        /// First failure of this outage.
        since: Instant,
        /// Consecutive failures.
        failures: u32,
        /// Earliest time of the next attempt.
        next_try: Instant,
    },
}

/// What a failure or success changed; the caller logs `WentDown` and `Recovered` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed (success while up).
    Steady,
    /// The first failure of an outage.
    WentDown {
        /// Wait before the next attempt.
        retry_in: Duration,
    },
    /// Another failure of an outage already reported.
    StillDown {
        /// Consecutive failures so far.
        failures: u32,
        /// Wait before the next attempt.
        retry_in: Duration,
    },
    /// Success after an outage.
    Recovered {
        /// From the first failure to this success.
        down_for: Duration,
        /// Failed attempts during the outage.
        failures: u32,
    },
}

/// The backoff state machine.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    state: LinkState,
    outages_total: u64,
}

impl Backoff {
    /// Starts up (the first failure is the start of an outage).
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            state: LinkState::Up,
            outages_total: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Outages seen so far (each counted once, however many attempts it took).
    pub fn outages_total(&self) -> u64 {
        self.outages_total
    }

    /// Whether an attempt is allowed at `now`.
    pub fn may_try(&self, now: Instant) -> bool {
        match self.state {
            LinkState::Up => true,
            LinkState::Down { next_try, .. } => now >= next_try,
        }
    }

    /// Records a failed attempt (or a lost connection) at `now`.
    pub fn on_failure(&mut self, now: Instant) -> Transition {
        match self.state {
            LinkState::Up => {
                let retry_in = self.policy.delay(1);
                self.outages_total += 1;
                self.state = LinkState::Down {
                    since: now,
                    failures: 1,
                    next_try: now + retry_in,
                };
                Transition::WentDown { retry_in }
            }
            LinkState::Down {
                since, failures, ..
            } => {
                let failures = failures.saturating_add(1);
                let retry_in = self.policy.delay(failures);
                self.state = LinkState::Down {
                    since,
                    failures,
                    next_try: now + retry_in,
                };
                Transition::StillDown { failures, retry_in }
            }
        }
    }

    /// Records a successful attempt at `now`.
    pub fn on_success(&mut self, now: Instant) -> Transition {
        let t = match self.state {
            LinkState::Up => Transition::Steady,
            LinkState::Down {
                since, failures, ..
            } => Transition::Recovered {
                down_for: now.saturating_duration_since(since),
                failures,
            },
        };
        self.state = LinkState::Up;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn delay_doubles_and_caps() {
        let p = BackoffPolicy::default();
        let got: Vec<u64> = (1..=9).map(|f| p.delay(f).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.delay(0), S);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn outage_reported_once_then_recovery() {
        let t0 = Instant::now();
        let mut b = Backoff::new(BackoffPolicy::default());
        assert!(b.may_try(t0));
        assert_eq!(b.on_failure(t0), Transition::WentDown { retry_in: S });
        assert!(!b.may_try(t0));
        assert!(!b.may_try(t0 + S / 2));
        assert!(b.may_try(t0 + S));
        assert_eq!(
            b.on_failure(t0 + S),
            Transition::StillDown {
                failures: 2,
                retry_in: 2 * S
            }
        );
        assert!(!b.may_try(t0 + 2 * S));
        assert!(b.may_try(t0 + 3 * S));
        assert_eq!(
            b.on_failure(t0 + 3 * S),
            Transition::StillDown {
                failures: 3,
                retry_in: 4 * S
            }
        );
        assert_eq!(b.outages_total(), 1);
        assert_eq!(
            b.on_success(t0 + 7 * S),
            Transition::Recovered {
                down_for: 7 * S,
                failures: 3
            }
        );
        assert_eq!(b.state(), LinkState::Up);
        assert_eq!(b.on_success(t0 + 8 * S), Transition::Steady);
        // A new outage starts over at the initial delay and is counted again.
        assert_eq!(
            b.on_failure(t0 + 9 * S),
            Transition::WentDown { retry_in: S }
        );
        assert_eq!(b.outages_total(), 2);
    }
}
