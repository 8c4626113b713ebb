//! The front door both ways, with the four real services on this machine (issue 16's goals):
//!
//! 1. Contribute: CreateRecord through data access (token, identity resolution by NHS number,
//!    consent, record hosting, audit) against CreateRecord on record hosting directly, 64 clients
//!    each, in alternating rounds. Goal: through >= 0.7 x direct.
//! 2. Import: a CGM day (288 readings per patient, interleaved by time, messages of 1,000) through
//!    data access's ImportRecords against record hosting's own ImportRecords of the same readings.
//!    Goal: through >= 0.7 x direct.
//! 3. Notifications: 100 subscribers follow 10 patients each; contributions are offered open loop
//!    at 1,000/s through data access; latency from each contribution's acknowledgement to its
//!    delivery. Goal: p99 < 1 s.
//!
//! Runtimes as in `read_four_services`: the services share a 2-worker runtime, the load its own
//! 1-worker runtime. `CARERECORD_BENCH_SCALE` scales durations and the cohort (1.0: 1,000 patients).
//! Each phase reports the CPU a call (or an imported reading) cost, split between the services,
//! PostgreSQL by service, and the load generator; `CARERECORD_BENCH_SPANS=1` adds each hop's mean
//! wall time (see `common/`).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::records::v1 as records;
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_e2e::{Platform, authed, by_nhs, token_at, uuid};
use common::cpu::{CpuMeter, Spent};
use common::perf;
use common::spans::SpanTimes;
use common::{
    Patient, Phase, Stats, alternating, connect, database, load, load_average, measured, offer,
    pool_size, register_patients, start_platform,
};
use tonic::transport::Channel;

const CLIENTS: usize = 64;
const ROUNDS: u32 = 4;
const READINGS_PER_DAY: usize = 288;
const SUBSCRIBERS: usize = 100;
const FOLLOWED_EACH: usize = 10;
const OFFERED_PER_SECOND: f64 = 1000.0;

fn observation(patient_id: &str, n: usize) -> Vec<u8> {
    format!(
        r#"{{"resourceType":"Observation","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"105272-9"}}]}},"subject":{{"reference":"Patient/{patient_id}"}},"effectiveDateTime":"2026-11-10T{:02}:{:02}:00Z","valueQuantity":{{"value":{:.1},"unit":"mmol/L"}}}}"#,
        (n * 5) / 60 % 24,
        (n * 5) % 60,
        5.0 + (n % 9) as f64 * 0.4
    )
    .into_bytes()
}

fn requester() -> Requester {
    Requester {
        user_id: "cgm-platform".into(),
        organisation_ods_code: "CGM01".into(),
        role_code: String::new(),
        display_name: String::new(),
    }
}

fn direct_record(patient: &Patient, n: usize) -> records::Record {
    records::Record {
        patient_id: patient.id.clone(),
        resource_type: "Observation".into(),
        content_type: "application/fhir+json".into(),
        payload: observation(&patient.id, n),
        authoring_organisation_ods_code: "CGM01".into(),
        source_system: "cgm-platform".into(),
        ..Default::default()
    }
}

fn through_content(patient: &Patient, n: usize) -> api::RecordContent {
    api::RecordContent {
        resource_type: "Observation".into(),
        payload: observation(&patient.id, n),
        ..Default::default()
    }
}

/// CreateRecord through data access of `patient`'s reading `n`, by NHS number, as `device`.
fn create_through(
    patient: &Patient,
    n: usize,
    device: &str,
) -> tonic::Request<api::CreateRecordRequest> {
    let request = api::CreateRecordRequest {
        request_id: uuid(),
        patient: by_nhs(&patient.nhs_number),
        purpose_of_use: "TREAT".into(),
        content: Some(through_content(patient, n)),
        ..Default::default()
    };
    authed(request, device)
}

async fn contribute(
    records_client: RecordHostingServiceClient<Channel>,
    access: DataAccessServiceClient<Channel>,
    patients: Arc<Vec<Patient>>,
    device: String,
    duration: Duration,
    meter: &CpuMeter,
    spans: Option<&SpanTimes>,
) -> (Phase, Phase) {
    let direct_call = {
        let (client, patients) = (records_client, patients.clone());
        move |i: usize| {
            let mut client = client.clone();
            let request = records::CreateRecordRequest {
                request_id: uuid(),
                record: Some(direct_record(&patients[i % patients.len()], i)),
                requester: Some(requester()),
            };
            async move { client.create_record(request).await.is_ok() }
        }
    };
    let through_call = {
        let (client, patients) = (access, patients.clone());
        move |i: usize| {
            let mut client = client.clone();
            let patient = &patients[i % patients.len()];
            let request = create_through(patient, i, &device);
            async move { client.create_record(request).await.is_ok() }
        }
    };
    load(CLIENTS, duration / 4, direct_call.clone()).await;
    load(CLIENTS, duration / 4, through_call.clone()).await;
    alternating(
        ROUNDS,
        CLIENTS,
        duration,
        meter,
        spans,
        ("contribute-direct", direct_call),
        ("contribute-through", through_call),
    )
    .await
}

/// An import: records per second, and the CPU it cost.
struct Imported {
    per_second: f64,
    cpu: Spent,
}

/// One CGM day for the cohort, imported directly and through data access (each measured as the
/// phase `import-direct` or `import-through`); and how many readings data access did not accept.
async fn import_day(
    records_client: RecordHostingServiceClient<Channel>,
    access: DataAccessServiceClient<Channel>,
    patients: &[Patient],
    device: &str,
    meter: &CpuMeter,
) -> (Imported, Imported, usize) {
    let readings: Vec<(usize, usize)> = (0..READINGS_PER_DAY)
        .flat_map(|n| (0..patients.len()).map(move |p| (p, n)))
        .collect();
    let total = readings.len();
    let direct_messages: Vec<records::ImportRecordsRequest> = readings
        .chunks(1000)
        .enumerate()
        .map(|(i, chunk)| records::ImportRecordsRequest {
            items: chunk
                .iter()
                .map(|&(p, n)| records::ImportItem {
                    request_id: uuid(),
                    record: Some(direct_record(&patients[p], n)),
                })
                .collect(),
            requester: (i == 0).then(requester),
            return_record_ids: false,
        })
        .collect();
    let through_messages: Vec<api::ImportRecordsRequest> = readings
        .chunks(1000)
        .enumerate()
        .map(|(i, chunk)| api::ImportRecordsRequest {
            purpose_of_use: if i == 0 {
                "TREAT".into()
            } else {
                String::new()
            },
            items: chunk
                .iter()
                .map(|&(p, n)| api::ImportItem {
                    request_id: uuid(),
                    patient: by_nhs(&patients[p].nhs_number),
                    content: Some(through_content(&patients[p], n + READINGS_PER_DAY)),
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let mut client = records_client;
    let before = meter.snapshot().await;
    perf::enter("import-direct");
    let started = Instant::now();
    let response = client
        .import_records(tokio_stream::iter(direct_messages))
        .await
        .expect("direct import")
        .into_inner();
    let per_second = total as f64 / started.elapsed().as_secs_f64();
    perf::leave("import-direct");
    let direct = Imported {
        per_second,
        cpu: meter.since(&before).await,
    };
    assert_eq!(
        response.accepted_count as usize, total,
        "direct import accepted every reading"
    );
    let mut access = access;
    let before = meter.snapshot().await;
    perf::enter("import-through");
    let started = Instant::now();
    let mut answers = access
        .import_records(authed(tokio_stream::iter(through_messages), device))
        .await
        .expect("import through data access")
        .into_inner();
    let mut accepted = 0;
    while let Some(answer) = answers.message().await.expect("an import answer") {
        accepted += answer
            .results
            .iter()
            .filter(|r| r.outcome == api::ImportOutcome::Accepted as i32)
            .count();
    }
    let per_second = total as f64 / started.elapsed().as_secs_f64();
    perf::leave("import-through");
    let through = Imported {
        per_second,
        cpu: meter.since(&before).await,
    };
    (direct, through, total - accepted)
}

/// Offers contributions at `rate` for `duration` while the subscribers follow; the latency from
/// each acknowledgement to its first delivery.
async fn notifications(
    platform: &Platform,
    patients: Arc<Vec<Patient>>,
    device: String,
    rate: f64,
    duration: Duration,
    meter: &CpuMeter,
    spans: Option<&SpanTimes>,
) -> (Phase, Stats, usize) {
    let acknowledged: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let delivered: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let care_team = token_at("A81001", "R8000", "user/*.rs", "care-team");
    let mut streams = Vec::new();
    for s in 0..SUBSCRIBERS {
        let mut client = DataAccessServiceClient::new(connect(&platform.access).await);
        let followed: Vec<api::PatientReference> = (0..FOLLOWED_EACH)
            .map(|k| {
                let patient = &patients[(s * FOLLOWED_EACH + k) % patients.len()];
                by_nhs(&patient.nhs_number).unwrap()
            })
            .collect();
        let request = api::FollowRecordChangesRequest {
            patients: followed,
            purpose_of_use: "TREAT".into(),
            start_at_head: true,
            ..Default::default()
        };
        let mut stream = client
            .follow_record_changes(authed(request, &care_team))
            .await
            .expect("follow")
            .into_inner();
        stream
            .message()
            .await
            .expect("first message")
            .expect("open");
        let delivered = delivered.clone();
        streams.push(tokio::spawn(async move {
            while let Ok(Some(message)) = stream.message().await {
                let now = Instant::now();
                let mut seen = delivered.lock().expect("lock");
                for n in message.notifications {
                    seen.push((n.record_id, now));
                }
            }
        }));
    }
    let access = DataAccessServiceClient::new(connect(&platform.access).await);
    let offered = {
        let acknowledged = acknowledged.clone();
        let offered = offer(rate, duration, move |i| {
            let mut client = access.clone();
            let patient = &patients[i % patients.len()];
            let request = create_through(patient, i, &device);
            let acknowledged = acknowledged.clone();
            async move {
                match client.create_record(request).await {
                    Ok(response) => {
                        let id = response.into_inner().record.unwrap_or_default().record_id;
                        acknowledged
                            .lock()
                            .expect("lock")
                            .insert(id, Instant::now());
                        true
                    }
                    Err(_) => false,
                }
            }
        });
        measured("notify-offered", meter, spans, offered).await
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    for stream in streams {
        stream.abort();
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let mut first: HashMap<String, Instant> = HashMap::new();
    for (id, at) in delivered.lock().expect("lock").iter() {
        first.entry(id.clone()).or_insert(*at);
    }
    let mut latency = Stats {
        elapsed: duration,
        ..Stats::default()
    };
    let mut missing = 0;
    for (id, acked) in &acknowledged {
        match first.get(id) {
            Some(at) => latency.latencies.push(at.saturating_duration_since(*acked)),
            None => missing += 1,
        }
    }
    (offered, latency, missing)
}

fn main() {
    let spans = SpanTimes::install_if_asked();
    let scale = carerecord_platform::testing::bench_scale();
    let pool = pool_size();
    let (backend, database_url) = database();
    let meter = CpuMeter::new(database_url.as_deref());
    let cohort = ((1000.0 * scale) as usize).max(SUBSCRIBERS);
    let (services, load_rt, platform) = start_platform(backend, pool);
    println!(
        "front_door: backend {backend:?}; services on 2 workers, load on 1; pools of {pool}; cohort {cohort}; scale {scale}; load average {}",
        load_average()
    );
    let patients = Arc::new(services.block_on(register_patients(&platform, cohort, |i| {
        ("Cgm".into(), format!("Wearer{i}"))
    })));
    services.block_on(platform.settle());
    let device = token_at("CGM01", "", "system/Observation.c", "cgm-platform");
    let duration = Duration::from_secs_f64(8.0 * scale);
    let spans = spans.as_ref();
    let (direct, through) = load_rt.block_on(async {
        contribute(
            RecordHostingServiceClient::new(connect(&platform.records).await),
            DataAccessServiceClient::new(connect(&platform.access).await),
            patients.clone(),
            device.clone(),
            duration,
            &meter,
            spans,
        )
        .await
    });
    let ratio = through.stats.per_second() / direct.stats.per_second();
    direct.print("contribute, CreateRecord on record hosting");
    through.print("contribute, CreateRecord through data access (by NHS number)");
    println!(
        "goal through/direct >= 0.70: {} ({ratio:.2})",
        if ratio >= 0.7 { "met" } else { "MISSED" }
    );

    let (direct_import, through_import, not_accepted) = load_rt.block_on(async {
        import_day(
            RecordHostingServiceClient::new(connect(&platform.records).await),
            DataAccessServiceClient::new(connect(&platform.access).await),
            &patients,
            &device,
            &meter,
        )
        .await
    });
    let readings = cohort * READINGS_PER_DAY;
    let import_ratio = through_import.per_second / direct_import.per_second;
    println!(
        "import of a CGM day ({readings} readings): record hosting {:.0} records/s, through data access {:.0} records/s ({not_accepted} not accepted)",
        direct_import.per_second, through_import.per_second
    );
    println!(
        "  record hosting's import: {}",
        direct_import.cpu.per_call(readings)
    );
    println!(
        "  through data access: {}",
        through_import.cpu.per_call(readings)
    );
    println!(
        "goal import through/direct >= 0.70: {} ({import_ratio:.2})",
        if import_ratio >= 0.7 { "met" } else { "MISSED" }
    );

    let (offered, latency, missing) = load_rt.block_on(notifications(
        &platform,
        patients.clone(),
        device,
        OFFERED_PER_SECOND,
        duration,
        &meter,
        spans,
    ));
    offered.print(&format!(
        "contributions offered at {OFFERED_PER_SECOND:.0}/s (open loop, latency from the scheduled start)"
    ));
    println!(
        "notification latency, acknowledgement to delivery, {SUBSCRIBERS} subscribers: {} ({missing} acknowledged changes never delivered)",
        latency.line()
    );
    println!(
        "goal notification p99 < 1 s: {} ({:.2?})",
        if latency.p99() < Duration::from_secs(1) && missing == 0 {
            "met"
        } else {
            "MISSED"
        },
        latency.p99()
    );
    println!("load average at the end: {}", load_average());
    let clean = direct.stats.errors == 0 && through.stats.errors == 0 && offered.stats.errors == 0;
    if !clean {
        println!("WARNING: some calls failed; the figures are not valid");
    }
    drop(platform);
    drop(load_rt);
    drop(services);
}
