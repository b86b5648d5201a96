//! Where a request is processed: model-ID checks as Bedrock makes them in
//! this region, the processing region chosen by spare capacity, faults of
//! that region, admission, and the pace of the answer.

use meridian_catalog::ServiceTier;
use meridian_catalog::arn::ModelRef;
use meridian_wire::{BedrockError, ErrorKind};
use tokio::time::Instant;

use crate::capacity::Admission;
use crate::config::CapacityModel;
use crate::faults::FaultSet;
use crate::region::{Ctx, Pace, Placement};
use crate::rng::Rng;

fn invalid_model() -> BedrockError {
    BedrockError::validation("The provided model identifier is invalid.")
}

impl Ctx {
    /// A base model ID processed in this region (Mantle): the model must be
    /// offered here, on demand or through a profile called from here.
    pub(crate) fn place_in_region(&self, base: &str) -> Result<Placement, BedrockError> {
        let here = self.region.to_string();
        let catalog = &self.shared.catalog;
        let offered = match catalog.model_by_id(base) {
            Some(m) => {
                m.on_demand.contains(&here)
                    || m.routes
                        .iter()
                        .filter_map(|id| catalog.route(id))
                        .any(|r| r.destinations(&here).is_some())
            }
            None => {
                crate::frontier::mantle_only_in(base, &here)
                    || self.shared.world.read().model(base).is_some_and(|m| {
                        m.regions.contains(&here)
                            || m.mantle.as_ref().is_some_and(|r| r.contains(&here))
                    })
            }
        };
        if !offered {
            return Err(invalid_model());
        }
        Ok(Placement {
            base: base.to_string(),
            destinations: vec![here],
            provisioned: None,
        })
    }

    /// Checks the model ID as Bedrock would in this region.
    pub(crate) fn place(&self, model_id: &str) -> Result<Placement, BedrockError> {
        let catalog = &self.shared.catalog;
        let here = self.region.to_string();
        let profile = |prefix: &str, base: &str| -> Result<Placement, BedrockError> {
            // A change in the fleet's world, once the data plane routes by it.
            if let Some(d) = self
                .shared
                .world
                .read()
                .routed(&format!("{prefix}.{base}"), &here)
            {
                return Ok(Placement {
                    base: base.to_string(),
                    destinations: d.iter().cloned().collect(),
                    provisioned: None,
                });
            }
            let m = catalog.model_by_id(base).ok_or_else(invalid_model)?;
            let dests = m
                .routes
                .iter()
                .filter_map(|id| catalog.route(id))
                .filter(|r| r.prefix == prefix)
                .find_map(|r| r.destinations(&here))
                .ok_or_else(invalid_model)?;
            Ok(Placement {
                base: base.to_string(),
                destinations: dests.iter().cloned().collect(),
                provisioned: None,
            })
        };
        let on_demand = |base: &str| -> Result<Placement, BedrockError> {
            if let Some(m) = self.shared.world.read().model(base)
                && catalog.model_by_id(base).is_none()
            {
                return if m.on_demand && m.regions.contains(&here) {
                    Ok(Placement {
                        base: base.to_string(),
                        destinations: vec![here.clone()],
                        provisioned: None,
                    })
                } else if m.regions.contains(&here) {
                    Err(BedrockError::validation(format!(
                        "Invocation of model ID {base} with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model."
                    )))
                } else {
                    Err(invalid_model())
                };
            }
            let m = catalog.model_by_id(base).ok_or_else(invalid_model)?;
            if m.on_demand.contains(&here) {
                Ok(Placement {
                    base: base.to_string(),
                    destinations: vec![here.clone()],
                    provisioned: None,
                })
            } else if !m.routes.is_empty() {
                Err(BedrockError::validation(format!(
                    "Invocation of model ID {base} with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model."
                )))
            } else {
                Err(invalid_model())
            }
        };
        match ModelRef::parse(model_id) {
            ModelRef::SystemProfile { prefix, base } => profile(prefix, base),
            ModelRef::Name(base) => on_demand(base),
            ModelRef::Arn(arn) => {
                if arn.region != here {
                    return Err(invalid_model());
                }
                match arn.resource_type {
                    "foundation-model" => on_demand(arn.resource_id),
                    "inference-profile" => match ModelRef::parse(arn.resource_id) {
                        ModelRef::SystemProfile { prefix, base } => profile(prefix, base),
                        _ => Err(invalid_model()),
                    },
                    "application-inference-profile" => {
                        let config = self.shared.config.read();
                        let p = config
                            .app_profiles
                            .iter()
                            .find(|p| p.arn == model_id)
                            .ok_or_else(|| {
                                BedrockError::new(
                                    ErrorKind::ResourceNotFound,
                                    format!("Inference profile {model_id} not found."),
                                )
                            })?;
                        let routed = self.shared.world.read().routed(&p.arn, &here).cloned();
                        Ok(Placement {
                            base: p.model_id.clone(),
                            destinations: routed
                                .unwrap_or_else(|| p.destinations.clone())
                                .into_iter()
                                .collect(),
                            provisioned: None,
                        })
                    }
                    "provisioned-model" => {
                        let config = self.shared.config.read();
                        let p = config
                            .provisioned
                            .iter()
                            .find(|p| p.arn == model_id)
                            .ok_or_else(|| {
                                BedrockError::new(
                                    ErrorKind::ResourceNotFound,
                                    format!("Provisioned model {model_id} not found."),
                                )
                            })?;
                        Ok(Placement {
                            base: p.model_id.clone(),
                            destinations: vec![here.clone()],
                            provisioned: Some((
                                p.arn.clone(),
                                CapacityModel {
                                    concurrency: u32::MAX,
                                    tokens_per_minute: p.tokens_per_minute,
                                },
                            )),
                        })
                    }
                    _ => Err(invalid_model()),
                }
            }
        }
    }

    /// Picks the processing region and reserves capacity there.
    pub(crate) fn admit(
        &self,
        p: &Placement,
        tokens: u64,
        tier: Option<ServiceTier>,
    ) -> Result<(String, Admission), BedrockError> {
        // Flex may use only part of a region's capacity, none in a region
        // whose Flex capacity is gone: it is throttled first.
        let share = |f: &FaultSet| match tier {
            Some(ServiceTier::Flex) if f.flex_throttled => 0.0,
            Some(ServiceTier::Flex) => crate::tiers::FLEX_SHARE,
            _ => 1.0,
        };
        let live: Vec<&String> = p
            .destinations
            .iter()
            .filter(|d| !self.shared.faults(d).outage)
            .collect();
        if live.is_empty() {
            return Err(BedrockError::new(
                ErrorKind::ServiceUnavailable,
                "Service unavailable. Please try again later.",
            ));
        }
        // Faults of the processing region decide the answer; draw in a fixed order.
        let mut rng = self
            .shared
            .state(&self.region)
            .map(|s| s.rng.lock().clone())
            .unwrap_or_else(|| Rng::new(0, ""));
        // Provisioned capacity is the ARN's own: no share of the region's
        // on-demand quota, and a throttle storm (an on-demand quota cut)
        // does not touch it.
        let (pool, capacity, dedicated) = match &p.provisioned {
            Some((arn, m)) => (arn.as_str(), *m, true),
            None => (p.base.as_str(), self.shared.config.read().capacity, false),
        };
        let share = |f: &FaultSet| {
            if dedicated {
                1.0
            } else {
                f.quota_factor * share(f)
            }
        };
        let now = Instant::now();
        let mut ranked: Vec<(f64, u64, &String)> = live
            .iter()
            .map(|d| {
                let f = self.shared.faults(d);
                let head = self.shared.state(d).map_or(0.0, |s| {
                    s.capacity.lock().headroom(pool, &capacity, share(&f), now)
                });
                (head, rng.next_u64(), *d)
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        if let Some(s) = self.shared.state(&self.region) {
            *s.rng.lock() = rng;
        }
        let chosen = ranked[0].2.clone();
        let f = self.shared.faults(&chosen);
        if f.not_ready {
            return Err(BedrockError::new(
                ErrorKind::ModelNotReady,
                "Model is not ready for inference. Wait and try your request again.",
            ));
        }
        if f.error_rate > 0.0 {
            let draw = self
                .shared
                .state(&self.region)
                .map_or(1.0, |s| s.rng.lock().unit());
            if draw < f.error_rate {
                return Err(if f.error_status == 500 {
                    BedrockError::new(
                        ErrorKind::InternalServer,
                        "The server encountered an internal error while processing the request.",
                    )
                } else {
                    BedrockError::new(
                        ErrorKind::ServiceUnavailable,
                        "Service unavailable. Please try again later.",
                    )
                });
            }
        }
        for (_, _, d) in &ranked {
            let f = self.shared.faults(d);
            let factor = share(&f);
            if let Some(s) = self.shared.state(d)
                && let Some(a) = s
                    .capacity
                    .lock()
                    .admit(pool, tokens, &capacity, factor, now)
            {
                let processed = self.shared.faults(&self.region).misroute_to;
                return Ok((processed.unwrap_or_else(|| (*d).clone()), a));
            }
        }
        Err(BedrockError::new(
            ErrorKind::Throttling,
            "Too many requests, please wait before trying again.",
        ))
    }

    pub(crate) fn pace(&self, processing: &str, f: &FaultSet, tier: Option<ServiceTier>) -> Pace {
        let (first, per_token) = crate::tiers::pace_factors(tier);
        let lat = self.shared.config.read().latency;
        let catalog = &self.shared.catalog;
        let km = match (catalog.region(&self.region), catalog.region(processing)) {
            (Some(a), Some(b)) => a.distance_km(b),
            _ => 0.0,
        };
        let jitter = {
            let u = self
                .shared
                .state(&self.region)
                .map_or(0.5, |s| s.rng.lock().unit());
            1.0 + lat.jitter * (2.0 * u - 1.0)
        };
        let first_ms =
            (lat.ttft_ms + km / 1000.0 * lat.rtt_ms_per_1000km) * f.latency_factor * jitter;
        let tps = f
            .drip_tokens_per_sec
            .unwrap_or(lat.tokens_per_sec)
            .max(0.001);
        Pace {
            first_ms: first_ms * first,
            per_token_ms: 1000.0 / tps * f.latency_factor * per_token,
        }
    }
}
