//! Instants and periods, compared at full (nanosecond) precision.

use carerecord_contracts::common::v1::Period as ProtoPeriod;
use prost_types::Timestamp;

/// Nanoseconds since the Unix epoch (i128: the contract allows years 1 to 9999).
pub type Instant = i128;

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range the contract accepts.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// The instant of a well-formed timestamp (nanos 0..1e9, year 1 to 9999), else `None`.
pub fn instant(ts: &Timestamp) -> Option<Instant> {
    let valid =
        (MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) && (0..1_000_000_000).contains(&ts.nanos);
    valid.then(|| i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos))
}

/// The instant of a well-formed timestamp; stored data was validated on write.
pub fn instant_lossy(ts: &Timestamp) -> Instant {
    i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos.clamp(0, 999_999_999))
}

/// A timestamp from microseconds since the epoch (how the store keeps times).
pub fn timestamp_from_micros(micros: i64) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    }
}

/// The microseconds of an instant (used for the `time` a request asks about).
pub fn instant_from_micros(micros: i64) -> Instant {
    i128::from(micros) * 1000
}

/// A timestamp from an instant.
pub fn timestamp_from_instant(instant: Instant) -> Timestamp {
    let seconds = instant.div_euclid(1_000_000_000);
    Timestamp {
        seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
        nanos: i32::try_from(instant.rem_euclid(1_000_000_000)).unwrap_or(0),
    }
}

/// A half-open interval `[start, end)`; `None` leaves a side unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Period {
    pub start: Option<Instant>,
    pub end: Option<Instant>,
}

impl Period {
    pub const ALWAYS: Period = Period {
        start: None,
        end: None,
    };

    pub fn from_proto(period: Option<&ProtoPeriod>) -> Period {
        match period {
            None => Period::ALWAYS,
            Some(p) => Period {
                start: p.start.as_ref().map(instant_lossy),
                end: p.end.as_ref().map(instant_lossy),
            },
        }
    }

    pub fn to_proto(self) -> ProtoPeriod {
        ProtoPeriod {
            start: self.start.map(timestamp_from_instant),
            end: self.end.map(timestamp_from_instant),
        }
    }

    pub fn is_always(&self) -> bool {
        self.start.is_none() && self.end.is_none()
    }

    /// Whether `t` is in the period (start inclusive, end exclusive).
    pub fn contains(&self, t: Instant) -> bool {
        self.start.is_none_or(|s| s <= t) && self.end.is_none_or(|e| t < e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_half_open() {
        let p = Period {
            start: Some(10),
            end: Some(20),
        };
        assert!(!p.contains(9) && p.contains(10) && p.contains(19) && !p.contains(20));
        assert!(Period::ALWAYS.contains(i128::MIN));
    }

    #[test]
    fn timestamps_are_range_checked_and_round_trip() {
        assert_eq!(
            instant(&Timestamp {
                seconds: 1,
                nanos: 5
            }),
            Some(1_000_000_005)
        );
        assert_eq!(
            instant(&Timestamp {
                seconds: 1,
                nanos: -1
            }),
            None
        );
        assert_eq!(
            instant(&Timestamp {
                seconds: MAX_SECONDS + 1,
                nanos: 0
            }),
            None
        );
        let ts = Timestamp {
            seconds: -3,
            nanos: 7,
        };
        assert_eq!(timestamp_from_instant(instant_lossy(&ts)), ts);
        assert_eq!(
            timestamp_from_micros(-1),
            Timestamp {
                seconds: -1,
                nanos: 999_999_000
            }
        );
    }
}
