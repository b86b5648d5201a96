//! Candidates and their order: what the gateway may call for one request,
//! sorted by the model's strategy, with unhealthy candidates (open breaker,
//! no quota room, cooling after a Retry-After) moved behind healthy ones.
//!
//! The router only ever sees candidates the residency policy allowed; it
//! reorders them and never adds any.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meridian_catalog::{ServiceTier, Target};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

use crate::breaker::State;
use crate::ewma::PeakEwma;
use crate::hash::splitmix;
pub use crate::hash::{fnv, fnv_bytes};
use crate::health::Health;
use crate::key::{CandidateKey, KeyId, PerKey, Surface};
use crate::quota::QuotaEstimate;

/// One way to serve a request: an account calling a target. Its key is
/// interned when it is built: change no field after that.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// Upstream account name.
    pub account: String,
    /// 0 for active candidates; passive backups have higher tiers.
    pub tier: usize,
    /// The exposed model this candidate serves (differs for fallbacks).
    pub model: String,
    /// Where and what is called.
    pub target: Target,
    /// The Bedrock service tier Meridian asks for (`None`: the client's own,
    /// or standard).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// The endpoint surface it is called through.
    pub surface: Surface,
    /// [`Candidate::key`].
    #[serde(skip)]
    id: KeyId,
}

impl PartialEq for Candidate {
    fn eq(&self, o: &Self) -> bool {
        (
            &self.account,
            self.tier,
            &self.model,
            &self.target,
            self.service_tier,
            self.surface,
        ) == (
            &o.account,
            o.tier,
            &o.model,
            &o.target,
            o.service_tier,
            o.surface,
        )
    }
}

impl Candidate {
    /// A candidate: `account` calling `target` for the exposed `model`.
    pub fn new(
        account: String,
        tier: usize,
        model: String,
        target: Target,
        service_tier: Option<ServiceTier>,
    ) -> Candidate {
        let surface = Surface::of(&target);
        let id = KeyId::intern(
            &account,
            &target.endpoint_region,
            surface,
            &target.model_id,
            service_tier,
        );
        Candidate {
            account,
            tier,
            model,
            target,
            service_tier,
            surface,
            id,
        }
    }

    /// The same candidate without its target's destination set: its key,
    /// account, model, surface, tier and price, as a stream keeps them until
    /// it ends ([`Target::without_destinations`]).
    pub fn without_destinations(&self) -> Candidate {
        Candidate {
            account: self.account.clone(),
            tier: self.tier,
            model: self.model.clone(),
            target: self.target.without_destinations(),
            service_tier: self.service_tier,
            surface: self.surface,
            id: self.id,
        }
    }

    /// The same call on another surface of the same account and region
    /// (`target` is what that surface is called with).
    pub fn on(&self, surface: Surface, target: Target) -> Candidate {
        let id = KeyId::intern(
            &self.account,
            &target.endpoint_region,
            surface,
            &target.model_id,
            self.service_tier,
        );
        Candidate {
            account: self.account.clone(),
            tier: self.tier,
            model: self.model.clone(),
            target,
            service_tier: self.service_tier,
            surface,
            id,
        }
    }

    /// Key for breakers and statistics; a tier has its own (Flex is
    /// throttled on its own, apart from the standard tier).
    pub fn key(&self) -> KeyId {
        self.id
    }
}

/// How candidates are ordered within a tier.
#[derive(Debug, Clone, PartialEq)]
pub enum Order {
    /// As resolved (nearest first).
    Priority,
    /// Random, in proportion to the weight of the called region.
    Weighted(BTreeMap<String, u32>),
    /// Power of two choices on peak-EWMA latency × (in flight + 1).
    Latency,
    /// Nearest to the caller: distance in km per candidate, same order.
    Geo(Vec<f64>),
}

/// Longest a Retry-After hint keeps a candidate behind the others.
const MAX_COOLING: Duration = Duration::from_secs(3600);
/// Samples kept per candidate for hedge delays.
const SAMPLES: usize = 256;
/// Samples needed before a candidate is hedged.
const MIN_SAMPLES: usize = 20;
/// Hedge delays stay inside these bounds.
const HEDGE_MIN: Duration = Duration::from_millis(10);
const HEDGE_MAX: Duration = Duration::from_secs(10);

/// A bounded ring of recent durations, with its p95 kept between reads.
#[derive(Debug, Default)]
struct Ring {
    ms: Vec<f64>,
    next: usize,
    /// The p95 as last computed, and samples pushed since.
    p95: Option<f64>,
    stale: usize,
    scratch: Vec<f64>,
}

/// A full ring's p95 is recomputed after this many new samples (while it
/// fills, after every one): a read does not sort 256 samples per request.
const RECOMPUTE_EVERY: usize = 16;

impl Ring {
    fn push(&mut self, d: Duration) {
        let v = d.as_secs_f64() * 1000.0;
        if self.ms.len() < SAMPLES {
            self.ms.push(v);
        } else {
            self.ms[self.next] = v;
        }
        self.next = (self.next + 1) % SAMPLES;
        self.stale += 1;
    }

    fn p95(&mut self) -> Option<Duration> {
        if self.ms.len() < MIN_SAMPLES {
            return None;
        }
        if self.p95.is_none()
            || (self.stale > 0 && self.ms.len() < SAMPLES)
            || self.stale >= RECOMPUTE_EVERY
        {
            self.scratch.clear();
            self.scratch.extend_from_slice(&self.ms);
            let i = ((self.scratch.len() as f64 - 1.0) * 0.95).round() as usize;
            let i = i.min(self.scratch.len() - 1);
            let (_, nth, _) = self.scratch.select_nth_unstable_by(i, f64::total_cmp);
            self.p95 = Some(*nth);
            self.stale = 0;
        }
        self.p95.map(|ms| Duration::from_secs_f64(ms / 1000.0))
    }
}

/// What the router knows of one candidate.
#[derive(Debug)]
struct Stats {
    latency: PeakEwma,
    first_byte: [Ring; 2],
    quota: QuotaEstimate,
    requests: QuotaEstimate,
    cooling_until: Option<Instant>,
    in_flight: u32,
    /// Known capacity in tokens per minute (provisioned throughput).
    capacity: Option<u64>,
}

impl Stats {
    fn new(now: Instant) -> Self {
        Stats {
            latency: PeakEwma::new(Duration::from_secs(10), Duration::ZERO, now),
            first_byte: [Ring::default(), Ring::default()],
            quota: QuotaEstimate::unknown(now),
            requests: QuotaEstimate::unknown(now),
            cooling_until: None,
            in_flight: 0,
            capacity: None,
        }
    }
}

/// A snapshot of one candidate for `/status` and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateView {
    /// The key as text.
    pub target: std::sync::Arc<str>,
    /// Candidate key.
    #[serde(flatten)]
    pub key: std::sync::Arc<CandidateKey>,
    /// Its id.
    #[serde(skip)]
    pub id: KeyId,
    /// Breaker state.
    pub breaker: State,
    /// Peak-EWMA time to first byte, ms.
    pub latency_ms: f64,
    /// Learned tokens-per-minute limit; `None` while no throttle was seen.
    pub quota_tokens_per_min: Option<u64>,
    /// Tokens reserved in the last minute.
    pub tokens_last_min: u64,
    /// Learned requests-per-minute limit; `None` while no throttle was seen.
    pub quota_requests_per_min: Option<u64>,
    /// Attempts sent in the last minute.
    pub requests_last_min: u64,
    /// Attempts in flight.
    pub in_flight: u32,
}

/// Shared routing state: breakers, the retry budget and per-candidate stats.
#[derive(Debug, Default)]
pub struct Router {
    /// Breakers and the retry budget.
    pub health: Health,
    stats: Mutex<PerKey<Stats>>,
    seq: AtomicU64,
}

/// Releases an in-flight slot when an attempt ends, however it ends.
#[derive(Debug)]
pub struct InFlight<'a> {
    router: &'a Router,
    key: KeyId,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.router.stats.lock().get_mut(self.key) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

impl Router {
    /// A router with these breakers and budget.
    pub fn new(health: Health) -> Self {
        Router {
            health,
            stats: Mutex::new(PerKey::default()),
            seq: AtomicU64::new(0),
        }
    }

    fn with<R>(&self, key: KeyId, f: impl FnOnce(&mut Stats, Instant) -> R) -> R {
        let now = Instant::now();
        f(
            self.stats
                .lock()
                .get_or_insert_with(key, || Stats::new(now)),
            now,
        )
    }

    /// Like `with`, for a candidate: a known capacity (provisioned
    /// throughput) is the quota estimate's ceiling, so traffic spills to the
    /// next candidate before the capacity is used up, not after a throttle.
    fn with_candidate<R>(&self, c: &Candidate, f: impl FnOnce(&mut Stats, Instant) -> R) -> R {
        self.with(c.key(), |s, now| {
            if s.capacity != c.target.capacity_tpm {
                s.capacity = c.target.capacity_tpm;
                s.quota
                    .set_ceiling(s.capacity.map_or(f64::INFINITY, |t| t as f64));
            }
            f(s, now)
        })
    }

    /// A uniform draw in [0, 1), different on every call.
    pub fn draw(&self) -> f64 {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        (splitmix(n) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether a candidate can take `tokens` now: breaker not open, quota
    /// room, not cooling down after a Retry-After.
    pub fn is_available(&self, c: &Candidate, tokens: u64) -> bool {
        let key = c.key();
        if self.health.state(key) == State::Open {
            return false;
        }
        self.with_candidate(c, |s, now| {
            s.cooling_until.is_none_or(|t| now >= t)
                && s.quota.has_room(tokens, now)
                && s.requests.has_room(1, now)
        })
    }

    /// Candidate indices in the order to try them. `affinity` (a hash of the
    /// prompt prefix) puts one candidate first consistently, when it is available.
    pub fn order(
        &self,
        cands: &[Candidate],
        order: &Order,
        tokens: u64,
        affinity: Option<u64>,
    ) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..cands.len()).collect();
        // Strategy within each tier; tiers keep their order.
        let mut keyed: Vec<(usize, f64, usize)> = idx
            .iter()
            .map(|&i| (cands[i].tier, self.rank(cands, i, order), i))
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        idx = keyed.into_iter().map(|k| k.2).collect();
        if matches!(order, Order::Latency) {
            idx = self.two_choices(cands, idx);
        }
        let available: Vec<bool> = (0..cands.len())
            .map(|i| self.is_available(&cands[i], tokens))
            .collect();
        if let Some(h) = affinity {
            let top = cands.first().map_or(0, |c| c.tier);
            let sticky = idx
                .iter()
                .copied()
                .filter(|&i| cands[i].tier == top && available[i])
                .max_by_key(|&i| splitmix(h ^ cands[i].key().hash()));
            if let Some(s) = sticky {
                idx.retain(|&i| i != s);
                idx.insert(0, s);
            }
        }
        let (mut ok, rest): (Vec<usize>, Vec<usize>) = idx.into_iter().partition(|&i| available[i]);
        ok.extend(rest);
        ok
    }

    /// Sort key of candidate `i` within its tier.
    fn rank(&self, cands: &[Candidate], i: usize, order: &Order) -> f64 {
        match order {
            Order::Priority | Order::Latency => i as f64,
            Order::Geo(km) => km.get(i).copied().unwrap_or(f64::MAX),
            Order::Weighted(w) => {
                // Weighted sampling without replacement: the largest u^(1/w) first.
                let weight = f64::from(
                    w.get(&cands[i].target.endpoint_region)
                        .copied()
                        .unwrap_or(1),
                );
                if weight <= 0.0 {
                    return f64::MAX;
                }
                -self.draw().max(f64::MIN_POSITIVE).powf(1.0 / weight)
            }
        }
    }

    /// Power of two choices, tier by tier: of two random remaining candidates
    /// the one with the lower cost goes next.
    fn two_choices(&self, cands: &[Candidate], idx: Vec<usize>) -> Vec<usize> {
        let cost = |i: usize| {
            self.with(cands[i].key(), |s, _| {
                s.latency.millis() * f64::from(s.in_flight + 1)
            })
        };
        let mut out = Vec::with_capacity(idx.len());
        let mut rest = idx;
        while !rest.is_empty() {
            let tier = cands[rest[0]].tier;
            let same: Vec<usize> = (0..rest.len())
                .filter(|&p| cands[rest[p]].tier == tier)
                .collect();
            let pick = if same.len() == 1 {
                same[0]
            } else {
                let a = same[(self.draw() * same.len() as f64) as usize % same.len()];
                let mut b = same[(self.draw() * same.len() as f64) as usize % same.len()];
                if a == b {
                    b = same[(same.iter().position(|&p| p == a).unwrap_or(0) + 1) % same.len()];
                }
                if cost(rest[b]) < cost(rest[a]) { b } else { a }
            };
            out.push(rest.remove(pick));
        }
        out
    }

    /// Marks an attempt as started: reserves its tokens and counts it in flight.
    pub fn start(&self, c: &Candidate, tokens: u64) -> InFlight<'_> {
        let key = c.key();
        self.with_candidate(c, |s, now| {
            s.quota.reserve(tokens, now);
            s.requests.reserve(1, now);
            s.in_flight += 1;
        });
        InFlight { router: self, key }
    }

    /// Records how long an attempt took to its first byte (`streaming`: to
    /// its first event).
    pub fn observe(&self, c: &Candidate, streaming: bool, first_byte: Duration) {
        self.with(c.key(), |s, now| {
            s.latency.observe(first_byte, now);
            s.first_byte[usize::from(streaming)].push(first_byte);
        });
    }

    /// A throttle: lowers the quota estimate and honours Retry-After.
    pub fn throttled(&self, c: &Candidate, retry_after: Option<Duration>) {
        self.with_candidate(c, |s, now| {
            // A throttle does not say which quota it hit: both estimates drop.
            s.quota.on_throttle(now);
            s.requests.on_throttle(now);
            // A hint too large to add to the clock means "much later": cap it.
            if let Some(d) = retry_after {
                s.cooling_until = now.checked_add(d.min(MAX_COOLING));
            }
        });
    }

    /// A slow attempt pushes the latency estimate up at once.
    pub fn slow(&self, c: &Candidate, waited: Duration) {
        self.with(c.key(), |s, now| s.latency.observe(waited, now));
    }

    /// When to hedge an attempt on `c`: its p95 time to first byte, once
    /// enough samples are known.
    pub fn hedge_delay(&self, c: &Candidate, streaming: bool) -> Option<Duration> {
        self.with(c.key(), |s, _| {
            s.first_byte[usize::from(streaming)]
                .p95()
                .map(|d| d.clamp(HEDGE_MIN, HEDGE_MAX))
        })
    }

    /// Every candidate seen so far.
    pub fn views(&self) -> Vec<CandidateView> {
        let ids: Vec<KeyId> = self.stats.lock().iter_mut().map(|(k, _)| k).collect();
        let mut out: Vec<CandidateView> = ids
            .into_iter()
            .map(|id| {
                let breaker = self.health.state(id);
                self.with(id, |s, now| {
                    s.quota.has_room(0, now);
                    s.requests.has_room(0, now);
                    CandidateView {
                        target: id.text(),
                        key: id.key(),
                        id,
                        breaker,
                        latency_ms: s.latency.millis(),
                        quota_tokens_per_min: s.quota.limit(),
                        tokens_last_min: s.quota.used(),
                        quota_requests_per_min: s.requests.limit(),
                        requests_last_min: s.requests.used(),
                        in_flight: s.in_flight,
                    }
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

/// An on-demand candidate of account `a` in `region` serving `model`, for tests.
#[cfg(test)]
pub(crate) fn test_candidate(region: &str, model: &str) -> Candidate {
    Candidate::new(
        "a".into(),
        0,
        model.into(),
        Target {
            endpoint_region: region.into(),
            model_id: format!("{model}-{region}"),
            kind: meridian_catalog::TargetKind::OnDemand,
            prefix: None,
            base_model_id: None,
            destinations: std::collections::BTreeSet::from([region.to_string()]),
            price: None,
            confirmed: true,
            distance_km: 0,
            capacity_tpm: None,
        },
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(region: &str, tier: usize) -> Candidate {
        Candidate {
            tier,
            ..test_candidate(region, "m")
        }
    }

    fn regions(cands: &[Candidate], order: &[usize]) -> Vec<String> {
        order
            .iter()
            .map(|&i| cands[i].target.endpoint_region.clone())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn priority_keeps_resolution_order_and_puts_open_breakers_last() {
        let r = Router::default();
        let c = [cand("r1", 0), cand("r2", 0), cand("r3", 0)];
        assert_eq!(
            regions(&c, &r.order(&c, &Order::Priority, 10, None)),
            ["r1", "r2", "r3"]
        );
        for _ in 0..5 {
            r.health
                .record(c[0].key(), crate::health::Verdict::Unhealthy);
        }
        assert_eq!(
            regions(&c, &r.order(&c, &Order::Priority, 10, None)),
            ["r2", "r3", "r1"]
        );
        // After the cool-down the breaker is half-open: back in front for a probe.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            regions(&c, &r.order(&c, &Order::Priority, 10, None)),
            ["r1", "r2", "r3"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_capacity_spills_before_it_is_used_up() {
        let r = Router::default();
        let mut pt = cand("r1", 0);
        pt.target.capacity_tpm = Some(5_000);
        let c = [pt, cand("r2", 0)];
        for _ in 0..4 {
            assert_eq!(
                regions(&c, &r.order(&c, &Order::Priority, 1_000, None))[0],
                "r1"
            );
            drop(r.start(&c[0], 1_000));
        }
        // 4,000 of 5,000 used: one more fits, a second does not.
        drop(r.start(&c[0], 1_000));
        assert_eq!(
            regions(&c, &r.order(&c, &Order::Priority, 1_000, None)),
            ["r2", "r1"],
            "the overflow goes to the next candidate without a throttle"
        );
        let view = r.views().into_iter().find(|v| v.id == c[0].key()).unwrap();
        assert_eq!(view.quota_tokens_per_min, Some(5_000));
        // A larger capacity (a reload) applies at once to the same window.
        let mut more = c.clone();
        more[0].target.capacity_tpm = Some(10_000);
        assert_eq!(
            regions(&more, &r.order(&more, &Order::Priority, 1_000, None))[0],
            "r1"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(
            regions(&c, &r.order(&c, &Order::Priority, 1_000, None))[0],
            "r1"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_candidate_spills_before_it_is_throttled_again() {
        let r = Router::default();
        let c = [cand("r1", 0), cand("r2", 0)];
        for _ in 0..10 {
            drop(r.start(&c[0], 1_000));
        }
        r.throttled(&c[0], None);
        // 10,000 tokens sent, limit now 9,000: the next 1,000 would not fit.
        assert_eq!(
            regions(&c, &r.order(&c, &Order::Priority, 1_000, None)),
            ["r2", "r1"]
        );
        // A minute later the window has emptied.
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(
            regions(&c, &r.order(&c, &Order::Priority, 1_000, None)),
            ["r1", "r2"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_requests_per_minute_limit_is_learned_too() {
        let r = Router::default();
        let c = [cand("r1", 0), cand("r2", 0)];
        // 30 tiny requests, then a throttle: tokens are far from any limit,
        // so the request count is what was exceeded.
        for _ in 0..30 {
            drop(r.start(&c[0], 1));
        }
        r.throttled(&c[0], None);
        assert_eq!(r.views()[0].quota_requests_per_min, Some(27));
        assert_eq!(
            regions(&c, &r.order(&c, &Order::Priority, 1, None)),
            ["r2", "r1"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_cools_a_candidate_for_that_long() {
        let r = Router::default();
        let c = [cand("r1", 0), cand("r2", 0)];
        r.throttled(&c[0], Some(Duration::from_secs(2)));
        // The quota estimate learned nothing (no tokens were sent), but the
        // candidate asked for 2 s of quiet.
        assert!(!r.is_available(&c[0], 0));
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(!r.is_available(&c[0], 0));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(r.is_available(&c[0], 0));
    }

    #[tokio::test(start_paused = true)]
    async fn weighted_spreads_in_proportion() {
        let r = Router::default();
        let c = [cand("r1", 0), cand("r2", 0)];
        let w = Order::Weighted(BTreeMap::from([
            ("r1".to_string(), 3),
            ("r2".to_string(), 1),
        ]));
        let first_r1 = (0..4000)
            .filter(|_| r.order(&c, &w, 1, None)[0] == 0)
            .count();
        // Expected 3,000 of 4,000; binomial sd ≈ 27.
        assert!((2850..=3150).contains(&first_r1), "{first_r1}");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_prefers_the_faster_candidate_and_notices_a_slowdown() {
        let r = Router::default();
        let c = [cand("r1", 0), cand("r2", 0), cand("r3", 0)];
        for _ in 0..20 {
            r.observe(&c[0], false, Duration::from_millis(100));
            r.observe(&c[1], false, Duration::from_millis(50));
            r.observe(&c[2], false, Duration::from_millis(300));
        }
        let firsts = |r: &Router| {
            let mut n = [0usize; 3];
            for _ in 0..3000 {
                n[r.order(&c, &Order::Latency, 1, None)[0]] += 1;
            }
            n
        };
        let n = firsts(&r);
        // Power of two choices: the slowest is never first, the fastest wins
        // every pair it is drawn in (2/3 of draws).
        assert_eq!(n[2], 0, "{n:?}");
        assert!(n[1] > 1800 && n[0] > 700, "{n:?}");
        // r2 slows down: peak-EWMA jumps at once and r2 drops behind r1.
        r.observe(&c[1], false, Duration::from_millis(2000));
        let n = firsts(&r);
        assert_eq!(n[1], 0, "{n:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn geo_orders_by_distance_inside_tiers() {
        let r = Router::default();
        let c = [cand("near-backup", 1), cand("far", 0), cand("near", 0)];
        let order = r.order(&c, &Order::Geo(vec![10.0, 5000.0, 100.0]), 1, None);
        assert_eq!(regions(&c, &order), ["near", "far", "near-backup"]);
    }

    #[tokio::test(start_paused = true)]
    async fn prompt_affinity_is_sticky_and_spreads_prompts() {
        let r = Router::default();
        let c = [
            cand("r1", 0),
            cand("r2", 0),
            cand("r3", 0),
            cand("backup", 1),
        ];
        let first = |h: u64| r.order(&c, &Order::Priority, 1, Some(h))[0];
        let mut seen = [0usize; 4];
        for h in 0..300u64 {
            let f = first(fnv(&h.to_string()));
            assert_eq!(f, first(fnv(&h.to_string())), "same prefix, same candidate");
            seen[f] += 1;
        }
        assert_eq!(seen[3], 0, "affinity never jumps a tier");
        assert!(seen[..3].iter().all(|&n| n > 50), "{seen:?}");
        // The sticky candidate's breaker opens: the prompt moves, not fails.
        let h = fnv("0");
        let sticky = first(h);
        for _ in 0..5 {
            r.health
                .record(c[sticky].key(), crate::health::Verdict::Unhealthy);
        }
        assert_ne!(first(h), sticky);
    }

    #[tokio::test(start_paused = true)]
    async fn hedge_delay_is_the_p95_once_known() {
        let r = Router::default();
        let c = cand("r1", 0);
        for ms in 1..=19 {
            r.observe(&c, true, Duration::from_millis(ms * 10));
        }
        assert_eq!(r.hedge_delay(&c, true), None, "too few samples");
        r.observe(&c, true, Duration::from_millis(200));
        // 20 samples 10..=200 ms: the p95 is the 19th, 190 ms.
        assert_eq!(r.hedge_delay(&c, true), Some(Duration::from_millis(190)));
        assert_eq!(
            r.hedge_delay(&c, false),
            None,
            "unary and streams are apart"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_attempts_are_counted_until_dropped() {
        let r = Router::default();
        let c = cand("r1", 0);
        let g1 = r.start(&c, 5);
        let g2 = r.start(&c, 5);
        assert_eq!(r.views()[0].in_flight, 2);
        drop(g1);
        drop(g2);
        assert_eq!(r.views()[0].in_flight, 0);
        assert_eq!(r.views()[0].tokens_last_min, 10);
    }
}
