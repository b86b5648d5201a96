//! The attempt state machine on tokio's paused clock.

use std::time::Duration;

use tokio::time::{Instant, advance};

use super::*;
use crate::breaker::State;
use crate::budget::BudgetConfig;
use crate::health::Health;

fn cand(region: &str, model: &str) -> Candidate {
    crate::route::test_candidate(region, model)
}

/// `n` first-byte samples of `ms` for `c`: its hedge delay becomes `ms`.
fn warm(router: &Router, c: &Candidate, ms: u64) {
    for _ in 0..20 {
        router.observe(c, false, Duration::from_millis(ms));
    }
}

fn three() -> Vec<Candidate> {
    ["us-east-1", "us-east-2", "us-west-2"]
        .iter()
        .map(|r| cand(r, "m"))
        .collect()
}

fn limits(deadline_ms: u64, max_attempts: usize, hedging: bool) -> Limits {
    Limits {
        max_attempts,
        deadline: Instant::now() + Duration::from_millis(deadline_ms),
        deadline_ms,
        hedging,
        streaming: false,
    }
}

/// A request's attempts over `cands` under a `priority` strategy and policy `us`.
fn attempts<'a>(
    router: &'a Router,
    cands: &'a [Candidate],
    limits: Limits,
    now: Instant,
) -> Attempts<'a> {
    Attempts::new(router, cands, limits, "priority", "us", now)
}

const DOWN: Failed = Failed {
    label: "unavailable",
    retryable: true,
    unreachable: false,
    throttled: None,
};

const REFUSED: Failed = Failed {
    label: "connection_refused",
    retryable: true,
    unreachable: true,
    throttled: None,
};

fn start(a: Action) -> (usize, usize) {
    match a {
        Action::Start { attempt, candidate } => (attempt, candidate),
        other => panic!("expected a start, got {other:?}"),
    }
}

fn wait(a: Action) -> Instant {
    match a {
        Action::Wait(t) => t,
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn retries_walk_the_candidates_in_order() {
    let router = Router::default();
    let cands = three();
    let mut a = attempts(&router, &cands, limits(10_000, 3, false), Instant::now());
    let mut order = Vec::new();
    for _ in 0..3 {
        let (n, c) = start(a.poll(Instant::now()));
        order.push(c);
        a.failed(n, &DOWN, Instant::now());
    }
    assert_eq!(order, [0, 1, 2]);
    assert_eq!(a.poll(Instant::now()), Action::GiveUp);
    let (d, why) = a.give_up(Instant::now());
    assert_eq!(why, "every allowed attempt failed");
    let reasons: Vec<_> = d.attempts.iter().map(|r| r.reason).collect();
    assert_eq!(reasons, [Reason::First, Reason::Retry, Reason::Retry]);
    assert_eq!(
        d.summary(),
        "first:us-east-1:unavailable,retry:us-east-2:unavailable,retry:us-west-2:unavailable"
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_error_ends_the_request_without_blaming_the_candidate() {
    let router = Router::default();
    let cands = three();
    let bad = Failed {
        label: "validation",
        retryable: false,
        unreachable: false,
        throttled: None,
    };
    for _ in 0..6 {
        let mut a = attempts(&router, &cands, limits(10_000, 3, false), Instant::now());
        let (n, c) = start(a.poll(Instant::now()));
        assert_eq!(c, 0);
        a.failed(n, &bad, Instant::now());
        assert_eq!(a.poll(Instant::now()), Action::GiveUp);
        assert_eq!(
            a.give_up(Instant::now()).1,
            "the request itself was refused"
        );
    }
    assert_eq!(router.health.state(cands[0].key()), State::Closed);
    // The same count of the candidate's own failures opens its breaker.
    for _ in 0..6 {
        let mut a = attempts(&router, &cands, limits(10_000, 1, false), Instant::now());
        let (n, _) = start(a.poll(Instant::now()));
        a.failed(n, &DOWN, Instant::now());
    }
    assert_eq!(router.health.state(cands[0].key()), State::Open);
}

#[tokio::test(start_paused = true)]
async fn after_every_candidate_it_backs_off_then_wraps_inside_the_deadline() {
    let router = Router::default();
    let cands = three()[..2].to_vec();
    let mut a = attempts(&router, &cands, limits(10_000, 5, false), Instant::now());
    for _ in 0..2 {
        let (n, _) = start(a.poll(Instant::now()));
        a.failed(n, &DOWN, Instant::now());
    }
    let now = Instant::now();
    let until = match a.poll(now) {
        Action::Wait(t) => t,
        // A zero draw of the jitter starts at once.
        Action::Start { candidate, .. } => {
            assert_eq!(candidate, 0);
            return;
        }
        Action::GiveUp => panic!("gave up with time left"),
    };
    assert!(
        until > now && until - now <= Duration::from_millis(50),
        "second retry backs off at most 2 × 25 ms"
    );
    // Polling early keeps waiting; at the instant, the first candidate again.
    assert_eq!(a.poll(now), Action::Wait(until));
    tokio::time::advance(until - now).await;
    let (_, c) = start(a.poll(Instant::now()));
    assert_eq!(c, 0, "wrapped around to the top");
}

#[tokio::test(start_paused = true)]
async fn no_backoff_past_the_deadline() {
    let router = Router::default();
    let cands = three()[..1].to_vec();
    // A 1 ms deadline leaves no room for any backoff of the second attempt.
    let mut a = attempts(&router, &cands, limits(1, 3, false), Instant::now());
    let (n, _) = start(a.poll(Instant::now()));
    a.failed(n, &DOWN, Instant::now());
    match a.poll(Instant::now()) {
        Action::GiveUp => {}
        Action::Wait(t) => assert!(t < Instant::now() + Duration::from_millis(1)),
        other => panic!("{other:?}"),
    }
    advance(Duration::from_millis(1)).await;
    assert_eq!(a.poll(Instant::now()), Action::GiveUp);
    let why = a.give_up(Instant::now()).1;
    assert!(why.contains("deadline"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn a_spent_retry_budget_stops_retries() {
    let router = Router::new(Health::new(
        Default::default(),
        BudgetConfig {
            ratio: 0.0,
            min_per_sec: 0.0,
            window: Duration::from_secs(10),
        },
    ));
    let cands = three();
    let mut a = attempts(&router, &cands, limits(10_000, 3, false), Instant::now());
    let (n, _) = start(a.poll(Instant::now()));
    a.failed(n, &DOWN, Instant::now());
    assert_eq!(a.poll(Instant::now()), Action::GiveUp);
    assert_eq!(
        a.give_up(Instant::now()).1,
        "the fleet-wide retry budget is spent"
    );
}

#[tokio::test(start_paused = true)]
async fn one_hedge_at_the_candidates_p95_and_the_loser_is_slow() {
    let router = Router::default();
    let cands = three();
    // 20 samples of 100 ms: p95 is 100 ms.
    warm(&router, &cands[0], 100);
    let t0 = Instant::now();
    let mut a = attempts(&router, &cands, limits(10_000, 3, true), t0);
    let (first, c0) = start(a.poll(t0));
    assert_eq!(c0, 0);
    assert_eq!(wait(a.poll(t0)), t0 + Duration::from_millis(100));
    advance(Duration::from_millis(100)).await;
    let (hedge, c1) = start(a.poll(Instant::now()));
    assert_eq!(c1, 1);
    // Only one hedge: from now on, wait for the deadline.
    assert_eq!(
        wait(a.poll(Instant::now())),
        t0 + Duration::from_millis(10_000)
    );
    advance(Duration::from_millis(20)).await;
    assert_eq!(a.succeeded(hedge, Instant::now()), Some(1));
    let d = a.into_decision();
    assert!(d.hedged);
    assert_eq!(d.served_by, Some(hedge));
    assert_eq!(
        d.attempts[first].outcome,
        Outcome::Slow,
        "the first attempt lost to a later hedge"
    );
    assert_eq!(d.attempts[hedge].reason, Reason::Hedge);
}

#[tokio::test(start_paused = true)]
async fn five_slow_verdicts_open_the_breaker() {
    let router = Router::default();
    let cands = three();
    warm(&router, &cands[0], 50);
    for _ in 0..5 {
        let t0 = Instant::now();
        let mut a = attempts(&router, &cands, limits(10_000, 3, true), t0);
        let (_, c) = start(a.poll(t0));
        assert_eq!(c, 0);
        let at = wait(a.poll(t0));
        advance(at - t0).await;
        let (hedge, _) = start(a.poll(Instant::now()));
        a.succeeded(hedge, Instant::now());
    }
    assert_eq!(router.health.state(cands[0].key()), State::Open);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_wins_first_cancels_the_later_hedge_without_blame() {
    let router = Router::default();
    let cands = three();
    warm(&router, &cands[0], 10);
    let t0 = Instant::now();
    let mut a = attempts(&router, &cands, limits(10_000, 3, true), t0);
    let (first, _) = start(a.poll(t0));
    advance(Duration::from_millis(10)).await;
    let (hedge, _) = start(a.poll(Instant::now()));
    a.succeeded(first, Instant::now());
    let d = a.into_decision();
    assert_eq!(d.attempts[hedge].outcome, Outcome::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn unreachable_regions_are_passed_over_and_retry_after_is_clamped() {
    let router = Router::default();
    let mut cands = three();
    let mut other = cands[0].clone();
    other.account = "b".into();
    cands.insert(1, other);
    let mut a = attempts(&router, &cands, limits(2_000, 3, false), Instant::now());
    let (n, _) = start(a.poll(Instant::now()));
    a.failed(n, &REFUSED, Instant::now());
    let (n, c) = start(a.poll(Instant::now()));
    assert_eq!(c, 2, "account b in the same unreachable region is skipped");
    // A Retry-After of u64::MAX seconds must not overflow the clock.
    let throttled = Failed {
        label: "throttled",
        retryable: true,
        unreachable: false,
        throttled: Some(Some(Duration::from_secs(u64::MAX))),
    };
    a.failed(n, &throttled, Instant::now());
    assert!(!router.is_available(&cands[2], 1), "cooling after the hint");
    advance(Duration::from_millis(2_001)).await;
    assert!(
        router.is_available(&cands[2], 1),
        "cooling ends with the request's deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn a_provider_declared_in_an_unreachable_region_is_still_tried() {
    let router = Router::default();
    let mut provider = cand("us-east-1", "llama");
    provider.account = "local".into();
    provider.target.kind = meridian_catalog::TargetKind::Provider;
    let cands = vec![cand("us-east-1", "m"), provider];
    let mut a = attempts(&router, &cands, limits(2_000, 3, false), Instant::now());
    let (n, _) = start(a.poll(Instant::now()));
    a.failed(n, &REFUSED, Instant::now());
    let (_, c) = start(a.poll(Instant::now()));
    assert_eq!(
        c, 1,
        "the provider is its own endpoint, not Bedrock's in us-east-1"
    );
}

#[tokio::test(start_paused = true)]
async fn fallback_models_are_named_as_such() {
    let router = Router::default();
    let cands = vec![cand("us-east-1", "m"), cand("us-east-1", "f")];
    let mut a = attempts(&router, &cands, limits(10_000, 3, false), Instant::now());
    let (n, _) = start(a.poll(Instant::now()));
    a.failed(n, &DOWN, Instant::now());
    let (n, c) = start(a.poll(Instant::now()));
    assert_eq!(c, 1);
    assert_eq!(a.decision().attempts[n].reason, Reason::Fallback);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_a_running_attempt() {
    let router = Router::default();
    let cands = three();
    let t0 = Instant::now();
    let mut a = attempts(&router, &cands, limits(500, 3, false), t0);
    start(a.poll(t0));
    assert_eq!(wait(a.poll(t0)), t0 + Duration::from_millis(500));
    advance(Duration::from_millis(500)).await;
    assert_eq!(a.poll(Instant::now()), Action::GiveUp);
    let (d, why) = a.give_up(Instant::now());
    assert_eq!(why, "the 500 ms deadline passed");
    assert_eq!(d.attempts[0].outcome, Outcome::Cancelled);
    assert_eq!(d.gave_up.as_deref(), Some("the 500 ms deadline passed"));
}

/// One answer to "was this attempt an upstream error?" for metrics, traces
/// and the dashboard (they once disagreed about `running`).
#[test]
fn outcomes_say_once_what_is_an_error_and_what_ran_its_course() {
    let table = [
        (Outcome::Running, "running", false, false),
        (Outcome::Success, "success", false, true),
        (Outcome::Throttled, "throttled", true, true),
        (Outcome::Failed("unavailable"), "unavailable", true, true),
        (Outcome::Slow, "slow", true, true),
        (Outcome::Cancelled, "cancelled", false, false),
    ];
    for (o, label, error, settled) in table {
        assert_eq!(o.label(), label);
        assert_eq!(o.is_error(), error, "{label}");
        assert_eq!(o.is_settled(), settled, "{label}");
        assert_eq!(serde_json::to_value(o).ok(), Some(serde_json::json!(label)));
    }
}
