//! UTC days, weeks and months as milliseconds since the Unix epoch: what
//! `/usage` ranges and budget windows need. Howard Hinnant's civil-date
//! algorithms, a dozen lines, rather than a date crate for UTC alone.

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` → the day's first millisecond (UTC).
pub fn parse_day(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    let valid = (1..=12).contains(&m) && (1..=31).contains(&d) && text.len() == 10;
    // A day past its month's end (02-30) comes back as another date.
    let days = days_from_civil(y, m, d);
    (valid && civil_from_days(days) == (y, m, d)).then_some(days * DAY_MS)
}

/// The day of `ms` as `YYYY-MM-DD`.
pub fn format_day(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Where the UTC day, ISO week (from Monday) or month of `ms` starts and
/// where the next one does.
pub fn day_bounds(ms: i64) -> (i64, i64) {
    let day = ms.div_euclid(DAY_MS);
    (day * DAY_MS, (day + 1) * DAY_MS)
}

/// The ISO week (Monday 00:00 UTC) around `ms`.
pub fn week_bounds(ms: i64) -> (i64, i64) {
    let day = ms.div_euclid(DAY_MS);
    // 1970-01-01 was a Thursday: three days after a Monday.
    let monday = day - (day + 3).rem_euclid(7);
    (monday * DAY_MS, (monday + 7) * DAY_MS)
}

/// The calendar month around `ms`.
pub fn month_bounds(ms: i64) -> (i64, i64) {
    let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (days_from_civil(y, m, 1) * DAY_MS, days_from_civil(ny, nm, 1) * DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_weeks_and_months_have_the_right_edges() {
        let at = parse_day("2026-12-05").unwrap() + 3_600_000;
        assert_eq!(format_day(at), "2026-12-05");
        assert_eq!(day_bounds(at), (parse_day("2026-12-05").unwrap(), parse_day("2026-12-06").unwrap()));
        // 2026-12-05 is a Saturday; its ISO week began on Monday 11-30.
        assert_eq!(week_bounds(at), (parse_day("2026-11-30").unwrap(), parse_day("2026-12-07").unwrap()));
        assert_eq!(month_bounds(at), (parse_day("2026-12-01").unwrap(), parse_day("2027-01-01").unwrap()));
        assert_eq!(month_bounds(parse_day("2024-02-29").unwrap()).1, parse_day("2024-03-01").unwrap());
        assert_eq!(parse_day("1970-01-01"), Some(0));
        for bad in ["2026-02-30", "2026-13-01", "26-1-1", "2026-1-01", "x"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }
}
