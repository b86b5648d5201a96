//! What a drill measured, the checks it applies, and the text, JSON and HTML
//! renderings of it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use meridian_catalog::Policy;
use meridian_gateway::AppState;
use meridian_router::KeyId;
use meridian_router::breaker::State;
use meridian_sim::Record;
use serde::Serialize;
use tokio::time::Instant;

use super::DrillArgs;
use super::load::Sample;
use super::scenario::{Name, Scenario};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub count: usize,
}

fn percentiles(mut v: Vec<f64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let i = ((v.len() as f64) * p).ceil() as usize;
        round(v[i.clamp(1, v.len()) - 1])
    };
    Percentiles {
        p50: at(0.5),
        p95: at(0.95),
        p99: at(0.99),
        p999: at(0.999),
        max: round(v[v.len() - 1]),
        count: v.len(),
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Failures clients saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Failures {
    pub total: usize,
    pub by_type: BTreeMap<String, usize>,
    /// The first message seen per type.
    pub examples: BTreeMap<String, String>,
}

/// A breaker changing state.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub t_s: f64,
    pub candidate: String,
    pub from: String,
    pub to: String,
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    pub t: u64,
    pub requests: usize,
    pub failures: usize,
    pub hedges: usize,
    pub served_by_region: BTreeMap<String, usize>,
    pub p99_ms: f64,
}

/// A pass/fail criterion.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub rate: f64,
    pub duration_s: f64,
    pub primary_region: String,
    pub policy: String,
    pub fault_window_s: (f64, f64),
    pub requests: usize,
    pub succeeded: usize,
    pub client_failures: Failures,
    /// Requests the fleet processed outside the policy (from the fleet's own records).
    pub residency_violations: usize,
    /// Where the fleet processed requests (its own records).
    pub processed_by_region: BTreeMap<String, usize>,
    /// Successful requests, from when each was due to its last byte.
    pub latency_ms: Percentiles,
    /// Successful streams, from due to the first event.
    pub ttft_ms: Percentiles,
    /// p99 latency of requests due before the faults began.
    pub healthy_p99_ms: f64,
    /// p99 latency of requests due while the faults were active.
    pub fault_p99_ms: f64,
    pub served_by_region: BTreeMap<String, usize>,
    /// Requests the first attempt did not serve.
    pub reroutes: usize,
    pub hedges: usize,
    /// Attempts beyond one per request (retries and hedges).
    pub extra_attempts: usize,
    /// What the retry budget allows over the run (20 % of requests + 10/s).
    pub retry_budget: usize,
    pub breaker_transitions: Vec<Transition>,
    /// Seconds from the end of the faults to the primary serving again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_back_after_recovery_s: Option<f64>,
    pub timeline: Vec<Second>,
    /// Provisioned vs on-demand, from the fleet's records (scenarios with
    /// provisioned throughput only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioned_split: Option<Split>,
    pub checks: Vec<Check>,
    pub pass: bool,
}

/// What one kind of capacity served.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Served {
    pub requests: usize,
    /// Share of the requests the fleet served.
    pub share: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Provisioned: the commitment for the run's length (units × price per
    /// unit-hour); on-demand: tokens at the catalog's prices.
    pub cost_usd: f64,
}

/// Provisioned throughput against the on-demand overflow.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Split {
    pub provisioned: Served,
    pub on_demand: Served,
    /// Throttles the fleet answered for provisioned ARNs (Meridian should
    /// spill before the capacity is used up).
    pub provisioned_throttles: usize,
    /// The capacity bought, tokens per minute.
    pub provisioned_tokens_per_minute: u64,
}

/// Polls breaker states every 100 ms until `done`, recording changes.
pub async fn sample_breakers(
    state: &Arc<AppState>,
    start: Instant,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> Vec<Transition> {
    let mut last: BTreeMap<KeyId, State> = BTreeMap::new();
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.changed() => return out,
        }
        for (key, now) in state.router.health.states() {
            let before = last.insert(key, now).unwrap_or(State::Closed);
            if before != now {
                out.push(Transition {
                    t_s: round(
                        Instant::now()
                            .saturating_duration_since(start)
                            .as_secs_f64(),
                    ),
                    candidate: key.to_string(),
                    from: before.name().to_string(),
                    to: now.name().to_string(),
                });
            }
        }
    }
}

/// Turns samples and fleet records into the report, with the scenario's checks.
pub fn analyse(
    sc: &Scenario,
    args: &DrillArgs,
    policy: &Policy,
    samples: &[Sample],
    records: &[Record],
    transitions: Vec<Transition>,
) -> Report {
    let (fault_start, fault_end) = sc.fault_window;
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.failure.is_none()).collect();
    let mut failures = Failures::default();
    for s in samples {
        if let Some(f) = &s.failure {
            failures.total += 1;
            *failures.by_type.entry(f.clone()).or_default() += 1;
            if let Some(m) = &s.message {
                failures
                    .examples
                    .entry(f.clone())
                    .or_insert_with(|| m.clone());
            }
        }
    }
    let mut processed_by_region = BTreeMap::new();
    let mut violations = 0;
    for r in records {
        if let Some(region) = &r.inference_region {
            *processed_by_region.entry(region.clone()).or_default() += 1;
            if !policy.allows(region) {
                violations += 1;
            }
        }
    }
    let mut served_by_region: BTreeMap<String, usize> = BTreeMap::new();
    for s in &ok {
        if let Some(r) = &s.region {
            *served_by_region.entry(r.clone()).or_default() += 1;
        }
    }
    let lat = |f: &dyn Fn(&Sample) -> bool| {
        percentiles(ok.iter().filter(|s| f(s)).map(|s| s.latency_ms).collect())
    };
    let latency_ms = lat(&|_| true);
    let healthy_p99_ms = lat(&|s| s.due_s < fault_start).p99;
    let fault_p99_ms = lat(&|s| s.due_s >= fault_start && s.due_s < fault_end).p99;
    let ttft_ms = percentiles(ok.iter().filter_map(|s| s.ttft_ms).collect());
    let extra_attempts: usize = samples
        .iter()
        .map(|s| s.attempts.saturating_sub(1) as usize)
        .sum();
    let retry_budget = (samples.len() as f64 * 0.2 + 10.0 * sc.duration_s) as usize;
    let recovers = fault_end < sc.duration_s;
    let primary_back_after_recovery_s = recovers
        .then(|| {
            ok.iter()
                .filter(|s| s.region.as_deref() == Some(sc.primary.as_str()))
                .map(|s| s.due_s + s.latency_ms / 1000.0)
                .filter(|done| *done >= fault_end)
                .map(|done| round(done - fault_end))
                .reduce(f64::min)
        })
        .flatten();
    let mut timeline: Vec<Second> = (0..sc.duration_s.ceil() as u64)
        .map(|t| Second {
            t,
            ..Second::default()
        })
        .collect();
    let mut per_sec: Vec<Vec<f64>> = vec![Vec::new(); timeline.len()];
    for s in samples {
        let i = (s.due_s as usize).min(timeline.len().saturating_sub(1));
        let Some(sec) = timeline.get_mut(i) else {
            continue;
        };
        sec.requests += 1;
        sec.hedges += usize::from(s.hedged);
        match (&s.failure, &s.region) {
            (Some(_), _) => sec.failures += 1,
            (None, Some(r)) => {
                *sec.served_by_region.entry(r.clone()).or_default() += 1;
                per_sec[i].push(s.latency_ms);
            }
            (None, None) => {}
        }
    }
    for (sec, v) in timeline.iter_mut().zip(per_sec) {
        sec.p99_ms = percentiles(v).p99;
    }
    let mut report = Report {
        scenario: sc.name.as_str().into(),
        rate: args.rate,
        duration_s: sc.duration_s,
        primary_region: sc.primary.clone(),
        policy: policy.name.clone(),
        fault_window_s: (round(fault_start), round(fault_end)),
        requests: samples.len(),
        succeeded: ok.len(),
        client_failures: failures,
        residency_violations: violations,
        processed_by_region,
        latency_ms,
        ttft_ms,
        healthy_p99_ms,
        fault_p99_ms,
        served_by_region,
        reroutes: samples.iter().filter(|s| s.rerouted).count(),
        hedges: samples.iter().filter(|s| s.hedged).count(),
        extra_attempts,
        retry_budget,
        breaker_transitions: transitions,
        primary_back_after_recovery_s,
        timeline,
        provisioned_split: None,
        checks: Vec::new(),
        pass: false,
    };
    report.checks = checks(sc, samples, &report);
    report.pass = report.checks.iter().all(|c| c.pass);
    report
}

fn check(name: &str, pass: bool, detail: String) -> Check {
    Check {
        name: name.into(),
        pass,
        detail,
    }
}

fn checks(sc: &Scenario, samples: &[Sample], r: &Report) -> Vec<Check> {
    let mut out = vec![check(
        "no request processed outside the residency policy",
        r.residency_violations == 0,
        format!(
            "{} of {} fleet records outside '{}'",
            r.residency_violations,
            r.processed_by_region.values().sum::<usize>(),
            r.policy
        ),
    )];
    match sc.name {
        Name::RegionOutage => {
            out.push(check(
                "zero client-visible failures",
                r.client_failures.total == 0,
                format!(
                    "{} of {} requests failed",
                    r.client_failures.total, r.requests
                ),
            ));
            out.push(check(
                "the primary serves again within 15 s of recovery",
                r.primary_back_after_recovery_s.is_some_and(|s| s <= 15.0),
                format!("{:?} s", r.primary_back_after_recovery_s),
            ));
        }
        Name::Brownout => {
            let limit = 1.5 * r.healthy_p99_ms;
            out.push(check(
                "p99 latency within 1.5x of the healthy p99",
                r.healthy_p99_ms > 0.0 && r.latency_ms.p99 <= limit,
                format!(
                    "p99 {} ms over the run, healthy p99 {} ms (limit {:.1} ms); p99 while browned out {} ms",
                    r.latency_ms.p99, r.healthy_p99_ms, limit, r.fault_p99_ms
                ),
            ));
            out.push(check(
                "hedges and retries inside the retry budget",
                r.extra_attempts <= r.retry_budget,
                format!(
                    "{} hedged requests, {} extra attempts, budget {}",
                    r.hedges, r.extra_attempts, r.retry_budget
                ),
            ));
        }
        Name::ThrottleStorm => {
            let throttled = r
                .client_failures
                .by_type
                .iter()
                .filter(|(k, _)| k.contains("Throttling"))
                .map(|(_, v)| v)
                .sum::<usize>();
            let share = throttled as f64 / r.requests.max(1) as f64;
            out.push(check(
                "client-visible throttles under 1 %",
                share < 0.01,
                format!(
                    "{throttled} of {} requests ({:.3} %)",
                    r.requests,
                    share * 100.0
                ),
            ));
        }
        Name::Flapping => {}
        Name::ProvisionedOverflow => out.push(check(
            "zero client-visible failures",
            r.client_failures.total == 0,
            format!(
                "{} of {} requests failed: {:?}",
                r.client_failures.total, r.requests, r.client_failures.by_type
            ),
        )),
        Name::ResidencySqueeze => {
            let all_down = sc.all_down_at().unwrap_or(sc.duration_s);
            // Requests due a second after the last EU region went down.
            let late: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.due_s >= all_down + 1.0)
                .collect();
            let named = late
                .iter()
                .filter(|s| {
                    s.failure.as_deref() == Some("ServiceUnavailableException")
                        && s.message
                            .as_deref()
                            .is_some_and(|m| m.contains(&format!("residency policy '{}", r.policy)))
                })
                .count();
            out.push(check(
                "with no EU capacity left, clients get ServiceUnavailableException naming the policy",
                !late.is_empty() && named == late.len(),
                format!(
                    "{named} of {} requests after all EU regions were down; example: {}",
                    late.len(),
                    r.client_failures
                        .examples
                        .get("ServiceUnavailableException")
                        .map_or("-", String::as_str)
                ),
            ));
        }
    }
    out
}

/// Adds the provisioned/on-demand split (from the fleet's records) and its
/// checks: both kinds served, and the overflow spilled before the
/// provisioned capacity throttled.
pub fn add_provisioned(
    r: &mut Report,
    sc: &Scenario,
    provisioned: &[meridian_config::Provisioned],
    catalog: &meridian_catalog::Catalog,
    records: &[Record],
) {
    use meridian_catalog::arn::ModelRef;
    let mut split = Split {
        provisioned_tokens_per_minute: provisioned.iter().map(|p| p.tokens_per_minute()).sum(),
        ..Split::default()
    };
    split.provisioned.cost_usd = provisioned
        .iter()
        .map(|p| {
            f64::from(p.model_units) * p.usd_per_unit_hour.unwrap_or(0.0) * sc.duration_s / 3600.0
        })
        .sum();
    let is_provisioned = |id: &str| provisioned.iter().any(|p| p.arn == id);
    for rec in records
        .iter()
        .filter(|x| x.operation.starts_with("Converse"))
    {
        if is_provisioned(&rec.model_id) && rec.outcome.contains("Throttling") {
            split.provisioned_throttles += 1;
        }
        if rec.outcome != "success" {
            continue;
        }
        let side = if is_provisioned(&rec.model_id) {
            &mut split.provisioned
        } else {
            let price = match ModelRef::parse(&rec.model_id) {
                ModelRef::SystemProfile { prefix, base } => catalog
                    .model_by_id(base)
                    .and_then(|m| m.price.for_prefix(prefix)),
                ModelRef::Name(base) => catalog.model_by_id(base).and_then(|m| m.price.in_region()),
                ModelRef::Arn(_) => None,
            };
            if let Some(p) = price {
                split.on_demand.cost_usd += p.cost(rec.input_tokens, rec.output_tokens, 0, 0);
            }
            &mut split.on_demand
        };
        side.requests += 1;
        side.input_tokens += rec.input_tokens;
        side.output_tokens += rec.output_tokens;
    }
    let total = (split.provisioned.requests + split.on_demand.requests).max(1) as f64;
    for side in [&mut split.provisioned, &mut split.on_demand] {
        side.share = (side.requests as f64 / total * 1000.0).round() / 1000.0;
        side.cost_usd = (side.cost_usd * 1e6).round() / 1e6;
    }
    r.checks.push(check(
        "provisioned throughput carried traffic and on-demand took the overflow",
        split.provisioned.requests > 0 && split.on_demand.requests > 0,
        format!(
            "provisioned {} ({:.1} %), on-demand {} ({:.1} %)",
            split.provisioned.requests,
            split.provisioned.share * 100.0,
            split.on_demand.requests,
            split.on_demand.share * 100.0
        ),
    ));
    r.checks.push(check(
        "traffic spilled before the provisioned capacity throttled",
        split.provisioned_throttles == 0,
        format!(
            "{} throttles from the provisioned model in the fleet's records",
            split.provisioned_throttles
        ),
    ));
    r.provisioned_split = Some(split);
    r.pass = r.checks.iter().all(|c| c.pass);
}

/// The report for a terminal.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "scenario {}  ({} req/s, {} s, primary {}, policy '{}', faults {}–{} s)",
        r.scenario,
        r.rate,
        r.duration_s,
        r.primary_region,
        r.policy,
        r.fault_window_s.0,
        r.fault_window_s.1
    );
    let _ = writeln!(
        s,
        "requests {}  succeeded {}  failed {}  {:?}",
        r.requests, r.succeeded, r.client_failures.total, r.client_failures.by_type
    );
    let l = &r.latency_ms;
    let _ = writeln!(
        s,
        "latency ms  p50 {}  p95 {}  p99 {}  p99.9 {}  max {}  (healthy p99 {}, during faults p99 {})",
        l.p50, l.p95, l.p99, l.p999, l.max, r.healthy_p99_ms, r.fault_p99_ms
    );
    let t = &r.ttft_ms;
    let _ = writeln!(
        s,
        "ttft ms     p50 {}  p95 {}  p99 {}  p99.9 {}",
        t.p50, t.p95, t.p99, t.p999
    );
    let _ = writeln!(s, "served by region {:?}", r.served_by_region);
    if let Some(p) = &r.provisioned_split {
        let _ = writeln!(
            s,
            "provisioned ({} tokens/min) {} requests ({:.1} %), ${:.4} committed; on-demand {} requests ({:.1} %), ${:.4}; provisioned throttles {}",
            p.provisioned_tokens_per_minute,
            p.provisioned.requests,
            p.provisioned.share * 100.0,
            p.provisioned.cost_usd,
            p.on_demand.requests,
            p.on_demand.share * 100.0,
            p.on_demand.cost_usd,
            p.provisioned_throttles
        );
    }
    let _ = writeln!(
        s,
        "processed by region (fleet records) {:?}",
        r.processed_by_region
    );
    let _ = writeln!(
        s,
        "reroutes {}  hedges {}  extra attempts {} (budget {})  breaker transitions {}",
        r.reroutes,
        r.hedges,
        r.extra_attempts,
        r.retry_budget,
        r.breaker_transitions.len()
    );
    if let Some(b) = r.primary_back_after_recovery_s {
        let _ = writeln!(s, "primary serving again {b} s after recovery");
    }
    for c in &r.checks {
        let _ = writeln!(
            s,
            "[{}] {}: {}",
            if c.pass { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    s
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A self-contained HTML page: served-by-region per second (stacked), p99
/// latency per second, failures and hedges per second, the checks.
pub fn html(r: &Report) -> String {
    let (w, h, pad) = (900.0, 220.0, 40.0);
    let n = r.timeline.len().max(1) as f64;
    let bar = (w - 2.0 * pad) / n;
    let regions: Vec<&String> = r.served_by_region.keys().collect();
    let max_req = r
        .timeline
        .iter()
        .map(|s| s.requests)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |t: usize| pad + t as f64 * bar;
    let mut share = String::new();
    for (i, sec) in r.timeline.iter().enumerate() {
        let mut y = h - pad;
        for (k, region) in regions.iter().enumerate() {
            let c = *sec.served_by_region.get(*region).unwrap_or(&0) as f64;
            let bh = c / max_req * (h - 2.0 * pad);
            y -= bh;
            let _ = write!(
                share,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{}"><title>{}s {region}: {c}</title></rect>"#,
                x(i),
                bar.max(1.0),
                COLOURS[k % COLOURS.len()],
                sec.t
            );
        }
        let fh = sec.failures as f64 / max_req * (h - 2.0 * pad);
        y -= fh;
        let _ = write!(
            share,
            r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{fh:.1}" fill="#000"><title>{}s failures: {}</title></rect>"##,
            x(i),
            bar.max(1.0),
            sec.t,
            sec.failures
        );
    }
    let max_p99 = r.timeline.iter().map(|s| s.p99_ms).fold(1.0, f64::max);
    // One polyline point per second, `value` scaled against `max`.
    let line = |value: &dyn Fn(&Second) -> f64, max: f64| -> Vec<String> {
        r.timeline
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{:.1},{:.1}",
                    x(i) + bar / 2.0,
                    h - pad - value(s) / max * (h - 2.0 * pad)
                )
            })
            .collect()
    };
    let points = line(&|s| s.p99_ms, max_p99);
    let hedges = line(&|s| s.hedges as f64, max_req);
    let fault = |t: f64| pad + t / r.duration_s.max(1.0) * (w - 2.0 * pad);
    let band = format!(
        r##"<rect x="{:.1}" y="{pad}" width="{:.1}" height="{:.1}" fill="#fdd" opacity="0.5"/>"##,
        fault(r.fault_window_s.0),
        fault(r.fault_window_s.1) - fault(r.fault_window_s.0),
        h - 2.0 * pad
    );
    let legend: String = regions
        .iter()
        .enumerate()
        .map(|(k, reg)| {
            format!(
                r#"<span style="color:{}">&#9632; {reg}</span> "#,
                COLOURS[k % COLOURS.len()]
            )
        })
        .collect();
    let checks: String = r
        .checks
        .iter()
        .map(|c| {
            format!(
                "<li><b>{}</b> {}: {}</li>",
                if c.pass { "PASS" } else { "FAIL" },
                esc(&c.name),
                esc(&c.detail)
            )
        })
        .collect();
    let axis = |label: &str| {
        format!(
            r##"<line x1="{pad}" y1="{0}" x2="{1}" y2="{0}" stroke="#888"/><text x="{pad}" y="{2}" font-size="11">0 s</text><text x="{1}" y="{2}" font-size="11" text-anchor="end">{3} s</text><text x="{pad}" y="{4}" font-size="11">{label}</text>"##,
            h - pad,
            w - pad,
            h - pad + 14.0,
            r.duration_s,
            pad - 8.0
        )
    };
    let json = serde_json::to_string_pretty(r).unwrap_or_default();
    format!(
        r##"<!doctype html><html><head><meta charset="utf-8"><title>meridian drill {scenario}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:960px}}svg{{background:#fafafa;margin-bottom:1em}}pre{{background:#f4f4f4;padding:1em;overflow:auto;max-height:30em}}</style></head>
<body><h1>meridian drill: {scenario}</h1>
<p>{rate} req/s for {duration} s; primary {primary}; policy '{policy}'; faults from {fs} s to {fe} s (shaded).
{requests} requests, {failed} client-visible failures, {violations} residency violations (fleet records);
latency p50 {p50} ms, p99 {p99} ms (healthy p99 {hp99} ms).</p>
<ul>{checks}</ul>
<h2>Served by region per second (black: failures)</h2><div>{legend}</div>
<svg width="{w}" height="{h}">{band}{share}{axis1}</svg>
<h2>p99 latency per second (max {max_p99:.0} ms) and hedged requests</h2>
<svg width="{w}" height="{h}">{band}<polyline fill="none" stroke="#d62728" stroke-width="2" points="{points}"/><polyline fill="none" stroke="#2ca02c" stroke-width="1" points="{hedges}"/>{axis2}</svg>
<h2>Report</h2><pre>{json}</pre></body></html>
"##,
        scenario = esc(&r.scenario),
        rate = r.rate,
        duration = r.duration_s,
        primary = esc(&r.primary_region),
        policy = esc(&r.policy),
        fs = r.fault_window_s.0,
        fe = r.fault_window_s.1,
        requests = r.requests,
        failed = r.client_failures.total,
        violations = r.residency_violations,
        p50 = r.latency_ms.p50,
        p99 = r.latency_ms.p99,
        hp99 = r.healthy_p99_ms,
        points = points.join(" "),
        hedges = hedges.join(" "),
        axis1 = axis("requests/s"),
        axis2 = axis("ms"),
        json = esc(&json),
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
