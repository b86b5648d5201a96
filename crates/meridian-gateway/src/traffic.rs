//! What the dashboard shows, gathered as requests finish: per model and
//! region, one-second buckets for the last hour (requests served, attempts,
//! errors, throttles) and the latencies of the last requests served (the
//! live percentiles are taken from them, not from bucket bounds); the
//! regions each residency policy's requests were processed in; the last
//! reroute per region; and, while a browser watches, a tail of recent
//! requests with their records.
//!
//! A finished request costs one short lock and no allocation once its
//! model and region have been seen (and their latency ring has grown); the tail is kept only while someone
//! watches.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

/// Seconds of history kept.
pub const HISTORY_S: usize = 3600;
/// Requests kept in the tail.
pub const TAIL: usize = 500;
/// Latest served requests kept per (model, region) for the live
/// percentiles, which come from these latencies rather than from bucket
/// bounds (at most this many within the window count).
pub const RECENT: usize = 2048;
/// One second of one (model, region).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Second {
    /// Requests served (answered) by this region.
    pub served: u64,
    /// Upstream attempts that called this region.
    pub attempts: u64,
    /// Of those, failed (throttles included).
    pub errors: u64,
    /// Of those, throttled.
    pub throttles: u64,
}

impl Second {
    fn add(&mut self, o: &Second) {
        self.served += o.served;
        self.attempts += o.attempts;
        self.errors += o.errors;
        self.throttles += o.throttles;
    }
}

/// The `p` quantile (0–1) of some latencies, ms, by nearest rank (a
/// latency that was measured); `None` when there are none. Sorts them.
pub fn quantile(samples: &mut [f32], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable_by(f32::total_cmp);
    let rank = (p * samples.len() as f64).ceil().max(1.0) as usize;
    Some(f64::from(samples[rank.min(samples.len()) - 1]))
}

/// One served request's latencies, for the live percentiles.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Unix second it finished.
    at: u64,
    latency_ms: f32,
    /// Time to first token of a stream.
    ttft_ms: Option<f32>,
}

/// One (model, region) series: the current second and the history.
#[derive(Debug)]
struct Series {
    model: String,
    region: String,
    /// Requests answered since start (served here).
    total: u64,
    /// Unix second → bucket, newest last, at most [`HISTORY_S`].
    seconds: VecDeque<(u64, Second)>,
    /// The last [`RECENT`] served requests, newest last.
    recent: VecDeque<Sample>,
    /// The surfaces that answered here, in the order first seen.
    surfaces: Vec<&'static str>,
}

impl Series {
    fn at(&mut self, now: u64) -> &mut Second {
        if self.seconds.back().is_none_or(|(t, _)| *t != now) {
            self.seconds.push_back((now, Second::default()));
            while self.seconds.len() > HISTORY_S
                || self
                    .seconds
                    .front()
                    .is_some_and(|(t, _)| *t + HISTORY_S as u64 <= now)
            {
                self.seconds.pop_front();
            }
        }
        let last = self.seconds.len() - 1;
        &mut self.seconds[last].1
    }
}

/// Where a policy's (and tenant's) requests were processed.
#[derive(Debug, Clone, Serialize)]
pub struct Processed {
    pub policy: String,
    pub tenant: String,
    pub region: String,
    /// Whether the policy allows the region (`None`: unknown), as
    /// `meridian_residency_violations_total` counts it.
    pub allowed: Option<bool>,
    pub count: u64,
    /// Unix seconds of the last one.
    pub last: u64,
}

/// A request served somewhere other than its first choice.
#[derive(Debug, Clone, Serialize)]
pub struct Reroute {
    pub at: u64,
    pub model: String,
    pub from: String,
    pub to: String,
    /// Why the first choice did not answer (its attempt's outcome).
    pub reason: String,
}

/// One request in the live tail.
#[derive(Debug, Clone, Serialize)]
pub struct TailEntry {
    pub seq: u64,
    pub at_ms: u64,
    pub request_id: String,
    pub api: &'static str,
    pub operation: &'static str,
    pub model: String,
    pub tenant: String,
    pub region: String,
    pub route: String,
    pub status: u16,
    pub outcome: String,
    pub latency_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
    pub cache: Option<&'static str>,
    pub guard: u64,
    /// The whole record (no bodies), opened from the tail.
    #[serde(skip)]
    pub record: Value,
}

/// What one finished request tells the dashboard.
#[derive(Debug)]
pub struct Finished<'a> {
    pub model: &'a str,
    pub policy: Option<&'a str>,
    /// Whether the request's own policy (model ∩ tenant ∩ header) allows
    /// the processed region.
    pub allowed: Option<bool>,
    pub tenant: Option<&'a str>,
    /// The region whose endpoint answered it, when one did.
    pub served: Option<&'a str>,
    /// The region that processed it (a profile's destination), when known.
    pub processed: Option<&'a str>,
    /// The region the first attempt called.
    pub first: Option<&'a str>,
    /// Every attempt, in start order.
    pub attempts: &'a [meridian_router::AttemptRecord],
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    /// The surface that answered (`runtime`, `runtime-messages`, …).
    pub surface: Option<&'static str>,
}

/// The dashboard's store; shared by every config a process serves.
#[derive(Debug, Default)]
pub struct Stats {
    series: Mutex<Vec<Series>>,
    processed: Mutex<Vec<Processed>>,
    reroutes: Mutex<Vec<Reroute>>,
    tail: Mutex<VecDeque<Arc<TailEntry>>>,
    seq: AtomicU64,
    /// Browsers connected to the live stream.
    pub viewers: AtomicUsize,
}

fn series_of<'s>(all: &'s mut Vec<Series>, model: &str, region: &str) -> &'s mut Series {
    let i = match all
        .iter()
        .position(|s| s.model == model && s.region == region)
    {
        Some(i) => i,
        None => {
            all.push(Series {
                model: model.to_string(),
                region: region.to_string(),
                total: 0,
                seconds: VecDeque::new(),
                recent: VecDeque::new(),
                surfaces: Vec::new(),
            });
            all.len() - 1
        }
    };
    &mut all[i]
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Stats {
    /// Whether a browser is watching (the tail is kept only then).
    pub fn watched(&self) -> bool {
        self.viewers.load(Ordering::Relaxed) > 0
    }

    /// Counts a finished model invocation.
    pub fn finished(&self, f: &Finished<'_>) {
        let now = unix_now();
        {
            let mut all = self.series.lock();
            for a in f.attempts {
                if !a.outcome.is_settled() {
                    continue;
                }
                let s = series_of(&mut all, f.model, &a.region).at(now);
                s.attempts += 1;
                if a.outcome.is_error() {
                    s.errors += 1;
                }
                if a.outcome.is_throttle() {
                    s.throttles += 1;
                }
            }
            if let Some(region) = f.served {
                let series = series_of(&mut all, f.model, region);
                series.total += 1;
                if series.recent.len() == RECENT {
                    series.recent.pop_front();
                }
                if let Some(surface) = f.surface
                    && !series.surfaces.contains(&surface)
                {
                    series.surfaces.push(surface);
                }
                series.recent.push_back(Sample {
                    at: now,
                    latency_ms: f.latency_ms as f32,
                    ttft_ms: f.ttft_ms.map(|t| t as f32),
                });
                series.at(now).served += 1;
            }
        }
        if let (Some(region), Some(policy)) = (f.processed.or(f.served), f.policy) {
            let tenant = f.tenant.unwrap_or("");
            let mut p = self.processed.lock();
            match p
                .iter_mut()
                .find(|x| x.region == region && x.policy == policy && x.tenant == tenant)
            {
                Some(x) => {
                    x.count += 1;
                    x.last = now;
                }
                None => p.push(Processed {
                    policy: policy.to_string(),
                    tenant: tenant.to_string(),
                    region: region.to_string(),
                    allowed: f.allowed,
                    count: 1,
                    last: now,
                }),
            }
        }
        if let (Some(to), Some(from)) = (f.served, f.first)
            && to != from
        {
            let reason = f
                .attempts
                .first()
                .map_or("unknown", |a| a.outcome.label())
                .to_string();
            let mut r = self.reroutes.lock();
            r.retain(|x| x.from != from || x.model != f.model);
            r.push(Reroute {
                at: now,
                model: f.model.to_string(),
                from: from.to_string(),
                to: to.to_string(),
                reason,
            });
            if r.len() > 64 {
                r.remove(0);
            }
        }
    }

    /// Adds a request to the tail (only while watched).
    pub fn tail(&self, mut e: TailEntry) {
        e.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut t = self.tail.lock();
        t.push_back(Arc::new(e));
        while t.len() > TAIL {
            t.pop_front();
        }
    }

    /// Tail entries after `since`.
    pub fn tail_since(&self, since: u64) -> Vec<Arc<TailEntry>> {
        self.tail
            .lock()
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect()
    }

    /// One request's record, while it is in the tail.
    pub fn record(&self, request_id: &str) -> Option<Value> {
        self.tail
            .lock()
            .iter()
            .find(|e| e.request_id == request_id)
            .map(|e| e.record.clone())
    }

    /// Per (model, region): totals and the window `[now - span + 1, now]`,
    /// plus the requests per second of the last 60 s (oldest first).
    pub fn regions(&self, now: u64, span: u64) -> Vec<RegionModel> {
        let all = self.series.lock();
        all.iter()
            .map(|s| {
                // One pass from the newest second back over the last minute.
                let mut spark = vec![0u64; 60];
                let mut w = Second::default();
                for (t, sec) in s.seconds.iter().rev() {
                    if *t > now {
                        continue;
                    }
                    let age = now - t;
                    if age >= 60 {
                        break;
                    }
                    spark[59 - age as usize] = sec.served;
                    if age < span {
                        w.add(sec);
                    }
                }
                let recent = s.recent.iter().rev().take_while(|x| x.at + span > now);
                let (mut latency, mut ttft) = (Vec::new(), Vec::new());
                for x in recent.filter(|x| x.at <= now) {
                    latency.push(x.latency_ms);
                    ttft.extend(x.ttft_ms);
                }
                RegionModel {
                    model: s.model.clone(),
                    region: s.region.clone(),
                    total: s.total,
                    window: w,
                    served_per_s: spark,
                    p50_ms: quantile(&mut latency, 0.5),
                    p99_ms: quantile(&mut latency, 0.99),
                    ttft_p50_ms: quantile(&mut ttft, 0.5),
                    surfaces: s.surfaces.clone(),
                }
            })
            .collect()
    }

    /// Where requests were processed in the last hour.
    pub fn processed(&self, now: u64) -> Vec<Processed> {
        let mut p = self.processed.lock();
        p.retain(|x| x.last + HISTORY_S as u64 > now);
        p.clone()
    }

    /// The last reroutes, newest last.
    pub fn reroutes(&self) -> Vec<Reroute> {
        self.reroutes.lock().clone()
    }
}

/// One (model, region) for the page.
#[derive(Debug, Clone)]
pub struct RegionModel {
    pub model: String,
    pub region: String,
    pub total: u64,
    pub window: Second,
    pub served_per_s: Vec<u64>,
    /// Percentiles of the window's latencies (the last [`RECENT`] at most).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    /// The surfaces that answered for this model here.
    pub surfaces: Vec<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_latencies_not_bucket_bounds() {
        let s = Stats::default();
        let now = unix_now();
        // 100 requests between 120 and 239 ms: one histogram bucket (250).
        for i in 0..100 {
            s.finished(&Finished {
                model: "chat",
                policy: None,
                allowed: None,
                tenant: None,
                served: Some("us-east-1"),
                processed: None,
                first: Some("us-east-1"),
                attempts: &[],
                latency_ms: 120.0 + f64::from(i) * 1.2,
                ttft_ms: (i % 2 == 0).then_some(40.0 + f64::from(i)),
                surface: Some(if i < 50 {
                    "runtime"
                } else {
                    "runtime-messages"
                }),
            });
        }
        let r = &s.regions(now, 3)[0];
        assert_eq!(r.p50_ms, Some(f64::from(120.0f32 + 49.0 * 1.2)));
        assert_eq!(r.p99_ms, Some(f64::from(120.0f32 + 98.0 * 1.2)));
        assert_eq!(r.ttft_p50_ms, Some(88.0)); // the 25th of 40, 42, … 138
        assert_eq!(r.surfaces, ["runtime", "runtime-messages"]);
        // Outside the window, none.
        let later = &s.regions(now + 10, 3)[0];
        assert_eq!((later.p50_ms, later.ttft_p50_ms), (None, None));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn a_request_counts_where_it_was_served_and_where_it_was_tried() {
        let s = Stats::default();
        let attempt = |region: &str, outcome| meridian_router::AttemptRecord {
            account: "a".into(),
            region: region.into(),
            model_id: "m".into(),
            surface: meridian_router::Surface::Runtime,
            reason: meridian_router::Reason::First,
            start_ms: 0,
            elapsed_ms: 1,
            outcome,
        };
        let attempts = vec![
            attempt("us-east-1", meridian_router::Outcome::Throttled),
            attempt("us-west-2", meridian_router::Outcome::Success),
        ];
        s.finished(&Finished {
            model: "chat",
            policy: Some("us"),
            allowed: Some(true),
            tenant: None,
            served: Some("us-west-2"),
            processed: None,
            first: Some("us-east-1"),
            attempts: &attempts,
            latency_ms: 12.0,
            ttft_ms: None,
            surface: Some("runtime"),
        });
        let now = unix_now();
        let r = s.regions(now, 3);
        let east = r.iter().find(|x| x.region == "us-east-1").unwrap();
        assert_eq!(
            (east.window.attempts, east.window.throttles, east.total),
            (1, 1, 0)
        );
        let west = r.iter().find(|x| x.region == "us-west-2").unwrap();
        assert_eq!((west.window.served, west.total), (1, 1));
        assert_eq!(west.served_per_s.len(), 60);
        assert_eq!(
            west.served_per_s[59], 1,
            "this second is the sparkline's last point"
        );
        assert_eq!(
            s.regions(now + 2, 3)[1].window.served + s.regions(now + 2, 3)[0].window.served,
            1
        );
        assert!(
            s.regions(now + 3, 3).iter().all(|r| r.window.served == 0),
            "out of the window"
        );
        assert_eq!(s.reroutes()[0].reason, "throttled");
        assert_eq!(s.processed(now)[0].region, "us-west-2");
        assert!(s.tail_since(0).is_empty(), "no tail without a viewer");
    }
}
