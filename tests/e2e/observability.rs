//! One request to data access is one trace across the four services, and no patient identifier
//! reaches a log line or a span attribute.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use carerecord_e2e::{Platform, authed, by_nhs, read_request, token};
use carerecord_platform::db::Backend;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Everything the process logs, as JSON lines.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Telemetry {
    logs: LogBuffer,
    spans: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

/// The process-wide subscriber: JSON logs at debug into a buffer, spans into memory.
fn telemetry() -> &'static Telemetry {
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let logs = LogBuffer::default();
        let writer = logs.clone();
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(
                "debug,h2=info,hyper=info,tower=info",
            ))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(move || writer.clone()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("e2e")))
            .try_init()
            .expect("the only global subscriber in this test binary");
        Telemetry {
            logs,
            spans,
            provider,
        }
    })
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test]
async fn one_read_is_one_trace_across_the_services_and_logs_carry_no_patient_identifiers() {
    let telemetry = telemetry();
    let platform = Platform::start(Backend::Sqlite, Default::default()).await;
    let (patient_id, nhs_number) = platform.register_patient("Zebedee", "Quartermaine").await;
    platform.add_record(&patient_id, &[]).await;

    let clinician = token("R8000", "user/*.rs");
    let request = read_request(by_nhs(&nhs_number), "TREAT");
    let mut request = authed(request, &clinician);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-b7ad6b7169203331-01")
            .parse()
            .expect("header"),
    );
    platform
        .access_client()
        .await
        .read_patient_record(request)
        .await
        .expect("read");

    telemetry.provider.force_flush().expect("flush spans");
    let spans = telemetry.spans.get_finished_spans().expect("spans");
    let in_trace: Vec<String> = spans
        .iter()
        .filter(|s| s.span_context.trace_id().to_string() == TRACE_ID)
        .map(|s| s.name.to_string())
        .collect();
    for service in [
        "carerecord.access.v1.DataAccessService/ReadPatientRecord",
        "carerecord.identity.v1.PatientIdentityService/",
        "carerecord.consent.v1.ConsentService/Decide",
        "carerecord.records.v1.RecordHostingService/ListRecords",
    ] {
        assert!(
            in_trace.iter().any(|name| name.contains(service)),
            "no {service} span in the trace: {in_trace:?}"
        );
    }

    // Neither logs nor span attributes may carry the name or the NHS number (in any spacing).
    let spaced = format!(
        "{} {} {}",
        &nhs_number[..3],
        &nhs_number[3..6],
        &nhs_number[6..]
    );
    let forbidden = [
        "Zebedee",
        "Quartermaine",
        nhs_number.as_str(),
        spaced.as_str(),
    ];
    let logs = String::from_utf8_lossy(&telemetry.logs.0.lock().expect("log buffer")).into_owned();
    assert!(logs.contains("serving"), "the log capture works");
    for needle in forbidden {
        assert!(
            !logs.contains(needle),
            "a log line carries patient data ({needle})"
        );
    }
    for span in &spans {
        for attribute in &span.attributes {
            let value = attribute.value.to_string();
            for needle in forbidden {
                assert!(
                    !value.contains(needle),
                    "span {} attribute {} carries patient data",
                    span.name,
                    attribute.key
                );
            }
        }
    }
}
