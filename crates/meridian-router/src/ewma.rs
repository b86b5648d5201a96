//! Peak-EWMA latency: jumps up to a slow sample at once, decays down over
//! `tau`, so a slowing candidate loses traffic immediately and wins it back
//! gradually.

use std::time::Duration;

use tokio::time::Instant;

/// One candidate's latency estimate.
#[derive(Debug, Clone)]
pub struct PeakEwma {
    tau: Duration,
    value_ms: f64,
    at: Instant,
}

impl PeakEwma {
    /// An estimate starting at `initial`.
    pub fn new(tau: Duration, initial: Duration, now: Instant) -> Self {
        PeakEwma {
            tau,
            value_ms: initial.as_secs_f64() * 1000.0,
            at: now,
        }
    }

    /// Adds a sample.
    pub fn observe(&mut self, sample: Duration, now: Instant) {
        let ms = sample.as_secs_f64() * 1000.0;
        if ms > self.value_ms {
            self.value_ms = ms;
        } else {
            let dt = now.saturating_duration_since(self.at).as_secs_f64();
            let w = (-dt / self.tau.as_secs_f64().max(1e-9)).exp();
            self.value_ms = self.value_ms * w + ms * (1.0 - w);
        }
        self.at = now;
    }

    /// The current estimate in milliseconds.
    pub fn millis(&self) -> f64 {
        self.value_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn peaks_at_once_and_decays_slowly() {
        let mut e = PeakEwma::new(
            Duration::from_secs(10),
            Duration::from_millis(100),
            Instant::now(),
        );
        e.observe(Duration::from_millis(2000), Instant::now());
        assert_eq!(e.millis(), 2000.0);
        tokio::time::advance(Duration::from_secs(10)).await;
        e.observe(Duration::from_millis(100), Instant::now());
        // One tau later, about 37 % of the gap remains.
        assert!(
            (e.millis() - (100.0 + 1900.0 * (-1f64).exp())).abs() < 1e-6,
            "{}",
            e.millis()
        );
    }
}
