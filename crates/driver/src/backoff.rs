//! Retry timing for a rollout whose step failed, like Kubernetes'
//! ImagePullBackOff / CrashLoopBackOff: 1 s, 2 s, 4 s, … capped at 5 min,
//! reset by a step that succeeds.

use serin_engine::Millis;

/// First retry delay.
const INITIAL: Millis = 1_000;
/// Longest retry delay.
const MAX: Millis = 300_000;

/// One rollout's backoff state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Consecutive failures.
    pub failures: u32,
    /// Not before this time.
    pub retry_at: Millis,
    /// The last error shown, so a repeated failure is not reported again.
    pub last_error: Option<String>,
}

impl Backoff {
    /// Records a failure at `now`; returns when to try again.
    pub fn fail(&mut self, now: Millis) -> Millis {
        let delay = INITIAL.saturating_mul(1 << self.failures.min(20)).min(MAX);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = now.saturating_add(delay);
        self.retry_at
    }

    /// True while a retry must wait.
    pub fn waiting(&self, now: Millis) -> bool {
        self.failures > 0 && now < self.retry_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_five_minutes() {
        let mut b = Backoff::default();
        let delays: Vec<Millis> = (0..12).map(|_| b.fail(0)).collect();
        assert_eq!(&delays[..4], &[1_000, 2_000, 4_000, 8_000]);
        assert_eq!(delays[11], 300_000);
        assert!(b.waiting(299_999));
        assert!(!b.waiting(300_000));
    }
}
