//! Verification time: seconds since the Unix epoch, and RFC 3339 parsing.
//!
//! Every verifier takes the instant to verify at as a parameter, so that
//! captured collateral (which expires) can be checked at a fixed "now".

use std::fmt;

use crate::error::Error;

/// An instant, in whole seconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// The current system time (0 if the clock is before 1970).
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        UnixTime(secs)
    }

    /// Parses an RFC 3339 timestamp such as `2024-01-01T00:00:00Z` or
    /// `2025-06-01T02:00:00+02:00` (fractional seconds are truncated).
    pub fn parse_rfc3339(s: &str) -> Result<Self, Error> {
        parse_rfc3339(s).ok_or_else(|| Error::BadTime {
            input: s.to_string(),
        })
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0;
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_rfc3339(s: &str) -> Option<UnixTime> {
    let s = s.trim();
    if s.len() < 20 || !s.is_ascii() {
        return None;
    }
    let b = s.as_bytes();
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = num(&s[0..4])?;
    let month = num(&s[5..7])?;
    let day = num(&s[8..10])?;
    let hour = num(&s[11..13])?;
    let min = num(&s[14..16])?;
    let sec = num(&s[17..19])?;
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || rb[3] != b':' {
                return None;
            }
            let sign = match rb[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh = num(&rest[1..3])?;
            let om = num(&rest[4..6])?;
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    if !(1..=12).contains(&month) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let t = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
    u64::try_from(t).ok().map(UnixTime)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms (public domain).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_instants() {
        let t = |s| UnixTime::parse_rfc3339(s).unwrap().0;
        assert_eq!(t("1970-01-01T00:00:00Z"), 0);
        assert_eq!(t("2025-07-19T10:00:34Z"), 1_752_919_234);
        assert_eq!(t("2023-07-01T01:00:00Z"), 1_688_173_200);
        assert_eq!(t("2026-03-20T10:41:14Z"), 1_774_003_274);
        assert_eq!(t("2023-07-01T03:00:00.123+02:00"), 1_688_173_200);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "2024-01-01T00:00:00Z",
            "2000-02-29T23:59:59Z",
            "2053-07-01T01:00:00Z",
        ] {
            assert_eq!(UnixTime::parse_rfc3339(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_garbage_with_a_clear_message() {
        for s in [
            "",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "yesterday",
            "2024-01-01T00:00:00",
        ] {
            let e = UnixTime::parse_rfc3339(s).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "cannot read time {s:?}: give an RFC 3339 instant such as 2024-01-01T00:00:00Z"
                )
            );
        }
    }
}
