//! Per-region, per-model admission: concurrency and a tokens-per-minute
//! window that reserves input + max_tokens up front, as Bedrock does.
//!
//! The window is the tokens admitted in the last 60 s (unused reservations
//! are given back when a request ends). A throttle storm lowers the ceiling
//! (quota × factor) without touching what was used, so a cut bites as soon
//! as the last minute's use exceeds it and capacity returns as soon as the
//! storm ends.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::CapacityModel;

const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Window {
    /// (admitted at, admission id, tokens still counted)
    entries: VecDeque<(Instant, u64, u64)>,
    used: u64,
    in_flight: u32,
}

/// Admission state of one region.
#[derive(Debug, Default)]
pub struct Capacity {
    windows: HashMap<String, Window>,
    next_id: u64,
}

/// A successful admission; give it back with [`Capacity::release`].
#[derive(Debug, Clone)]
pub struct Admission {
    pub model: String,
    pub reserved: u64,
    id: u64,
}

impl Capacity {
    fn window(&mut self, model: &str, now: Instant) -> &mut Window {
        let w = self.windows.entry(model.to_string()).or_default();
        while let Some(&(t, _, n)) = w.entries.front() {
            if now.saturating_duration_since(t) < MINUTE {
                break;
            }
            w.used -= n;
            w.entries.pop_front();
        }
        w
    }

    /// Free share of the window (1 = idle), for choosing among destinations.
    pub fn headroom(&mut self, model: &str, m: &CapacityModel, factor: f64, now: Instant) -> f64 {
        let ceiling = m.tokens_per_minute as f64 * factor;
        if ceiling <= 0.0 {
            return 0.0;
        }
        let conc = f64::from(m.concurrency.max(1));
        let w = self.window(model, now);
        ((ceiling - w.used as f64) / ceiling).min(1.0 - f64::from(w.in_flight) / conc)
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
        let id = self.next_id;
        let w = self.window(model, now);
        if w.in_flight >= m.concurrency || (w.used + tokens) as f64 > ceiling {
            return None;
        }
        w.used += tokens;
        w.in_flight += 1;
        w.entries.push_back((now, id, tokens));
        self.next_id += 1;
        Some(Admission {
            model: model.to_string(),
            reserved: tokens,
            id,
        })
    }

    /// Frees the slot and gives back what was reserved but not used.
    pub fn release(&mut self, a: &Admission, used: u64) {
        if let Some(w) = self.windows.get_mut(&a.model) {
            w.in_flight = w.in_flight.saturating_sub(1);
            let unused = a.reserved.saturating_sub(used);
            if let Some(e) = w.entries.iter_mut().rev().find(|e| e.1 == a.id) {
                let back = unused.min(e.2);
                e.2 -= back;
                w.used -= back;
            }
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
        // 5900 used in the last minute: nothing more until it slides out.
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(c.admit("m", 200, &m, 1.0, Instant::now()).is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(c.admit("m", 6000, &m, 1.0, Instant::now()).is_some());
    }
}
