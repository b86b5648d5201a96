//! Rate limits as GCRA (generic cell rate algorithm) with debt: a limit of
//! `per_minute` units is a theoretical arrival time (TAT) that advances by
//! `cost × interval` for every admitted request, where interval is one
//! minute ÷ `per_minute`. A request is admitted while the TAT is at most one
//! second's `burst` ahead of now — however much it costs, so a request larger
//! than a second's worth is still admitted, and the ones after it wait until
//! the debt is paid. Refunds (tokens reserved but not used) move the TAT back.
//!
//! Over any interval of length t, admitted cost is at most
//! `per_minute × t / 60 s + burst + one request`. The Redis backend runs the
//! same arithmetic in Lua, on the server's clock.

/// Milliseconds.
pub type Ms = f64;

/// One limit: `per_minute` units, with one second's worth of burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Milliseconds of TAT per unit.
    pub interval: Ms,
    /// How far ahead of now the TAT may be when a request is admitted.
    pub burst: Ms,
}

impl Rate {
    /// `per_minute` units per minute (at least 1).
    pub fn per_minute(per_minute: u64) -> Rate {
        let interval = 60_000.0 / per_minute.max(1) as f64;
        Rate {
            interval,
            burst: 1_000.0_f64.max(interval),
        }
    }
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Whether the request is admitted.
    pub admitted: bool,
    /// The new TAT (unchanged when refused).
    pub tat: Ms,
    /// When a refused request could be admitted, from now.
    pub retry_after: Ms,
    /// Units that could be admitted right now after this request.
    pub remaining: u64,
    /// When the TAT is back at now (the limit fully reset), from now.
    pub reset: Ms,
}

/// Checks (and if admitted, charges) `cost` units at `now` against `tat`.
pub fn check(rate: Rate, tat: Ms, now: Ms, cost: u64) -> Verdict {
    let start = tat.max(now);
    let ahead = start - now;
    if ahead > rate.burst {
        return Verdict {
            admitted: false,
            tat,
            retry_after: ahead - rate.burst,
            remaining: 0,
            reset: ahead,
        };
    }
    let tat = start + cost as f64 * rate.interval;
    let ahead = tat - now;
    Verdict {
        admitted: true,
        tat,
        retry_after: 0.0,
        remaining: remaining(rate, ahead),
        reset: ahead,
    }
}

/// Units admissible now when the TAT is `ahead` of now.
fn remaining(rate: Rate, ahead: Ms) -> u64 {
    if ahead > rate.burst {
        0
    } else {
        ((rate.burst - ahead) / rate.interval) as u64 + 1
    }
}

/// Gives back `units` (reserved, not used).
pub fn refund(rate: Rate, tat: Ms, now: Ms, units: u64) -> Ms {
    (tat - units as f64 * rate.interval).max(now)
}

/// Charges `units` used beyond the reservation, without a check: the
/// request already ran; the requests after it wait for the debt.
pub fn charge(rate: Rate, tat: Ms, now: Ms, units: u64) -> Ms {
    tat.max(now) + units as f64 * rate.interval
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_steady_overload_is_held_to_the_rate_plus_one_burst() {
        // 600 per minute = 10 per second; 20 per second offered for 30 s.
        let rate = Rate::per_minute(600);
        let (mut tat, mut admitted) = (0.0, 0u64);
        for i in 0..600 {
            let now = i as f64 * 50.0;
            let v = check(rate, tat, now, 1);
            if v.admitted {
                admitted += 1;
                tat = v.tat;
            }
        }
        // 30 s × 10/s, plus one second's burst.
        assert!((300..=311).contains(&admitted), "{admitted}");
    }

    #[test]
    fn a_large_request_is_admitted_then_paid_for() {
        let rate = Rate::per_minute(6_000); // 100 tokens per second
        let v = check(rate, 0.0, 0.0, 5_000);
        assert!(v.admitted, "bigger than a second's burst, still admitted");
        let next = check(rate, v.tat, 1_000.0, 1);
        assert!(!next.admitted);
        assert_eq!(
            next.retry_after, 48_000.0,
            "50 s of debt, less now, less the burst"
        );
        // Giving back 4 000 unused tokens clears most of the debt.
        let tat = refund(rate, v.tat, 1_000.0, 4_000);
        assert!(check(rate, tat, 10_000.0, 1).admitted);
    }

    proptest! {
        #[test]
        fn never_more_than_rate_plus_burst_plus_one(
            per_minute in 1u64..100_000,
            gaps in proptest::collection::vec(0.0f64..2_000.0, 1..400),
            cost in 1u64..50,
        ) {
            let rate = Rate::per_minute(per_minute);
            let (mut tat, mut now, mut admitted) = (0.0, 0.0, 0u64);
            for g in &gaps {
                now += g;
                let v = check(rate, tat, now, cost);
                if v.admitted {
                    admitted += cost;
                    tat = v.tat;
                }
            }
            let bound = now / rate.interval + rate.burst / rate.interval + 1.0 + cost as f64;
            prop_assert!(admitted as f64 <= bound, "{admitted} > {bound}");
        }
    }
}
