//! Prometheus metrics, rendered in the text exposition format. Labels come
//! from a closed set — `region`, `account`, `model`, `operation`, `outcome`,
//! `reason` — whose values are catalog regions, configured accounts,
//! exposed model names (or catalog aliases, else `other`), operation names
//! and fixed outcome words; nothing per request.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use parking_lot::Mutex;

/// Latency buckets' upper bounds, seconds: at most a factor of 2 apart
/// (1.5 around the usual latencies), so p50 and p99 differ where latencies
/// do (with 0.1, 0.25 and 0.5 apart, most requests shared one bucket).
const BUCKETS: [f64; 23] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
    7.5, 10.0, 15.0, 30.0, 60.0, 120.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative: the exposition sums them).
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    /// The latest traced observation per bucket, the last for `+Inf`.
    exemplars: [Option<Exemplar>; BUCKETS.len() + 1],
}

/// An observation with the trace it belongs to (OpenMetrics exemplar).
#[derive(Debug, Clone, Copy)]
struct Exemplar {
    /// The trace ID, 32 lowercase hex digits.
    trace_id: [u8; 32],
    value: f64,
    /// Unix time, seconds.
    at: f64,
}

/// The exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4: what `promtool check metrics` and every
    /// scraper reads; no exemplars.
    Prometheus,
    /// OpenMetrics 1.0 text, with exemplars on histogram buckets (what
    /// Prometheus asks for first).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn for_accept(accept: &str) -> Format {
        if accept.contains("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// Its content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// What kind of series a family has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Measured at scrape time.
    Gauge,
    /// Observations in [`BUCKETS`].
    Histogram,
}

/// Declares [`Family`]: one variant per exported metric family, with its
/// name, kind and help text. A family is named by its variant, so a typo
/// does not compile.
macro_rules! families {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        /// Every metric family Meridian exports.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Family {
            $($(#[$doc])* $variant,)*
        }

        impl Family {
            /// Every family, in the order they are rendered.
            pub const ALL: &[Family] = &[$(Family::$variant,)*];

            /// Its exported name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Family::$variant => $name,)*
                }
            }

            /// Its kind.
            pub fn kind(self) -> Kind {
                match self {
                    $(Family::$variant => Kind::$kind,)*
                }
            }

            /// Its help text.
            pub fn help(self) -> &'static str {
                match self {
                    $(Family::$variant => $help,)*
                }
            }
        }
    };
}

families! {
    /// Requests answered, by exposed model, operation and outcome (success or the error code).
    RequestsTotal = "meridian_requests_total", Counter, "Requests answered, by exposed model, operation and outcome (success or the error code).";
    /// Time from request to last byte.
    RequestDurationSeconds = "meridian_request_duration_seconds", Histogram, "Time from request to last byte.";
    /// Time from request to the first streamed event.
    TimeToFirstTokenSeconds = "meridian_time_to_first_token_seconds", Histogram, "Time from request to the first streamed event.";
    /// Input tokens, by model and the region that served them.
    InputTokensTotal = "meridian_input_tokens_total", Counter, "Input tokens, by model and the region that served them.";
    /// Output tokens, by model and the region that served them.
    OutputTokensTotal = "meridian_output_tokens_total", Counter, "Output tokens, by model and the region that served them.";
    /// Input tokens read from the prompt cache, by model and serving region.
    CacheReadTokensTotal = "meridian_cache_read_tokens_total", Counter, "Input tokens read from the prompt cache, by model and serving region.";
    /// Input tokens written to the prompt cache, by model and serving region.
    CacheWriteTokensTotal = "meridian_cache_write_tokens_total", Counter, "Input tokens written to the prompt cache, by model and serving region.";
    /// Estimated cost from the catalog's on-demand prices.
    EstimatedCostUsdTotal = "meridian_estimated_cost_usd_total", Counter, "Estimated cost from the catalog's on-demand prices.";
    /// Requests served by a target whose price the catalog does not know (a model a refresh found): their cost is unknown, not zero.
    UnpricedRequestsTotal = "meridian_unpriced_requests_total", Counter, "Requests served by a target whose price the catalog does not know (a model a refresh found): their cost is unknown, not zero.";
    /// Upstream attempts by called region, account, model, outcome and reason (first, retry, hedge, fallback).
    UpstreamAttemptsTotal = "meridian_upstream_attempts_total", Counter, "Upstream attempts by called region, account, model, outcome and reason (first, retry, hedge, fallback).";
    /// Failed upstream attempts by called region, account and outcome class.
    UpstreamErrorsTotal = "meridian_upstream_errors_total", Counter, "Failed upstream attempts by called region, account and outcome class.";
    /// Requests served somewhere other than their first-choice region, by model and serving region.
    ReroutesTotal = "meridian_reroutes_total", Counter, "Requests served somewhere other than their first-choice region, by model and serving region.";
    /// Hedged requests, by model.
    HedgesTotal = "meridian_hedges_total", Counter, "Hedged requests, by model.";
    /// Guard findings, by model, direction (input, output), detector type and action (block, mask, anonymize, log); never values.
    GuardFindingsTotal = "meridian_guard_findings_total", Counter, "Guard findings, by model, direction (input, output), detector type and action (block, mask, anonymize, log); never values.";
    /// Requests to models with a response cache, by model and outcome (hit, miss, refresh, bypass).
    CacheRequestsTotal = "meridian_cache_requests_total", Counter, "Requests to models with a response cache, by model and outcome (hit, miss, refresh, bypass).";
    /// Circuit breaker per candidate: 0 closed, 1 half-open, 2 open.
    BreakerState = "meridian_breaker_state", Gauge, "Circuit breaker per candidate: 0 closed, 1 half-open, 2 open.";
    /// Learned tokens-per-minute limit per candidate (only once a throttle was seen).
    QuotaEstimateTokensPerMinute = "meridian_quota_estimate_tokens_per_minute", Gauge, "Learned tokens-per-minute limit per candidate (only once a throttle was seen).";
    /// Tokens reserved per candidate in the last minute.
    QuotaUsedTokensPerMinute = "meridian_quota_used_tokens_per_minute", Gauge, "Tokens reserved per candidate in the last minute.";
    /// Used / learned quota per candidate (only once a throttle was seen); alerts fire above 0.85.
    QuotaUtilization = "meridian_quota_utilization", Gauge, "Used / learned quota per candidate (only once a throttle was seen); alerts fire above 0.85.";
    /// Bytes in the invocation-log spool.
    LogSpoolBytes = "meridian_log_spool_bytes", Gauge, "Bytes in the invocation-log spool.";
    /// Invocation records confirmed stored in S3.
    LogRecordsUploadedTotal = "meridian_log_records_uploaded_total", Counter, "Invocation records confirmed stored in S3.";
    /// Invocation records dropped: reason spool_full (the S3 spool was full) or queue_full (the stdout/file writer fell behind).
    LogRecordsDroppedTotal = "meridian_log_records_dropped_total", Counter, "Invocation records dropped: reason spool_full (the S3 spool was full) or queue_full (the stdout/file writer fell behind).";
    /// Trace spans a collector took.
    TraceSpansExportedTotal = "meridian_trace_spans_exported_total", Counter, "Trace spans a collector took.";
    /// Trace spans dropped: reason queue_full (the exporter fell behind) or export_failed (the collector did not take their batch).
    TraceSpansDroppedTotal = "meridian_trace_spans_dropped_total", Counter, "Trace spans dropped: reason queue_full (the exporter fell behind) or export_failed (the collector did not take their batch).";
    /// 1 when the shared state backend (Redis) answers, 0 while on_unavailable applies.
    StateBackendUp = "meridian_state_backend_up", Gauge, "1 when the shared state backend (Redis) answers, 0 while on_unavailable applies.";
    /// Requests admitted under this replica's local limits because the shared backend was unreachable.
    AdmittedByLocalLimitsTotal = "meridian_admitted_by_local_limits_total", Counter, "Requests admitted under this replica's local limits because the shared backend was unreachable.";
    /// Config reloads, by outcome (success, refused, weaker: it would have lowered the security posture).
    ConfigReloadsTotal = "meridian_config_reloads_total", Counter, "Config reloads, by outcome (success, refused, weaker: it would have lowered the security posture).";
    /// Catalog refreshes from Bedrock's control plane, by outcome (success, partial, failed).
    CatalogRefreshesTotal = "meridian_catalog_refreshes_total", Counter, "Catalog refreshes from Bedrock's control plane, by outcome (success, partial, failed).";
    /// Profiles in regions where the last refresh contradicted the compiled catalog.
    CatalogContradictions = "meridian_catalog_contradictions", Gauge, "Profiles in regions where the last refresh contradicted the compiled catalog.";
    /// Seconds since the served catalog facts were read from Bedrock (absent: compiled data only).
    CatalogAgeSeconds = "meridian_catalog_age_seconds", Gauge, "Seconds since the served catalog facts were read from Bedrock (absent: compiled data only).";
    /// Answers processed in a region their request's residency policy (model, tenant and header together) does not allow, by policy and region. Should stay absent.
    ResidencyViolationsTotal = "meridian_residency_violations_total", Counter, "Answers processed in a region their request's residency policy (model, tenant and header together) does not allow, by policy and region. Should stay absent.";
    /// Client connections open now.
    ConnectionsOpen = "meridian_connections_open", Gauge, "Client connections open now.";
    /// The cap on open client connections; at it, accepting waits.
    ConnectionsMax = "meridian_connections_max", Gauge, "The cap on open client connections; at it, accepting waits.";
    /// Client connections closed by a deadline: reason first_byte (nothing sent after accept) or idle (no request and no traffic).
    ConnectionsClosedTotal = "meridian_connections_closed_total", Counter, "Client connections closed by a deadline: reason first_byte (nothing sent after accept) or idle (no request and no traffic).";
    /// Client connections refused at accept: reason per_peer (the address is at its cap) or accept_error (out of descriptors).
    ConnectionsRefusedTotal = "meridian_connections_refused_total", Counter, "Client connections refused at accept: reason per_peer (the address is at its cap) or accept_error (out of descriptors).";
    /// 1 when every exposed model has a healthy allowed candidate.
    Ready = "meridian_ready", Gauge, "1 when every exposed model has a healthy allowed candidate.";
}

/// One labelled series of a family.
#[derive(Debug, Clone)]
struct Series<V> {
    name: Family,
    labels: Labels,
    value: V,
}

/// Series by a hash of their family and labels, so the request path finds
/// its series without building owned labels (they are built once, when a
/// series first appears). The keys are hashes already: one more step of
/// the same hash (not SipHash) places them.
type Store<V> = HashMap<u64, Vec<Series<V>>, std::hash::BuildHasherDefault<Fx>>;

/// A word-at-a-time hash of the family and labels: the labels are a closed
/// set (names from the config and the catalog, outcomes, regions), so a
/// keyed hash buys nothing, and SipHash was a visible share of the request
/// path's CPU. Collisions only cost a comparison (see `series`).
#[derive(Debug, Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = fold(self.0, bytes);
    }
}

/// Folds `bytes` into `h` a word at a time (the Fx hash rustc uses).
fn fold(h: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let step = |h: u64, w: u64| (h.rotate_left(26) ^ w).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    let mut h = words.by_ref().fold(h, |h, w| {
        step(h, u64::from_le_bytes(w.try_into().unwrap_or_default()))
    });
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = step(h, u64::from_le_bytes(last) ^ ((rest.len() as u64) << 56));
    }
    h
}

/// Counters and histograms updated on the request path.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Store<f64>>,
    histograms: Mutex<Store<Histogram>>,
}

fn hash_of(name: Family, labels: &[(&'static str, &str)]) -> u64 {
    let mut h = Fx::default();
    name.hash(&mut h);
    for (k, v) in labels {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

/// The series of `name` with these labels, created (at `V::default()`) when new.
fn series<'s, V: Default>(
    store: &'s mut Store<V>,
    name: Family,
    labels: &[(&'static str, &str)],
) -> &'s mut V {
    let same = |s: &Series<V>| {
        s.name == name
            && s.labels.len() == labels.len()
            && s.labels
                .iter()
                .zip(labels)
                .all(|((k, v), (k2, v2))| k == k2 && v == v2)
    };
    let bucket = store.entry(hash_of(name, labels)).or_default();
    let i = match bucket.iter().position(same) {
        Some(i) => i,
        None => {
            bucket.push(Series {
                name,
                labels: owned(labels),
                value: V::default(),
            });
            bucket.len() - 1
        }
    };
    &mut bucket[i].value
}

/// Every series of a store, ordered by family and labels.
fn sorted<V: Clone>(store: &Store<V>) -> Vec<Series<V>> {
    let mut all: Vec<Series<V>> = store.values().flatten().cloned().collect();
    all.sort_by(|a, b| (a.name, &a.labels).cmp(&(b.name, &b.labels)));
    all
}

impl Metrics {
    /// Adds `by` to a counter.
    pub fn add<'a>(&self, name: Family, labels: impl AsRef<[(&'static str, &'a str)]>, by: f64) {
        debug_assert_eq!(name.kind(), Kind::Counter, "{name:?} is not a counter");
        *series(&mut self.counters.lock(), name, labels.as_ref()) += by;
    }

    /// Adds one observation, in seconds, to a histogram.
    pub fn observe<'a>(
        &self,
        name: Family,
        labels: impl AsRef<[(&'static str, &'a str)]>,
        secs: f64,
    ) {
        self.observe_traced(name, labels, secs, None);
    }

    /// Adds one observation, in seconds, to a histogram; with a trace ID
    /// (32 hex digits) it becomes its bucket's exemplar.
    pub fn observe_traced<'a>(
        &self,
        name: Family,
        labels: impl AsRef<[(&'static str, &'a str)]>,
        secs: f64,
        trace_id: Option<&str>,
    ) {
        debug_assert_eq!(name.kind(), Kind::Histogram, "{name:?} is not a histogram");
        let exemplar = trace_id
            .and_then(|t| <[u8; 32]>::try_from(t.as_bytes()).ok())
            .map(|trace_id| Exemplar {
                trace_id,
                value: secs,
                at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64()),
            });
        let mut map = self.histograms.lock();
        let h = series(&mut map, name, labels.as_ref());
        // The first bucket whose bound is at least `secs`; none: only +Inf.
        let bucket = BUCKETS.partition_point(|b| *b < secs);
        if let Some(c) = h.counts.get_mut(bucket) {
            *c += 1;
        }
        if let (Some(e), Some(slot)) = (exemplar, h.exemplars.get_mut(bucket)) {
            *slot = Some(e);
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The exposition text, with `gauges` (computed at scrape time) added.
    pub fn render(&self, gauges: &[(Family, Labels, f64)]) -> String {
        self.render_as(gauges, Format::Prometheus)
    }

    /// The exposition in `format`, with `gauges` (computed at scrape time) added.
    pub fn render_as(&self, gauges: &[(Family, Labels, f64)], format: Format) -> String {
        let counters = sorted(&self.counters.lock());
        let histograms = sorted(&self.histograms.lock());
        let mut out = String::new();
        for family in Family::ALL {
            let (name, help) = (family.name(), family.help());
            let kind = match family.kind() {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            // OpenMetrics names a counter family without its samples'
            // `_total` suffix.
            let family_name = match (format, family.kind()) {
                (Format::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
                _ => name,
            };
            let _ = writeln!(out, "# HELP {family_name} {help}");
            let _ = writeln!(out, "# TYPE {family_name} {kind}");
            match family.kind() {
                Kind::Histogram => {
                    for s in histograms.iter().filter(|s| s.name == *family) {
                        let (labels, h) = (&s.labels, &s.value);
                        let mut cumulative = 0;
                        let bounds = BUCKETS.iter().map(|b| format!("{b}"));
                        let counts = h.counts.iter().copied().chain([0]);
                        for (i, (bound, n)) in
                            bounds.chain(["+Inf".to_string()]).zip(counts).enumerate()
                        {
                            cumulative += n;
                            let mut l = labels.clone();
                            l.push(("le", bound));
                            let total = if i == BUCKETS.len() {
                                h.count
                            } else {
                                cumulative
                            };
                            let _ = write!(out, "{name}_bucket{} {total}", fmt_labels(&l));
                            if let (Format::OpenMetrics, Some(Some(e))) =
                                (format, h.exemplars.get(i))
                            {
                                let trace = String::from_utf8_lossy(&e.trace_id);
                                let _ = write!(
                                    out,
                                    " # {{trace_id=\"{trace}\"}} {} {:.3}",
                                    e.value, e.at
                                );
                            }
                            out.push('\n');
                        }
                        let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(labels), h.sum);
                        let _ = writeln!(out, "{name}_count{} {}", fmt_labels(labels), h.count);
                    }
                }
                Kind::Counter | Kind::Gauge => {
                    for s in counters.iter().filter(|s| s.name == *family) {
                        let _ = writeln!(out, "{name}{} {}", fmt_labels(&s.labels), s.value);
                    }
                    for (_, labels, v) in gauges.iter().filter(|(n, _, _)| n == family) {
                        let _ = writeln!(out, "{name}{} {v}", fmt_labels(labels));
                    }
                }
            }
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

fn fmt_labels(labels: &[(&'static str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A label list, borrowed (what the request path passes to `add` and
/// `observe`).
pub fn labels<'a, const N: usize>(
    pairs: [(&'static str, &'a str); N],
) -> [(&'static str, &'a str); N] {
    pairs
}

/// A label list, owned (gauges, stored series).
pub fn owned(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        let requests = |outcome: &str, n: f64| {
            m.add(
                Family::RequestsTotal,
                labels([
                    ("model", "chat"),
                    ("operation", "Converse"),
                    ("outcome", outcome),
                ]),
                n,
            );
        };
        requests("success", 1.0);
        m.observe(
            Family::RequestDurationSeconds,
            labels([("model", "chat"), ("operation", "Converse")]),
            0.2,
        );
        requests("success", 2.0);
        requests("ThrottlingException", 1.0);
        let text = m.render(&[(Family::Ready, Vec::new(), 1.0)]);
        assert!(text.contains("meridian_requests_total{model=\"chat\",operation=\"Converse\",outcome=\"ThrottlingException\"} 1\nmeridian_requests_total{model=\"chat\",operation=\"Converse\",outcome=\"success\"} 3\n"), "{text}");
        assert!(text.contains("meridian_request_duration_seconds_bucket{model=\"chat\",operation=\"Converse\",le=\"0.2\"} 1\n"));
        assert!(text.contains("meridian_request_duration_seconds_bucket{model=\"chat\",operation=\"Converse\",le=\"0.15\"} 0\n"));
        assert!(text.contains("meridian_request_duration_seconds_bucket{model=\"chat\",operation=\"Converse\",le=\"120\"} 1\n"));
        assert!(text.contains(
            "meridian_request_duration_seconds_count{model=\"chat\",operation=\"Converse\"} 1\n"
        ));
        assert!(text.contains("meridian_ready 1\n"));
        assert!(text.contains("# TYPE meridian_breaker_state gauge\n"));
    }

    #[test]
    fn openmetrics_carries_exemplars_and_prometheus_text_does_not() {
        let m = Metrics::default();
        let l = labels([("model", "chat"), ("operation", "Converse")]);
        let (a, b) = (
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "0af7651916cd43dd8448eb211c80319c",
        );
        m.observe_traced(Family::RequestDurationSeconds, l, 0.12, Some(a));
        m.observe_traced(Family::RequestDurationSeconds, l, 0.13, Some(b));
        m.observe_traced(Family::RequestDurationSeconds, l, 0.9, None);
        m.observe_traced(Family::RequestDurationSeconds, l, 500.0, Some(a));
        m.observe_traced(Family::RequestDurationSeconds, l, 0.3, Some("short"));
        m.add(Family::RequestsTotal, labels([("model", "chat")]), 1.0);
        let om = m.render_as(&[], Format::OpenMetrics);
        let line = |le: &str| {
            let key = format!(
                "meridian_request_duration_seconds_bucket{{model=\"chat\",operation=\"Converse\",le=\"{le}\"}} "
            );
            om.lines()
                .find(|x| x.starts_with(&key))
                .unwrap_or_else(|| panic!("{key}: {om}"))
                .to_string()
        };
        // The bucket's latest traced observation.
        assert!(
            line("0.15").starts_with(&format!("meridian_request_duration_seconds_bucket{{model=\"chat\",operation=\"Converse\",le=\"0.15\"}} 2 # {{trace_id=\"{b}\"}} 0.13 "))
        );
        assert!(line("1").ends_with(" 4"), "untraced: no exemplar");
        assert!(line("0.3").ends_with(" 3"), "not a trace ID: no exemplar");
        assert!(line("+Inf").contains(&format!("5 # {{trace_id=\"{a}\"}} 500 ")));
        assert!(om.contains("# TYPE meridian_requests counter\n"));
        assert!(om.contains("meridian_requests_total{model=\"chat\"} 1\n"));
        assert!(om.ends_with("# EOF\n"));
        let text = m.render(&[]);
        assert!(!text.contains("trace_id") && !text.contains("# EOF"));
        assert!(text.contains("# TYPE meridian_requests_total counter\n"));
        assert_eq!(
            Format::for_accept("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
            Format::OpenMetrics
        );
        assert_eq!(Format::for_accept("text/plain"), Format::Prometheus);
    }

    #[test]
    fn latencies_a_third_apart_fall_in_different_buckets() {
        let m = Metrics::default();
        let l = labels([("model", "chat"), ("operation", "Converse")]);
        for secs in [0.097, 0.124, 0.1, 500.0] {
            m.observe(Family::RequestDurationSeconds, l, secs);
        }
        let text = m.render(&[]);
        let bucket = |le: &str| {
            let key = format!(
                "meridian_request_duration_seconds_bucket{{model=\"chat\",operation=\"Converse\",le=\"{le}\"}} "
            );
            let line = text.lines().find(|x| x.starts_with(&key)).unwrap();
            line[key.len()..].parse::<u64>().unwrap()
        };
        assert_eq!(bucket("0.075"), 0);
        assert_eq!(bucket("0.1"), 2); // 0.097 and 0.1 (bounds are inclusive)
        assert_eq!(bucket("0.15"), 3);
        assert_eq!(bucket("120"), 3);
        assert_eq!(bucket("+Inf"), 4); // 500 s only here
    }

    #[test]
    fn the_family_list_is_the_one_dashboards_and_alerts_use() {
        // `families.txt` was written from the exposition as it stood before
        // issue 31 (hand-written): a move to another exposition library must
        // keep every name and type, or say so here on purpose. Added on
        // purpose since: the two trace-span counters (OTLP export).
        let now: Vec<String> = Family::ALL
            .iter()
            .map(|f| format!("{} {:?}", f.name(), f.kind()).to_lowercase())
            .collect();
        let golden: Vec<&str> = include_str!("families.txt").lines().collect();
        assert_eq!(now, golden);
    }

    #[test]
    fn family_names_are_distinct_and_prometheus_names() {
        let mut seen = std::collections::HashSet::new();
        for f in Family::ALL {
            let n = f.name();
            assert!(seen.insert(n), "{n} twice");
            assert!(n.starts_with("meridian_"), "{n}");
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{n}"
            );
            assert_eq!(n.ends_with("_total"), f.kind() == Kind::Counter, "{n}");
        }
    }
}
