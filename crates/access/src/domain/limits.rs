//! Per-client limits: a call rate (a token bucket: a sustained rate with a burst) and a number of
//! calls in flight, each with a deployment default and per-client overrides. The bucket is pure
//! arithmetic over the instants it is given.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One client's limits. A rate or concurrency of 0 means no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Sustained calls per second.
    pub rate_per_second: f64,
    /// Calls that may arrive at once after a quiet spell (the bucket's size), at least 1.
    pub burst: u32,
    /// Calls in flight at once (an open stream counts until it ends).
    pub concurrency: u32,
}

impl Limit {
    /// No limit at all.
    pub const NONE: Limit = Limit {
        rate_per_second: 0.0,
        burst: 0,
        concurrency: 0,
    };

    pub fn limits_rate(&self) -> bool {
        self.rate_per_second > 0.0
    }

    /// The bucket size: the burst, or (when not given) two seconds' worth, at least 1.
    pub fn bucket(&self) -> f64 {
        if self.burst > 0 {
            f64::from(self.burst)
        } else {
            (self.rate_per_second * 2.0).ceil().max(1.0)
        }
    }
}

/// What a limit given in configuration changes: unset fields keep the default's.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverride {
    pub rate_per_second: Option<f64>,
    pub burst: Option<u32>,
    pub concurrency: Option<u32>,
}

impl LimitOverride {
    pub fn over(&self, base: Limit) -> Limit {
        Limit {
            rate_per_second: self.rate_per_second.unwrap_or(base.rate_per_second),
            burst: self.burst.unwrap_or(base.burst),
            concurrency: self.concurrency.unwrap_or(base.concurrency),
        }
    }

    /// A description of what is wrong with it, if anything.
    pub fn problem(&self) -> Option<&'static str> {
        match self.rate_per_second {
            Some(r) if !(r.is_finite() && r >= 0.0) => {
                Some("rate_per_second must be a number of at least 0")
            }
            _ => None,
        }
    }
}

/// The deployment's default limit and its per-client overrides, by client id.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub default: Limit,
    pub clients: HashMap<String, Limit>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default: Limit::NONE,
            clients: HashMap::new(),
        }
    }
}

impl Limits {
    pub fn of(&self, client: &str) -> Limit {
        self.clients.get(client).copied().unwrap_or(self.default)
    }

    /// Whether any client is limited at all.
    pub fn any(&self) -> bool {
        std::iter::once(&self.default)
            .chain(self.clients.values())
            .any(|l| l.limits_rate() || l.concurrency > 0)
    }
}

/// A token bucket: `rate` tokens a second up to `size`; a call takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `limit`'s size at `now`.
    pub fn full(limit: &Limit, now: Instant) -> Self {
        TokenBucket {
            tokens: limit.bucket(),
            last: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn take(&mut self, limit: &Limit, now: Instant) -> Result<(), Duration> {
        if !limit.limits_rate() {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * limit.rate_per_second).min(limit.bucket());
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / limit.rate_per_second;
            Err(Duration::from_secs_f64(wait).max(Duration::from_millis(1)))
        }
    }

    /// Whether the bucket would be full at `now` (the client has been quiet).
    pub fn idle(&self, limit: &Limit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        !limit.limits_rate() || self.tokens + elapsed * limit.rate_per_second >= limit.bucket()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limit = Limit {
            rate_per_second: 10.0,
            burst: 3,
            concurrency: 0,
        };
        let start = Instant::now();
        let mut bucket = TokenBucket::full(&limit, start);
        for _ in 0..3 {
            assert_eq!(bucket.take(&limit, start), Ok(()));
        }
        let wait = bucket.take(&limit, start).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // A tenth of a second later, one more; a second later, the burst again (not more).
        assert_eq!(
            bucket.take(&limit, start + Duration::from_millis(100)),
            Ok(())
        );
        assert!(
            bucket
                .take(&limit, start + Duration::from_millis(100))
                .is_err()
        );
        let later = start + Duration::from_secs(1);
        assert!(bucket.idle(&limit, later));
        for _ in 0..3 {
            assert_eq!(bucket.take(&limit, later), Ok(()));
        }
        assert!(bucket.take(&limit, later).is_err());
        // No rate: never refused.
        let mut free = TokenBucket::full(&Limit::NONE, start);
        assert!((0..1000).all(|_| free.take(&Limit::NONE, start).is_ok()));
    }

    #[test]
    fn overrides_change_only_what_they_name() {
        let base = Limit {
            rate_per_second: 5.0,
            burst: 0,
            concurrency: 8,
        };
        assert_eq!(base.bucket(), 10.0);
        let faster = LimitOverride {
            rate_per_second: Some(50.0),
            ..Default::default()
        };
        assert_eq!(
            faster.over(base),
            Limit {
                rate_per_second: 50.0,
                burst: 0,
                concurrency: 8
            }
        );
        let limits = Limits {
            default: base,
            clients: HashMap::from([("bulk".to_owned(), faster.over(base))]),
        };
        assert_eq!(limits.of("bulk").rate_per_second, 50.0);
        assert_eq!(limits.of("anyone"), base);
        assert!(limits.any() && !Limits::default().any());
        let negative = LimitOverride {
            rate_per_second: Some(-1.0),
            ..Default::default()
        };
        assert!(negative.problem().is_some());
    }
}
