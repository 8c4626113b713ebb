//! Times as carerecord stores and exchanges them: microseconds since the Unix epoch in stores,
//! `google.protobuf.Timestamp` in contracts, and FHIR's partial dates and date-times (`2024`,
//! `2024-03`, `2024-03-05`, `2024-03-05T10:30:00+01:00`) at the REST edge, where a value stands for
//! the whole range its precision covers.

use prost_types::Timestamp;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// A timestamp from microseconds since the epoch.
pub fn timestamp_from_micros(micros: i64) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(MICROS_PER_SECOND),
        nanos: i32::try_from(micros.rem_euclid(MICROS_PER_SECOND) * 1000).unwrap_or(0),
    }
}

/// The microseconds of a well-formed timestamp (nanos in range, no overflow), else `None`.
pub fn micros(ts: &Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    ts.seconds
        .checked_mul(MICROS_PER_SECOND)?
        .checked_add(i64::from(ts.nanos / 1000))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a number of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// The range `[start, end)` in microseconds that a FHIR date, dateTime or instant covers: a year, a
/// month, a day, or (with a time) the second or fraction given. Times without a zone are refused, as
/// FHIR requires a zone whenever hours are given. `None` when `text` is not such a value.
pub fn fhir_range(text: &str) -> Option<(i64, i64)> {
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year = digits(parts.next()?, 4)?;
    let month = match parts.next() {
        Some(m) => Some(digits(m, 2)?),
        None => None,
    };
    let day = match parts.next() {
        Some(d) => Some(digits(d, 2)?),
        None => None,
    };
    if parts.next().is_some() || !(1..=9999).contains(&year) {
        return None;
    }
    let year = i64::from(year);
    let Some(month) = month else {
        let start = days_from_civil(year, 1, 1) * MICROS_PER_DAY;
        return Some((start, days_from_civil(year + 1, 1, 1) * MICROS_PER_DAY));
    };
    if !(1..=12).contains(&month) {
        return None;
    }
    let Some(day) = day else {
        let start = days_from_civil(year, month, 1) * MICROS_PER_DAY;
        let (next_year, next_month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        return Some((
            start,
            days_from_civil(next_year, next_month, 1) * MICROS_PER_DAY,
        ));
    };
    if !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    let day_start = days_from_civil(year, month, day) * MICROS_PER_DAY;
    let Some(time) = time else {
        return Some((day_start, day_start + MICROS_PER_DAY));
    };
    let (clock, offset_micros) = split_zone(time)?;
    let mut fields = clock.splitn(3, ':');
    let hour = digits(fields.next()?, 2)?;
    let minute = digits(fields.next()?, 2)?;
    let (second, fraction) = match fields.next() {
        Some(seconds) => match seconds.split_once('.') {
            Some((s, f)) => (digits(s, 2)?, Some(f)),
            None => (digits(seconds, 2)?, None),
        },
        None => (0, None),
    };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut start = day_start
        + (i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second.min(59)))
            * MICROS_PER_SECOND
        - offset_micros;
    let width = match fraction {
        None if clock.len() == 5 => 60 * MICROS_PER_SECOND,
        None => MICROS_PER_SECOND,
        Some(f) => {
            if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let micros_digits = &f[..f.len().min(6)];
            let value: i64 = micros_digits.parse().ok()?;
            start += value * 10_i64.pow(6 - micros_digits.len() as u32);
            10_i64.pow(6 - micros_digits.len() as u32).max(1)
        }
    };
    Some((start, start + width))
}

/// The clock part and the zone offset in microseconds of `10:30:00+01:00` or `10:30:00Z`.
fn split_zone(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix('Z') {
        return Some((clock, 0));
    }
    let at = time.rfind(['+', '-'])?;
    let (clock, zone) = time.split_at(at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = zone[1..].split_once(':')?;
    let (hours, minutes) = (digits(hours, 2)?, digits(minutes, 2)?);
    if hours > 14 || minutes > 59 {
        return None;
    }
    Some((
        clock,
        sign * (i64::from(hours) * 3600 + i64::from(minutes) * 60) * MICROS_PER_SECOND,
    ))
}

fn digits(text: &str, len: usize) -> Option<u32> {
    (text.len() == len && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `2024-03-05T09:30:00.123456Z`: an instant as RFC 3339 in UTC, fractions only when present.
pub fn rfc3339(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let in_day = micros.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let seconds = in_day / MICROS_PER_SECOND;
    let fraction = in_day % MICROS_PER_SECOND;
    let clock = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if fraction == 0 {
        format!("{clock}Z")
    } else {
        format!("{clock}.{fraction:06}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_micros() {
        for value in [0, 1, -1, 1_700_000_000_123_456, -62_135_596_800_000_000] {
            assert_eq!(micros(&timestamp_from_micros(value)), Some(value));
        }
        assert_eq!(
            micros(&Timestamp {
                seconds: 1,
                nanos: -1
            }),
            None
        );
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-719_468, -1, 0, 59, 10_957, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn fhir_values_cover_their_precision() {
        let day = |y, m, d| days_from_civil(y, m, d) * MICROS_PER_DAY;
        assert_eq!(fhir_range("2024"), Some((day(2024, 1, 1), day(2025, 1, 1))));
        assert_eq!(
            fhir_range("2024-02"),
            Some((day(2024, 2, 1), day(2024, 3, 1)))
        );
        assert_eq!(
            fhir_range("2024-12"),
            Some((day(2024, 12, 1), day(2025, 1, 1)))
        );
        assert_eq!(
            fhir_range("2024-02-29"),
            Some((day(2024, 2, 29), day(2024, 3, 1)))
        );
        let (start, end) = fhir_range("2024-03-05T10:30:00+01:00").unwrap();
        assert_eq!(
            start,
            day(2024, 3, 5) + 9 * 3600 * MICROS_PER_SECOND + 1800 * MICROS_PER_SECOND
        );
        assert_eq!(end - start, MICROS_PER_SECOND);
        let (start, end) = fhir_range("2024-03-05T10:30:00.25Z").unwrap();
        assert_eq!(end - start, 10_000);
        assert_eq!(rfc3339(start), "2024-03-05T10:30:00.250000Z");
        assert_eq!(rfc3339(day(1970, 1, 1)), "1970-01-01T00:00:00Z");
        for bad in [
            "",
            "24",
            "2024-13",
            "2023-02-29",
            "2024-03-05T10:30",
            "2024-03-05T25:00:00Z",
            "2024-3-5",
            "yesterday",
            "2024-03-05T10:30:00+15:00",
            "2024-03-05T10:30:00.Z",
        ] {
            assert_eq!(fhir_range(bad), None, "{bad}");
        }
    }
}
