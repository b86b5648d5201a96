//! Budget periods: the UTC day and the UTC month.

use std::time::{Duration, SystemTime};

use crate::invocation::rfc3339;

/// A budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The UTC day.
    Day,
    /// The UTC month.
    Month,
}

impl Period {
    /// `day` / `month`, as in `budget_usd_per_…`.
    pub fn key(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    /// `daily` / `monthly`.
    pub fn adjective(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }

    /// A number for the period `t` falls in, cheaper than its label: days
    /// since 1970, or months since year 0.
    pub fn number(self, t: SystemTime) -> i64 {
        let u = meridian_wire::civil::utc(t);
        match self {
            Period::Day => t
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() / 86_400) as i64,
            Period::Month => u.year * 12 + i64::from(u.month) - 1,
        }
    }

    /// The period `t` falls in: `2026-12-01` or `2026-12`.
    pub fn label(self, t: SystemTime) -> String {
        let s = rfc3339(t);
        match self {
            Period::Day => s[..10].to_string(),
            Period::Month => s[..7].to_string(),
        }
    }

    /// When the period containing `t` ends, as RFC 3339.
    pub fn resets(self, t: SystemTime) -> String {
        let now = self.label(t);
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // The next midnight; for months, midnights until the label changes.
        let mut next = SystemTime::UNIX_EPOCH + Duration::from_secs((secs / 86_400 + 1) * 86_400);
        while self.label(next) == now {
            next += Duration::from_secs(86_400);
        }
        rfc3339(next).replace(".000Z", "Z")
    }

    /// How long keys of a period are kept after it started, seconds.
    pub fn ttl_secs(self) -> u64 {
        match self {
            Period::Day => 3 * 86_400,
            Period::Month => 63 * 86_400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_reset_at_utc_midnight_and_month_start() {
        // 2026-12-31T23:59:59Z
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(Period::Day.label(t), "2026-12-31");
        assert_eq!(Period::Month.label(t), "2026-12");
        assert_eq!(Period::Day.resets(t), "2027-01-01T00:00:00Z");
        assert_eq!(Period::Month.resets(t), "2027-01-01T00:00:00Z");
        let mid = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000); // 2026-11-18
        assert_eq!(Period::Month.resets(mid), "2026-12-01T00:00:00Z");
        assert_eq!(Period::Day.resets(mid), "2026-11-19T00:00:00Z");
    }
}
