//! Showing stored timestamps to people, and reading the times people give.

use std::time::{Duration, SystemTime};

/// A time stored as milliseconds since the Unix epoch, as `Tue, 24 Nov 2026 09:13:21 GMT`.
pub(crate) fn format_ms(ms: u64) -> String {
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

/// A time stored as seconds since the Unix epoch (LLMC's `created_at`), the same way.
pub(crate) fn format_secs(secs: i64) -> String {
    match u64::try_from(secs) {
        Ok(secs) => httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
        Err(_) => format!("{secs} (before 1970)"),
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date `year-month-day` (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day counted from 1970-01-01 (`civil_from_days`, the inverse of
/// [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unix seconds as RFC 3339 in UTC, `2026-11-24T09:13:21Z`.
pub(crate) fn rfc3339_secs(secs: i64) -> String {
    let (days, second_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// An RFC 3339 time as Unix seconds (fractions of a second dropped): a date and time with `Z`
/// or an offset (`2026-11-24T09:13:21Z`, `2026-11-24 10:13:21.5+01:00`; `T` may be a space or
/// lowercase), or a bare date, which means its midnight in UTC.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.trim();
    let number = |part: &str| -> Option<u32> {
        (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let date = text.get(..10)?;
    let (year, month, day) = match date.split('-').collect::<Vec<_>>()[..] {
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            (number(y)?, number(m)?, number(d)?)
        }
        _ => return None,
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day == 0 || day > month_days[month as usize - 1] {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(days * 86_400);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let time = rest.get(..8)?;
    let (hour, minute, second) = match time.split(':').collect::<Vec<_>>()[..] {
        [h, m, s] if h.len() == 2 && m.len() == 2 && s.len() == 2 => {
            (number(h)?, number(m)?, number(s)?)
        }
        _ => return None,
    };
    // 60 is a leap second, read as the next second.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut zone = &rest[8..];
    if let Some(fraction) = zone.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        zone = &fraction[digits..];
    }
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = match zone.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = zone[1..].split_once(':')?;
            let (h, m) = (
                number(h).filter(|_| h.len() == 2)?,
                number(m).filter(|_| m.len() == 2)?,
            );
            if h > 23 || m > 59 {
                return None;
            }
            sign * i64::from(h * 3600 + m * 60)
        }
    };
    Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_read_as_unix_seconds() {
        let cases = [
            ("2023-11-14T22:13:20Z", 1_700_000_000),
            ("2023-11-14t22:13:20.999z", 1_700_000_000),
            ("2023-11-14 23:13:20+01:00", 1_700_000_000),
            ("2023-11-14T17:13:20-05:00", 1_700_000_000),
            ("1970-01-01", 0),
            ("2024-02-29T00:00:00Z", 1_709_164_800),
            ("1969-12-31T23:59:59Z", -1),
        ];
        for (text, secs) in cases {
            assert_eq!(parse_rfc3339(text), Some(secs), "{text}");
        }
        for wrong in [
            "",
            "2023-11-14T22:13Z",
            "2023-11-14T22:13:20",
            "2023-02-29",
            "2023-13-01",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20+0100",
            "2023-11-14T22:13:20.Z",
            "23-11-14",
            "7d",
            "2023-1-14",
        ] {
            assert_eq!(parse_rfc3339(wrong), None, "{wrong:?}");
        }
    }

    #[test]
    fn unix_seconds_write_as_rfc3339_utc() {
        assert_eq!(rfc3339_secs(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_secs(1_709_164_800), "2024-02-29T00:00:00Z");
        for secs in [0, 951_782_400, 1_700_000_000, 4_102_444_800, -86_400 * 365] {
            assert_eq!(parse_rfc3339(&rfc3339_secs(secs)), Some(secs));
        }
    }

    #[test]
    fn stored_times_read_as_utc_dates() {
        assert_eq!(
            format_ms(1_700_000_000_123),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
        assert_eq!(format_secs(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(format_secs(-5), "-5 (before 1970)");
    }
}
