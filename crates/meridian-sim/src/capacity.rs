//! Per-region, per-model admission: concurrency and a tokens-per-minute bucket
//! that reserves input + max_tokens up front, as Bedrock does.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::config::CapacityModel;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    in_flight: u32,
    refilled: Instant,
}

/// Admission state of one region.
#[derive(Debug, Default)]
pub struct Capacity {
    buckets: HashMap<String, Bucket>,
}

/// A successful admission; give it back with [`Capacity::release`].
#[derive(Debug, Clone)]
pub struct Admission {
    pub model: String,
    pub reserved: u64,
}

impl Capacity {
    fn bucket(&mut self, model: &str, quota: f64, now: Instant) -> &mut Bucket {
        let b = self.buckets.entry(model.to_string()).or_insert(Bucket {
            tokens: quota,
            in_flight: 0,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + quota * elapsed / 60.0).min(quota);
        b.refilled = now;
        b
    }

    /// Free share of the bucket (1 = idle), for choosing among destinations.
    pub fn headroom(&mut self, model: &str, m: &CapacityModel, factor: f64, now: Instant) -> f64 {
        let quota = m.tokens_per_minute as f64 * factor;
        if quota <= 0.0 {
            return 0.0;
        }
        let conc = f64::from(m.concurrency);
        let b = self.bucket(model, quota, now);
        (b.tokens / quota).min(1.0 - f64::from(b.in_flight) / conc)
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
        let quota = m.tokens_per_minute as f64 * factor;
        let b = self.bucket(model, quota, now);
        if b.in_flight >= m.concurrency || b.tokens < tokens as f64 {
            return None;
        }
        b.tokens -= tokens as f64;
        b.in_flight += 1;
        Some(Admission {
            model: model.to_string(),
            reserved: tokens,
        })
    }

    /// Frees the slot and refunds what was reserved but not used.
    pub fn release(&mut self, a: &Admission, used: u64) {
        if let Some(b) = self.buckets.get_mut(&a.model) {
            b.in_flight = b.in_flight.saturating_sub(1);
            b.tokens += a.reserved.saturating_sub(used) as f64;
        }
    }
}
