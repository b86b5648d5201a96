//! Calendar dates from Unix time, for the timestamps the wire formats carry.

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A time's UTC calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// Year.
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
    /// Hour, minute, second.
    pub hms: (u64, u64, u64),
    /// Milliseconds into the second.
    pub millis: u32,
}

/// The UTC calendar fields of `t` (the epoch for times before it).
pub fn utc(t: std::time::SystemTime) -> Utc {
    let d = t
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    Utc {
        year,
        month,
        day,
        hms: (rem / 3600, rem / 60 % 60, rem % 60),
        millis: d.subsec_millis(),
    }
}

/// `2026-11-22T07:05:09.123Z`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let b = rfc3339_bytes(t);
    String::from_utf8_lossy(&b).into_owned()
}

/// [`rfc3339`] without allocating: 24 ASCII bytes (years 0–9999; later
/// years print as 9999).
pub fn rfc3339_bytes(t: std::time::SystemTime) -> [u8; 24] {
    fn put(out: &mut [u8], mut v: u64) {
        for b in out.iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    let u = utc(t);
    let (h, m, s) = u.hms;
    let mut b = *b"0000-00-00T00:00:00.000Z";
    put(&mut b[0..4], u.year.clamp(0, 9999) as u64);
    put(&mut b[5..7], u64::from(u.month));
    put(&mut b[8..10], u64::from(u.day));
    put(&mut b[11..13], h);
    put(&mut b[14..16], m);
    put(&mut b[17..19], s);
    put(&mut b[20..23], u64::from(u.millis));
    b
}

/// ISO 8601's basic form, `20261122T070509Z` (SigV4's `X-Amz-Date`): the
/// digits, `T` and `Z` of [`rfc3339_bytes`] without its separators.
pub fn basic_bytes(t: std::time::SystemTime) -> [u8; 16] {
    const PICK: [usize; 16] = [0, 1, 2, 3, 5, 6, 8, 9, 10, 11, 12, 14, 15, 17, 18, 23];
    let r = rfc3339_bytes(t);
    PICK.map(|i| r[i])
}
