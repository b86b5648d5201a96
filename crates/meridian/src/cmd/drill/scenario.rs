//! Built-in drill scenarios: the gateway's config, the traffic, the fault
//! schedule, and the checks that decide whether Meridian passed.
//!
//! Times are given for the default 60 s run and scale with `--duration`:
//! 10 s of healthy traffic first (the baseline), faults in the middle,
//! recovery at the end.

use meridian_sim::{CapacityModel, FaultSet};

pub use crate::cli::DrillScenario as Name;

/// One scheduled fault change.
#[derive(Debug, Clone)]
pub struct Step {
    /// Seconds after the load starts (already scaled).
    pub at_s: f64,
    /// Region affected.
    pub region: String,
    /// Its faults from then on.
    pub faults: FaultSet,
}

/// Everything a drill run needs.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Which one.
    pub name: Name,
    /// meridian.toml for the gateway under test.
    pub config: String,
    /// Exposed model the traffic asks for.
    pub model: &'static str,
    /// `x-meridian-residency` sent with every request, if any.
    pub residency_header: Option<&'static str>,
    /// The region Meridian calls first when healthy.
    pub primary: String,
    /// Fault changes, in time order.
    pub steps: Vec<Step>,
    /// When the faults start and end, seconds.
    pub fault_window: (f64, f64),
    /// Total run time, seconds.
    pub duration_s: f64,
    /// Quota per region and model in the simulated fleet.
    pub capacity: CapacityModel,
    /// The load's shape: from each time on (seconds, scaled), the rate as a
    /// factor of `--rate`.
    pub shape: Vec<(f64, f64)>,
}

/// The US scenarios' quota: 1.2 M tokens a minute per region, so the
/// default load (200 req/s of about 63 reserved tokens, 0.76 M a minute)
/// fits in one region with room, and a cut to 20 % does not.
const US_CAPACITY: CapacityModel = CapacityModel {
    concurrency: 256,
    tokens_per_minute: 1_200_000,
};

/// The regions the US scenarios may use: on-demand in us-east-1 (primary),
/// ca-central-1 and us-west-2, so the faulted region is exactly the one
/// Meridian calls first.
const US_CONFIG: &str = r#"
region = "us-east-1"

[upstream]
mode = "simulated"

[residency.drill]
allow = ["us-east-1", "ca-central-1", "us-west-2"]

[models.chat]
model = "claude-3-haiku"
residency = "drill"
"#;

/// The US scenarios' config with provisioned throughput for the baseline,
/// on-demand for bursts: one model unit in us-east-1 sized at 1.2 times the
/// baseline's reserved tokens a minute (a third of `--rate`, about 15 input
/// tokens plus `--max-tokens` each), so the baseline fits and the burst to
/// three times it does not. Bedrock counts capacity per minute, so a run
/// shorter than a minute may never fill it. The commitment price is the
/// drill's assumption, not an AWS price.
fn provisioned_config(tokens_per_minute: u64) -> String {
    format!(
        r#"{US_CONFIG}
[[models.chat.provisioned]]
arn = "arn:aws:bedrock:us-east-1:111122223333:provisioned-model/drill-baseline"
model_units = 1
tokens_per_minute_per_unit = {tokens_per_minute}
usd_per_unit_hour = 40.0
"#
    )
}

/// Input tokens of one drill request, as Meridian estimates them.
const DRILL_INPUT_TOKENS: f64 = 15.0;

const EU_CONFIG: &str = r#"
region = "eu-west-3"

[upstream]
mode = "simulated"

[residency.eu-only]
allow = ["eu"]

[models.chat]
model = "claude-sonnet-4-5"
residency = "eu-only"
"#;

/// The EU regions the squeeze takes down, in order (the primary first):
/// every region the EU profile can be called in or processed in.
pub const EU_REGIONS: [&str; 6] = [
    "eu-west-3",
    "eu-west-1",
    "eu-central-1",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
];

impl Scenario {
    /// The scenario, scaled to `duration_s` (default 60); `rate` and
    /// `max_tokens` size the provisioned throughput of `provisioned-overflow`.
    pub fn build(name: Name, duration_s: Option<f64>, rate: f64, max_tokens: u32) -> Scenario {
        let d = duration_s.unwrap_or(60.0).max(6.0);
        let k = d / 60.0;
        let (start, end) = (10.0 * k, 40.0 * k);
        let at = |s: f64, region: &str, faults: FaultSet| Step {
            at_s: s,
            region: region.to_string(),
            faults,
        };
        let healthy = FaultSet::default;
        let us = |steps: Vec<Step>| Scenario {
            name,
            config: US_CONFIG.to_string(),
            model: "chat",
            residency_header: None,
            primary: "us-east-1".into(),
            steps,
            fault_window: (start, end),
            duration_s: d,
            capacity: US_CAPACITY,
            shape: vec![(0.0, 1.0)],
        };
        match name {
            Name::RegionOutage => us(vec![
                at(
                    start,
                    "us-east-1",
                    FaultSet {
                        outage: true,
                        // Responses already streaming get 2 s, as behind a
                        // draining load balancer; `flapping` resets them at once.
                        outage_drain_ms: Some(2000),
                        ..healthy()
                    },
                ),
                at(end, "us-east-1", healthy()),
            ]),
            Name::Brownout => us(vec![
                at(
                    start,
                    "us-east-1",
                    FaultSet {
                        stall_ms: Some(2000),
                        ..healthy()
                    },
                ),
                at(end, "us-east-1", healthy()),
            ]),
            Name::ThrottleStorm => us(vec![
                at(
                    start,
                    "us-east-1",
                    FaultSet {
                        quota_factor: 0.2,
                        ..healthy()
                    },
                ),
                at(end, "us-east-1", healthy()),
            ]),
            Name::Flapping => {
                let mut steps = Vec::new();
                let mut t = start;
                let mut down = true;
                while t < end {
                    steps.push(at(
                        t,
                        "us-east-1",
                        FaultSet {
                            outage: down,
                            ..healthy()
                        },
                    ));
                    down = !down;
                    t += 3.0 * k;
                }
                steps.push(at(end, "us-east-1", healthy()));
                us(steps)
            }
            Name::ResidencySqueeze => {
                let gap = (end - start) / EU_REGIONS.len() as f64;
                let steps = EU_REGIONS
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        at(
                            start + gap * i as f64,
                            r,
                            FaultSet {
                                outage: true,
                                ..healthy()
                            },
                        )
                    })
                    .collect();
                Scenario {
                    name,
                    config: EU_CONFIG.to_string(),
                    model: "chat",
                    residency_header: Some("eu"),
                    primary: "eu-west-3".into(),
                    steps,
                    // The squeeze does not recover: the last region stays down.
                    fault_window: (start, d),
                    duration_s: d,
                    capacity: CapacityModel::default(),
                    shape: vec![(0.0, 1.0)],
                }
            }
            // No fault: the burst is the event. A third of the rate as the
            // baseline, the full rate (three times the baseline) in the window.
            Name::ProvisionedOverflow => {
                let baseline = rate / 3.0;
                let per_request = DRILL_INPUT_TOKENS + f64::from(max_tokens);
                let capacity = (1.2 * baseline * 60.0 * per_request).round() as u64;
                Scenario {
                    config: provisioned_config(capacity.max(1)),
                    shape: vec![(0.0, 1.0 / 3.0), (start, 1.0), (end, 1.0 / 3.0)],
                    ..us(Vec::new())
                }
            }
        }
    }

    /// When every EU region is down (residency-squeeze only).
    pub fn all_down_at(&self) -> Option<f64> {
        (self.name == Name::ResidencySqueeze)
            .then(|| self.steps.last().map(|s| s.at_s))
            .flatten()
    }
}
