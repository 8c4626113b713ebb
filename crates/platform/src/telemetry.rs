//! Logs and traces.
//!
//! Logs go to stderr, human-readable by default and JSON with `CARERECORD_LOG_FORMAT=json`, filtered
//! by `RUST_LOG`. Spans are OpenTelemetry spans: exported by OTLP/gRPC when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and in every case carried between services in the W3C
//! `traceparent` header, so one request is one trace across modules.
//!
//! Never record an NHS number, a name or any other patient identifier in a log line or a span field.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::env::{ConfigError, Env};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `OTEL_SERVICE_NAME`, defaulting to `carerecord-<service>`.
    pub service_name: String,
    /// `CARERECORD_LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `RUST_LOG`: a tracing filter directive; default `info`.
    pub log_filter: String,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: where to export traces by OTLP/gRPC; unset exports nothing.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    pub fn from_env(env: &Env, service: &str) -> Result<Self, ConfigError> {
        let log_format = match env.get("CARERECORD_LOG_FORMAT") {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "CARERECORD_LOG_FORMAT",
                    other,
                    "expected text or json",
                ));
            }
        };
        let log_filter = env.string_or("RUST_LOG", "info");
        if let Err(e) = EnvFilter::try_new(&log_filter) {
            return Err(ConfigError::invalid("RUST_LOG", &log_filter, e.to_string()));
        }
        Ok(TelemetryConfig {
            service_name: env.string_or("OTEL_SERVICE_NAME", &format!("carerecord-{service}")),
            log_format,
            log_filter,
            otlp_endpoint: env.get("OTEL_EXPORTER_OTLP_ENDPOINT").map(str::to_owned),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes buffered spans when dropped or shut down; keep it alive for the life of the process.
#[must_use = "dropping the guard flushes and stops trace export"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    meters: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
}

impl TelemetryGuard {
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("telemetry shutdown: {e}");
        }
        if let Some(meters) = &self.meters
            && let Err(e) = meters.shutdown()
        {
            eprintln!("metrics shutdown: {e}");
        }
    }
}

/// Builds a tracer provider: batch OTLP export when an endpoint is configured, otherwise none
/// (spans still get trace ids, so context still propagates to services that do export).
pub fn tracer_provider(config: &TelemetryConfig) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &config.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// A meter provider exporting by OTLP/gRPC every 15 s, when an endpoint is configured.
fn meter_provider(
    config: &TelemetryConfig,
) -> Result<Option<opentelemetry_sdk::metrics::SdkMeterProvider>, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
        .with_interval(std::time::Duration::from_secs(15))
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    Ok(Some(
        opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build(),
    ))
}

/// Installs the global subscriber, the W3C trace-context propagator and, with an OTLP endpoint,
/// the global meter provider.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = tracer_provider(config)?;
    let tracer = provider.tracer(config.service_name.clone());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let meters = meter_provider(config)?;
    if let Some(meters) = &meters {
        opentelemetry::global::set_meter_provider(meters.clone());
    }

    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider, meters })
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(&value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The remote trace context (W3C `traceparent` / `tracestate`) carried by incoming request headers.
pub fn extract_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes the current span's trace context into outgoing gRPC metadata.
pub fn inject_current_context(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
}

/// A client interceptor that propagates the current trace to the called service.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateTrace;

impl tonic::service::Interceptor for PropagateTrace {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject_current_context(request.metadata_mut());
        Ok(request)
    }
}

/// The server span of one gRPC call, a child of the caller's trace when it sent one.
pub fn server_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %request.uri().path(),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %request.uri().path(),
    );
    // A malformed traceparent simply starts a new trace.
    let _ = span.set_parent(extract_context(request.headers()));
    span
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;
    use tonic::service::Interceptor;

    fn subscriber() -> (impl tracing::Subscriber + Send + Sync, SdkTracerProvider) {
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("test");
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        (subscriber, provider)
    }

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn incoming_traceparent_is_extracted() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", TRACEPARENT.parse().unwrap());
        let context = extract_context(&headers);
        let span_context = context.span().span_context().clone();
        assert!(span_context.is_remote());
        assert_eq!(
            span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(span_context.span_id().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn malformed_traceparent_gives_no_parent() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", "00-nonsense".parse().unwrap());
        assert!(!extract_context(&headers).span().span_context().is_valid());
    }

    #[test]
    fn server_span_continues_the_callers_trace_and_the_interceptor_passes_it_on() {
        let (subscriber, _provider) = subscriber();
        tracing::subscriber::with_default(subscriber, || {
            let request = http::Request::builder()
                .uri("/carerecord.identity.v1.PatientIdentityService/GetPatient")
                .header("traceparent", TRACEPARENT)
                .body(())
                .unwrap();
            let span = server_span(&request);
            let _entered = span.enter();

            let outgoing = PropagateTrace.call(tonic::Request::new(())).unwrap();
            let traceparent = outgoing
                .metadata()
                .get("traceparent")
                .expect("traceparent injected")
                .to_str()
                .unwrap();
            let parts: Vec<&str> = traceparent.split('-').collect();
            assert_eq!(parts.len(), 4, "{traceparent}");
            assert_eq!(
                parts[1], "4bf92f3577b34da6a3ce929d0e0e4736",
                "same trace id downstream"
            );
            assert_ne!(
                parts[2], "00f067aa0ba902b7",
                "our own span becomes the parent downstream"
            );
        });
    }

    #[test]
    fn bad_log_settings_are_reported() {
        let env = Env::from_pairs([("CARERECORD_LOG_FORMAT", "xml")]);
        assert!(TelemetryConfig::from_env(&env, "identity").is_err());
        let env = Env::from_pairs([("RUST_LOG", "info,[[[")]);
        assert!(TelemetryConfig::from_env(&env, "identity").is_err());
        let config = TelemetryConfig::from_env(&Env::default(), "identity").unwrap();
        assert_eq!(config.service_name, "carerecord-identity");
        assert_eq!(config.otlp_endpoint, None);
    }
}
