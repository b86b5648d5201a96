//! Per-region, per-model admission: concurrency and a tokens-per-minute
//! window that reserves input + max_tokens up front, as Bedrock does.
//!
//! The window tracks tokens used, draining at the base quota rate; a throttle
//! storm lowers the ceiling (quota × factor) without touching what was used,
//! so capacity returns as soon as the storm ends.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::config::CapacityModel;

#[derive(Debug)]
struct Window {
    used: f64,
    in_flight: u32,
    drained: Instant,
}

/// Admission state of one region.
#[derive(Debug, Default)]
pub struct Capacity {
    windows: HashMap<String, Window>,
}

/// A successful admission; give it back with [`Capacity::release`].
#[derive(Debug, Clone)]
pub struct Admission {
    pub model: String,
    pub reserved: u64,
}

impl Capacity {
    fn window(&mut self, model: &str, m: &CapacityModel, now: Instant) -> &mut Window {
        let w = self.windows.entry(model.to_string()).or_insert(Window {
            used: 0.0,
            in_flight: 0,
            drained: now,
        });
        let elapsed = now.saturating_duration_since(w.drained).as_secs_f64();
        w.used = (w.used - m.tokens_per_minute as f64 * elapsed / 60.0).max(0.0);
        w.drained = now;
        w
    }

    /// Free share of the window (1 = idle), for choosing among destinations.
    pub fn headroom(&mut self, model: &str, m: &CapacityModel, factor: f64, now: Instant) -> f64 {
        let ceiling = m.tokens_per_minute as f64 * factor;
        if ceiling <= 0.0 {
            return 0.0;
        }
        let conc = f64::from(m.concurrency.max(1));
        let w = self.window(model, m, now);
        ((ceiling - w.used) / ceiling).min(1.0 - f64::from(w.in_flight) / conc)
    }

    /// Reserves `tokens` and a concurrency slot, or says no.
    pub fn admit(
        &mut self,
        model: &str,
        tokens: u64,
        m: &CapacityModel,
        factor: f64,
        now: Instant,
    ) -> Option<Admission> {
        let ceiling = m.tokens_per_minute as f64 * factor;
        let w = self.window(model, m, now);
        if w.in_flight >= m.concurrency || w.used + tokens as f64 > ceiling {
            return None;
        }
        w.used += tokens as f64;
        w.in_flight += 1;
        Some(Admission {
            model: model.to_string(),
            reserved: tokens,
        })
    }

    /// Frees the slot and gives back what was reserved but not used.
    pub fn release(&mut self, a: &Admission, used: u64) {
        if let Some(w) = self.windows.get_mut(&a.model) {
            w.in_flight = w.in_flight.saturating_sub(1);
            w.used = (w.used - a.reserved.saturating_sub(used) as f64).max(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn storms_lower_the_ceiling_without_burning_tokens() {
        let m = CapacityModel {
            concurrency: 10,
            tokens_per_minute: 6000,
        };
        let mut c = Capacity::default();
        let now = Instant::now();
        let a = c.admit("m", 4000, &m, 1.0, now).unwrap();
        assert!(
            c.admit("m", 4000, &m, 1.0, now).is_none(),
            "4000 + 4000 > 6000"
        );
        c.release(&a, 1000);
        assert!(
            c.admit("m", 100, &m, 0.0, now).is_none(),
            "a storm at 0 % admits nothing"
        );
        // The storm ends: 1000 used, 5000 free at once.
        assert!(c.admit("m", 4900, &m, 1.0, now).is_some());
        // The window drains at the base rate: 100 tokens a second.
        tokio::time::advance(std::time::Duration::from_secs(10)).await;
        assert!(c.admit("m", 1000, &m, 1.0, Instant::now()).is_some());
    }
}
