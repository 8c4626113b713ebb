//! Per-client limits, applied to every call once its token is verified (before anything else is
//! done for it): a call over the client's rate, or beyond its calls in flight, is refused
//! RESOURCE_EXHAUSTED (RATE_LIMITED, with RetryInfo), not audited, and counted in the
//! `carerecord.access.rate_limited` metric (by client and limit). One client's flood uses up its
//! own allowance, not everyone's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use tokio::sync::Semaphore;

use crate::domain::auth::Slot;
use crate::domain::limits::{Limits, TokenBucket};
use crate::error::Error;

/// How long a client refused for calls in flight is told to wait.
const CONCURRENCY_RETRY: Duration = Duration::from_millis(100);
/// Clients remembered before idle ones are forgotten.
const MAX_CLIENTS: usize = 10_000;

/// One client's state: its bucket and its slots for calls in flight.
struct ClientState {
    bucket: TokenBucket,
    slots: Option<Arc<Semaphore>>,
}

pub(super) struct Limiter {
    limits: Limits,
    clients: Mutex<HashMap<String, ClientState>>,
    refused: Counter<u64>,
    refused_rate: AtomicU64,
    refused_concurrency: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    pub(super) fn new(limits: Limits) -> Self {
        let refused = opentelemetry::global::meter("carerecord-access")
            .u64_counter("carerecord.access.rate_limited")
            .with_description(
                "Calls refused RESOURCE_EXHAUSTED (RATE_LIMITED), by client and limit",
            )
            .build();
        Limiter {
            limits,
            clients: Mutex::new(HashMap::new()),
            refused,
            refused_rate: AtomicU64::new(0),
            refused_concurrency: AtomicU64::new(0),
        }
    }

    /// Calls refused so far: (over the rate, beyond the calls in flight).
    #[cfg(test)]
    fn refused(&self) -> (u64, u64) {
        (
            self.refused_rate.load(Ordering::Relaxed),
            self.refused_concurrency.load(Ordering::Relaxed),
        )
    }

    fn refuse(&self, client: &str, limit: &'static str, retry_after: Duration) -> Error {
        let counter = match limit {
            "rate" => &self.refused_rate,
            _ => &self.refused_concurrency,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.refused.add(
            1,
            &[
                KeyValue::new("client_id", client.to_owned()),
                KeyValue::new("limit", limit),
            ],
        );
        Error::RateLimited { limit, retry_after }
    }

    /// Admits a call of `client`, holding one of its slots while the returned [`Slot`] lives; or
    /// RATE_LIMITED.
    pub(super) fn admit(&self, client: &str) -> Result<Slot, Error> {
        if !self.limits.any() {
            return Ok(Slot::default());
        }
        let limit = self.limits.of(client);
        let now = Instant::now();
        let mut clients = match self.clients.lock() {
            Ok(clients) => clients,
            Err(poisoned) => poisoned.into_inner(),
        };
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(client) {
            // Forget the clients with nothing in flight whose buckets have refilled.
            let limits = &self.limits;
            clients.retain(|id, state| {
                let limit = limits.of(id);
                let busy = state
                    .slots
                    .as_ref()
                    .is_some_and(|s| s.available_permits() < limit.concurrency as usize);
                busy || !state.bucket.idle(&limit, now)
            });
        }
        let state = clients
            .entry(client.to_owned())
            .or_insert_with(|| ClientState {
                bucket: TokenBucket::full(&limit, now),
                slots: (limit.concurrency > 0)
                    .then(|| Arc::new(Semaphore::new(limit.concurrency as usize))),
            });
        // Calls in flight first: a call refused for them uses none of the rate.
        let permit = match &state.slots {
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return Err(self.refuse(client, "concurrency", CONCURRENCY_RETRY)),
            },
            None => None,
        };
        if let Err(wait) = state.bucket.take(&limit, now) {
            return Err(self.refuse(client, "rate", wait));
        }
        Ok(permit.map(Slot::holding).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::limits::Limit;

    #[test]
    fn each_client_has_its_own_rate_and_slots() {
        let limiter = Limiter::new(Limits {
            default: Limit {
                rate_per_second: 1.0,
                burst: 2,
                concurrency: 0,
            },
            clients: HashMap::from([(
                "busy".to_owned(),
                Limit {
                    rate_per_second: 0.0,
                    burst: 0,
                    concurrency: 2,
                },
            )]),
        });
        // The default: a burst of two, then refused with the wait until the next token.
        assert!(limiter.admit("a").is_ok() && limiter.admit("a").is_ok());
        match limiter.admit("a") {
            Err(Error::RateLimited { limit, retry_after }) => {
                assert_eq!(limit, "rate");
                assert!(retry_after > Duration::from_millis(900), "{retry_after:?}");
            }
            other => panic!("expected RATE_LIMITED, got {other:?}"),
        }
        // Another client is not affected.
        assert!(limiter.admit("b").is_ok());
        // Two calls in flight, a third refused until one ends.
        let first = limiter.admit("busy").unwrap();
        let second = limiter.admit("busy").unwrap();
        assert!(matches!(
            limiter.admit("busy"),
            Err(Error::RateLimited {
                limit: "concurrency",
                ..
            })
        ));
        drop(first);
        let third = limiter.admit("busy").unwrap();
        drop((second, third));
        assert_eq!(limiter.refused(), (1, 1));
        // Without limits nothing is counted or refused.
        let free = Limiter::new(Limits::default());
        assert!((0..100).all(|_| free.admit("a").is_ok()));
    }
}
