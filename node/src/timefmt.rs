//! Reading and writing times on the command line.

use std::time::{SystemTime, UNIX_EPOCH};

use meshota_manifest::UnixTime;

use crate::failure::{CmdResult, Failure};

/// The system clock, as the CLI's notion of now.
pub(crate) fn now() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ`, a Unix time in seconds, or a
/// duration from now such as `+90d`, `+12h`, `+30m`.
pub(crate) fn parse_time(s: &str, now: UnixTime) -> CmdResult<UnixTime> {
    let bad = || {
        Failure::usage(format!(
            "cannot read time {s:?}: use YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, Unix seconds, or +N[d|h|m|s]"
        ))
    };
    if let Some(rel) = s.strip_prefix('+') {
        let (num, unit) = rel.split_at(rel.len().saturating_sub(1));
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult = match unit {
            "d" => 86_400,
            "h" => 3_600,
            "m" => 60,
            "s" => 1,
            _ => return Err(bad()),
        };
        return Ok(UnixTime(now.0.saturating_add(n.saturating_mul(mult))));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map(UnixTime).map_err(|_| bad());
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (s, None),
    };
    let mut parts = date.split('-').map(str::parse::<i64>);
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(t) = time {
        let mut hms = t.split(':').map(str::parse::<i64>);
        let (Some(Ok(h)), Some(Ok(mi)), Some(Ok(se)), None) =
            (hms.next(), hms.next(), hms.next(), hms.next())
        else {
            return Err(bad());
        };
        if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&se) {
            return Err(bad());
        }
        secs += h * 3600 + mi * 60 + se;
    }
    u64::try_from(secs).map(UnixTime).map_err(|_| bad())
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dates_and_round_trips_through_display() {
        let t = parse_time("2027-03-01", UnixTime(0)).unwrap();
        assert_eq!(t.to_string(), "2027-03-01T00:00:00Z");
        let t = parse_time("2024-02-29T23:59:58Z", UnixTime(0)).unwrap();
        assert_eq!(t.to_string(), "2024-02-29T23:59:58Z");
        assert_eq!(
            parse_time("+2d", UnixTime(10)).unwrap(),
            UnixTime(10 + 172_800)
        );
        assert_eq!(
            parse_time("1790000000", UnixTime(0)).unwrap(),
            UnixTime(1_790_000_000)
        );
    }

    #[test]
    fn rejects_malformed_times_with_a_usage_error() {
        for s in [
            "2027-13-01",
            "tomorrow",
            "+5y",
            "2027-01-01T25:00:00Z",
            "1969-12-31",
        ] {
            assert_eq!(parse_time(s, UnixTime(0)).unwrap_err().code, 2, "{s}");
        }
    }
}
