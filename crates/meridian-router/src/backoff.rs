//! Exponential backoff with full jitter, never past the request's deadline.

use std::time::Duration;

use tokio::time::Instant;

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(25),
            cap: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The delay before retry `attempt` (1 = first retry), given a uniform
    /// draw in [0, 1). `None` when the delay would pass the deadline.
    pub fn delay(
        &self,
        attempt: u32,
        unit: f64,
        now: Instant,
        deadline: Instant,
    ) -> Option<Duration> {
        let exp = self.base.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let ceiling = exp.min(self.cap);
        let d = ceiling.mul_f64(unit.clamp(0.0, 1.0));
        (now + d < deadline).then_some(d)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn full_jitter_stays_under_the_exponential_ceiling(attempt in 1u32..40, unit in 0.0f64..1.0) {
            let b = Backoff::default();
            let now = Instant::now();
            let d = b.delay(attempt, unit, now, now + Duration::from_secs(3600)).unwrap();
            let ceiling = (b.base.as_secs_f64() * 2f64.powi(attempt as i32 - 1)).min(b.cap.as_secs_f64());
            prop_assert!(d.as_secs_f64() <= ceiling + 1e-9);
        }
    }

    #[test]
    fn never_waits_past_the_deadline() {
        let b = Backoff::default();
        let now = Instant::now();
        assert_eq!(
            b.delay(5, 0.99, now, now + Duration::from_millis(100)),
            None
        );
        assert!(
            b.delay(5, 0.1, now, now + Duration::from_millis(100))
                .is_some()
        );
    }
}
