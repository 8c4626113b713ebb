//! Wall time per span, for where a call's time goes hop by hop: each service's `grpc.server` span
//! (by method) and data access's own spans around its upstream calls and its audit append. Opt in
//! with `CARERECORD_BENCH_SPANS=1`: recording spans costs CPU, so figures taken with it on are
//! for the breakdown only, not for the goals.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Totals per span key: calls, wall time from creation to close, time spent entered (polled).
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub count: u64,
    pub wall: Duration,
    pub busy: Duration,
}

#[derive(Clone, Default)]
pub struct SpanTimes(Arc<Mutex<HashMap<String, Totals>>>);

struct Timing {
    key: String,
    created: Instant,
    entered: Option<Instant>,
    busy: Duration,
}

/// The span's name, qualified by the field that names what it does (a method or an upstream RPC).
struct KeyVisitor(String);

impl Visit for KeyVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "rpc.method" | "rpc") {
            let _ = write!(self.0, " {value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if matches!(field.name(), "rpc.method" | "rpc") {
            let _ = write!(self.0, " {value}");
        }
    }
}

fn wanted(metadata: &Metadata<'_>) -> bool {
    metadata.is_span()
        && (metadata.name() == "grpc.server" || metadata.target().starts_with("carerecord"))
}

impl<S> Layer<S> for SpanTimes
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut key = KeyVisitor(attrs.metadata().name().to_owned());
        attrs.record(&mut key);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Timing {
                key: key.0,
                created: Instant::now(),
                entered: None,
                busy: Duration::ZERO,
            });
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(timing) = span.extensions_mut().get_mut::<Timing>()
        {
            timing.entered = Some(Instant::now());
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(timing) = span.extensions_mut().get_mut::<Timing>()
            && let Some(entered) = timing.entered.take()
        {
            timing.busy += entered.elapsed();
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(timing) = span.extensions_mut().remove::<Timing>() else {
            return;
        };
        let mut totals = self.0.lock().expect("span totals");
        let entry = totals.entry(timing.key).or_default();
        entry.count += 1;
        entry.wall += timing.created.elapsed();
        entry.busy += timing.busy;
    }
}

impl SpanTimes {
    /// Installs the recorder as the global subscriber when `CARERECORD_BENCH_SPANS=1`.
    pub fn install_if_asked() -> Option<SpanTimes> {
        if std::env::var("CARERECORD_BENCH_SPANS").ok().as_deref() != Some("1") {
            return None;
        }
        let times = SpanTimes::default();
        let layer = times
            .clone()
            .with_filter(tracing_subscriber::filter::filter_fn(wanted));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other subscriber");
        Some(times)
    }

    /// Takes the totals recorded so far, leaving none.
    pub fn take(&self) -> BTreeMap<String, Totals> {
        std::mem::take(&mut *self.0.lock().expect("span totals"))
            .into_iter()
            .collect()
    }
}

impl Totals {
    pub fn add(&mut self, other: &Totals) {
        self.count += other.count;
        self.wall += other.wall;
        self.busy += other.busy;
    }

    /// Spans per call of `calls`, mean wall time, mean time polled.
    pub fn line(&self, calls: usize) -> String {
        let mean = |d: Duration| d / u32::try_from(self.count.max(1)).unwrap_or(u32::MAX);
        format!(
            "{:.2} per call, mean {:.2?} wall, {:.2?} polled",
            self.count as f64 / calls.max(1) as f64,
            mean(self.wall),
            mean(self.busy)
        )
    }
}
