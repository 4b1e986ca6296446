//! Restart decisions: backoff, intensity budget and the never-ready budget.
//!
//! A pure state machine fed with instants, so that its sequences are tested exactly
//! under tokio's paused clock.
//!
//! - First restart at once (at most `initial`), then `initial × multiplier^k` up to
//!   `max`; delays never decrease (one child has no thundering herd: no jitter).
//! - A child that stayed up for `reset_after` resets the backoff.
//! - Intensity (Erlang/OTP's `MaxR` in `MaxT`): at most `max_restarts` restarts within
//!   `window`; the next exit gives up.
//! - Optionally (off unless set), a separate budget for starts that never became
//!   ready: `max_unready_starts` in a row, then give up (a broken binary or config
//!   does not spin through the whole intensity budget with growing delays).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// When to restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartMode {
    /// Never restart.
    Never,
    /// Restart after a crash, a kill, a hang or a limit; not after exit code 0.
    #[default]
    OnFailure,
    /// Restart after every exit.
    Always,
}

/// Restart policy parameters.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// When to restart.
    pub mode: RestartMode,
    /// Delay before the second restart (the first is immediate).
    pub initial: Duration,
    /// Growth factor of the delay.
    pub multiplier: f64,
    /// Largest delay.
    pub max: Duration,
    /// Uptime after which the backoff starts over.
    pub reset_after: Duration,
    /// Restarts allowed within `window` before giving up.
    pub max_restarts: u32,
    /// The intensity window.
    pub window: Duration,
    /// Consecutive starts that never became ready before giving up; `None` (the
    /// default): no budget of its own, `max_restarts` within `window` governs them too.
    pub max_unready_starts: Option<u32>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::OnFailure,
            initial: Duration::from_millis(250),
            multiplier: 2.0,
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
            max_restarts: 5,
            window: Duration::from_secs(60),
            max_unready_starts: None,
        }
    }
}

/// What to do after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Restart after `delay`; `attempt` counts restarts since the last reset (1-based).
    Restart {
        /// Wait this long first.
        delay: Duration,
        /// 1-based restart number since the last backoff reset.
        attempt: u32,
    },
    /// The policy does not restart this exit (mode `Never`, or exit 0 with `OnFailure`).
    Stop,
    /// A budget is exhausted.
    GiveUp {
        /// Which one.
        reason: GiveUpReason,
    },
}

/// Why the supervisor gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// More than `max_restarts` within `window`.
    Intensity,
    /// `max_unready_starts` starts in a row never became ready.
    NeverReady,
}

/// The policy's memory.
#[derive(Debug, Clone)]
pub struct RestartState {
    policy: RestartPolicy,
    restarts: VecDeque<Instant>,
    attempt: u32,
    last_delay: Duration,
    unready_in_a_row: u32,
}

impl RestartState {
    /// Fresh state.
    pub fn new(policy: RestartPolicy) -> Self {
        RestartState {
            policy,
            restarts: VecDeque::new(),
            attempt: 0,
            last_delay: Duration::ZERO,
            unready_in_a_row: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RestartPolicy {
        &self.policy
    }

    /// Decides after a child exit at `now`. `started`: when it was spawned; `ready`:
    /// whether it became ready; `failure`: false only for a clean exit (code 0).
    pub fn on_exit(
        &mut self,
        now: Instant,
        started: Instant,
        ready: bool,
        failure: bool,
    ) -> Decision {
        match self.policy.mode {
            RestartMode::Never => return Decision::Stop,
            RestartMode::OnFailure if !failure => return Decision::Stop,
            _ => {}
        }
        if ready {
            self.unready_in_a_row = 0;
            if now.saturating_duration_since(started) >= self.policy.reset_after {
                self.attempt = 0;
                self.last_delay = Duration::ZERO;
            }
        } else {
            self.unready_in_a_row += 1;
            if self
                .policy
                .max_unready_starts
                .is_some_and(|max| self.unready_in_a_row >= max)
            {
                return Decision::GiveUp {
                    reason: GiveUpReason::NeverReady,
                };
            }
        }
        while self
            .restarts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.policy.window)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= self.policy.max_restarts as usize {
            return Decision::GiveUp {
                reason: GiveUpReason::Intensity,
            };
        }
        self.restarts.push_back(now);
        self.attempt += 1;
        let delay = if self.attempt == 1 {
            Duration::ZERO
        } else if self.attempt == 2 {
            self.policy.initial
        } else {
            self.last_delay
                .mul_f64(self.policy.multiplier)
                .min(self.policy.max)
        };
        // Never decreasing within one backoff run.
        let delay = delay.max(self.last_delay);
        self.last_delay = delay;
        Decision::Restart {
            delay,
            attempt: self.attempt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_sequence_is_exact_and_capped() {
        let mut s = RestartState::new(RestartPolicy {
            max_restarts: 100,
            max: Duration::from_secs(2),
            ..RestartPolicy::default()
        });
        let mut delays = Vec::new();
        for _ in 0..8 {
            let started = Instant::now();
            tokio::time::advance(ms(10)).await;
            match s.on_exit(Instant::now(), started, true, true) {
                Decision::Restart { delay, .. } => {
                    delays.push(delay.as_millis());
                    tokio::time::advance(delay).await;
                }
                d => panic!("{d:?}"),
            }
        }
        assert_eq!(delays, [0, 250, 500, 1000, 2000, 2000, 2000, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_period_resets_the_backoff() {
        let mut s = RestartState::new(RestartPolicy::default());
        let t0 = Instant::now();
        assert!(
            matches!(s.on_exit(t0, t0, true, true), Decision::Restart { delay, attempt: 1 } if delay.is_zero())
        );
        tokio::time::advance(ms(100)).await;
        let t1 = Instant::now();
        assert!(
            matches!(s.on_exit(t1, t0, true, true), Decision::Restart { delay, attempt: 2 } if delay == ms(250))
        );
        // Up for 61 s, then crashes: starts over with an immediate restart.
        tokio::time::advance(Duration::from_secs(61)).await;
        let t2 = Instant::now();
        assert!(
            matches!(s.on_exit(t2, t1, true, true), Decision::Restart { delay, attempt: 1 } if delay.is_zero())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn intensity_budget_then_give_up_and_window_slides() {
        let mut s = RestartState::new(RestartPolicy {
            max_restarts: 3,
            window: Duration::from_secs(10),
            ..RestartPolicy::default()
        });
        let start = Instant::now();
        let mut outcomes = Vec::new();
        for _ in 0..4 {
            tokio::time::advance(ms(100)).await;
            outcomes.push(s.on_exit(Instant::now(), start, true, true));
        }
        assert!(matches!(outcomes[2], Decision::Restart { attempt: 3, .. }));
        assert_eq!(
            outcomes[3],
            Decision::GiveUp {
                reason: GiveUpReason::Intensity
            }
        );
        // Once the window has passed, restarts are allowed again.
        let mut s2 = RestartState::new(RestartPolicy {
            max_restarts: 2,
            window: Duration::from_secs(10),
            ..RestartPolicy::default()
        });
        let t = Instant::now();
        assert!(matches!(
            s2.on_exit(t, t, true, true),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            s2.on_exit(t, t, true, true),
            Decision::Restart { .. }
        ));
        tokio::time::advance(Duration::from_secs(11)).await;
        let later = Instant::now();
        assert!(matches!(
            s2.on_exit(later, later, true, true),
            Decision::Restart { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn never_ready_starts_follow_the_intensity_budget_by_default() {
        let mut s = RestartState::new(RestartPolicy {
            max_restarts: 3,
            ..RestartPolicy::default()
        });
        let t = Instant::now();
        for _ in 0..3 {
            assert!(matches!(
                s.on_exit(t, t, false, true),
                Decision::Restart { .. }
            ));
        }
        assert_eq!(
            s.on_exit(t, t, false, true),
            Decision::GiveUp {
                reason: GiveUpReason::Intensity
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn never_ready_starts_have_their_own_budget_when_set() {
        let mut s = RestartState::new(RestartPolicy {
            max_unready_starts: Some(3),
            ..RestartPolicy::default()
        });
        let t = Instant::now();
        assert!(matches!(
            s.on_exit(t, t, false, true),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            s.on_exit(t, t, false, true),
            Decision::Restart { .. }
        ));
        assert_eq!(
            s.on_exit(t, t, false, true),
            Decision::GiveUp {
                reason: GiveUpReason::NeverReady
            }
        );
    }

    #[test]
    fn modes() {
        let t = Instant::now();
        let mut never = RestartState::new(RestartPolicy {
            mode: RestartMode::Never,
            ..RestartPolicy::default()
        });
        assert_eq!(never.on_exit(t, t, true, true), Decision::Stop);
        let mut on_failure = RestartState::new(RestartPolicy::default());
        assert_eq!(on_failure.on_exit(t, t, true, false), Decision::Stop);
        assert!(matches!(
            on_failure.on_exit(t, t, true, true),
            Decision::Restart { .. }
        ));
        let mut always = RestartState::new(RestartPolicy {
            mode: RestartMode::Always,
            ..RestartPolicy::default()
        });
        assert!(matches!(
            always.on_exit(t, t, true, false),
            Decision::Restart { .. }
        ));
    }
}
