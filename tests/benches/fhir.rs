//! The FHIR gateway against its goals (issue 19), with the four real services and the gateway
//! in-process on real listeners:
//!
//! - read: a page of a patient's Observations as FHIR JSON (`GET /Observation?patient=<id>`, 64
//!   clients each on its own HTTP/1.1 connection) against the same read through the front door over
//!   gRPC (ReadPatientRecord for Observations, 64 clients on one channel), in alternating rounds of
//!   the same run. Goal: the gateway at least 0.8 of the gRPC read.
//! - export: a Bulk Data `$export` of 100,000 records (1,000 patients with 100 Observations each)
//!   driven to completion and its files downloaded, twice, the process's resident memory sampled
//!   every 100 ms; beside it, the same extract straight from data access over gRPC. Goal: flat (the
//!   extract streams to disk and files stream from disk): the second export grows RSS by less than
//!   32 MiB, whatever the first one left the allocator holding.
//!
//! Runtimes: the services and the gateway share a 2-worker runtime; the load generator has its own
//! 1-worker runtime. Pools: `CARERECORD_BENCH_POOL` (default 16). `CARERECORD_BENCH_SCALE`
//! (default 1.0) scales the durations and the number of records exported (at least 10,000). The
//! database is `TEST_DATABASE_URL` (PostgreSQL, as `make bench` sets it), else SQLite.

use std::sync::Arc;
use std::time::{Duration, Instant};

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::records::v1 as records;
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_e2e::{Fhir, FhirConnection, PROJECT, Platform, authed, by_id, token, uuid};
use common::{
    Stats, connect, database, load, load_average, loader, pool_size, register_patients,
    start_platform,
};
use http::{Method, StatusCode};
use tokio::sync::Mutex;

mod common;

const CLIENTS: usize = 64;
const ROUNDS: u32 = 5;
const RECORDS_PER_PATIENT: usize = 100;
/// Patients whose Observations the read measurement reads.
const READ_PATIENTS: usize = 200;
/// The page read: every path returns this many Observations per call.
const PAGE: i32 = 50;

fn observation(patient_id: &str, n: usize) -> Vec<u8> {
    serde_json::json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": format!("2025-{:02}-{:02}T{:02}:{:02}:00Z", 1 + n % 12, 1 + n % 28, n % 24, n % 60),
        "valueQuantity": {"value": 60 + n % 40, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    })
    .to_string()
    .into_bytes()
}

/// Registers `patients` patients with `RECORDS_PER_PATIENT` Observations each (imported into
/// record hosting in messages of 1,000) and records their opt-out status as checked.
async fn load_data(platform: &Platform, patients: usize) -> Vec<String> {
    let ids: Vec<String> =
        register_patients(platform, patients, |i| (format!("Bench{i}"), "Fhir".into()))
            .await
            .into_iter()
            .map(|p| p.id)
            .collect();
    let items: Vec<records::ImportItem> = ids
        .iter()
        .flat_map(|id| {
            (0..RECORDS_PER_PATIENT).map(move |n| records::ImportItem {
                request_id: uuid(),
                record: Some(records::Record {
                    patient_id: id.clone(),
                    resource_type: "Observation".into(),
                    content_type: "application/fhir+json".into(),
                    payload: observation(id, n),
                    authoring_organisation_ods_code: "RR8".into(),
                    source_system: "bench".into(),
                    ..Default::default()
                }),
            })
        })
        .collect();
    let total = items.len();
    let messages: Vec<records::ImportRecordsRequest> = items
        .chunks(1000)
        .enumerate()
        .map(|(i, chunk)| records::ImportRecordsRequest {
            items: chunk.to_vec(),
            requester: (i == 0).then(loader),
            return_record_ids: false,
        })
        .collect();
    let imported = RecordHostingServiceClient::new(connect(&platform.records).await)
        .max_encoding_message_size(64 << 20)
        .import_records(tokio_stream::iter(messages))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(
        imported.accepted_count as usize, total,
        "every record imported"
    );
    for chunk in ids.chunks(10_000) {
        platform.record_opt_out_check(chunk, chunk).await;
    }
    ids
}

/// The read through the front door over gRPC: one page of Observations.
async fn grpc_read(
    client: &DataAccessServiceClient<tonic::transport::Channel>,
    patient: &str,
    token: &str,
) -> bool {
    let request = api::ReadPatientRecordRequest {
        patient: by_id(patient),
        purpose_of_use: "TREAT".into(),
        resource_types: vec!["Observation".into()],
        page_size: PAGE,
        ..Default::default()
    };
    match client
        .clone()
        .read_patient_record(authed(request, token))
        .await
    {
        Ok(page) => page.into_inner().records.len() == PAGE as usize,
        Err(_) => false,
    }
}

/// The same read through the gateway, on this client's own connection.
async fn fhir_read(connection: &Mutex<FhirConnection>, patient: &str) -> bool {
    let reply = connection
        .lock()
        .await
        .send(
            Method::GET,
            &format!("/Observation?patient={patient}&_count={PAGE}"),
            &[],
            None,
        )
        .await;
    reply.status == StatusCode::OK && reply.body.len() > 1000
}

/// The process's resident set size in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Samples the process's RSS every 100 ms while `work` runs.
async fn sampled<T>(work: impl std::future::Future<Output = T>) -> (T, Vec<f64>) {
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = vec![rss_mib()];
            while !stop.is_cancelled() {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_millis(100)) => samples.push(rss_mib()),
                }
            }
            samples.push(rss_mib());
            samples
        })
    };
    let result = work.await;
    stop.cancel();
    (result, sampler.await.expect("the sampler"))
}

/// The same extract the export runs, straight from data access over gRPC, rows dropped as they
/// come: the baseline of what data access and record hosting hold while extracting.
async fn direct_extract(platform: &Platform, token: &str) -> u64 {
    let request = api::ExtractPseudonymisedRequest {
        project_id: PROJECT.into(),
        purpose_of_use: "HRESCH".into(),
        legal_basis: api::LegalBasis::Section251Support as i32,
        cohort: Some(api::Cohort {
            selection: Some(api::cohort::Selection::Filter(api::CohortFilter {
                resource_types: vec!["Observation".into()],
                effective_period: None,
            })),
        }),
        resource_types: vec!["Observation".into()],
        ..Default::default()
    };
    let mut stream = DataAccessServiceClient::new(connect(&platform.access).await)
        .max_decoding_message_size(64 << 20)
        .extract_pseudonymised(authed(request, token))
        .await
        .expect("extract")
        .into_inner();
    let mut rows = 0;
    while let Some(message) = stream.message().await.expect("extract stream") {
        if let Some(api::extract_pseudonymised_response::Item::Row(_)) = message.item {
            rows += 1;
        }
    }
    rows
}

/// Runs one export through the gateway to completion and downloads its files; returns the rows.
async fn export(fhir: &Fhir) -> u64 {
    let status_url = fhir.export_observations().await;
    let manifest = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = fhir.get(&status_url).await;
        match status.status {
            StatusCode::ACCEPTED => {}
            StatusCode::OK => break status.json(),
            other => panic!("export failed: {other} {}", status.text()),
        }
    };
    let mut rows = 0;
    let mut connection = FhirConnection::open(fhir).await;
    for output in manifest["output"].as_array().expect("output") {
        // Counted as it streams, so the load generator holds none of the file either.
        let (status, lines) = connection
            .count_lines(output["url"].as_str().expect("url"))
            .await;
        assert_eq!(status, StatusCode::OK);
        rows += lines;
    }
    let cancelled = fhir.send(Method::DELETE, &status_url, &[], None).await;
    assert_eq!(cancelled.status, StatusCode::ACCEPTED);
    rows
}

fn series(samples: &[f64]) -> String {
    samples
        .iter()
        .map(|s| format!("{s:.0}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn growth(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(0.0, f64::max) - samples[0]
}

fn main() {
    let scale = carerecord_platform::testing::bench_scale();
    let pool = pool_size();
    let (backend, _) = database();
    let exported_records = ((100_000.0 * scale) as usize).clamp(10_000, 100_000);
    let patients = exported_records / RECORDS_PER_PATIENT;
    let (services, load_rt, platform) = start_platform(backend, pool);
    println!(
        "fhir: backend {backend:?}; four services and the gateway on 2 workers, load on 1 worker; pools of {pool}; \
         {patients} patients x {RECORDS_PER_PATIENT} Observations; {CLIENTS} clients; scale {scale}; load average {}",
        load_average()
    );
    let started = Instant::now();
    let ids = Arc::new(services.block_on(load_data(&platform, patients)));
    println!(
        "loaded {} records in {:.1?}",
        ids.len() * RECORDS_PER_PATIENT,
        started.elapsed()
    );
    services.block_on(platform.settle());

    let duration = Duration::from_secs_f64(10.0 * scale);
    let clinician = token("R8000", "user/*.rs");
    let fhir = platform.fhir().with_token(&clinician);
    let (grpc, gateway) = load_rt.block_on(async {
        let access = DataAccessServiceClient::new(connect(&platform.access).await);
        let mut connections = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            connections.push(Mutex::new(FhirConnection::open(&fhir).await));
        }
        let connections = Arc::new(connections);
        let read_ids = Arc::new(ids[..READ_PATIENTS.min(ids.len())].to_vec());
        let grpc_call = {
            let (access, ids, clinician) = (access.clone(), read_ids.clone(), clinician.clone());
            move |i: usize| {
                let (access, ids, clinician) = (access.clone(), ids.clone(), clinician.clone());
                async move { grpc_read(&access, &ids[i % ids.len()], &clinician).await }
            }
        };
        let fhir_call = {
            let (connections, ids) = (connections.clone(), read_ids.clone());
            move |i: usize| {
                let (connections, ids) = (connections.clone(), ids.clone());
                // `load` gives client c the calls c, c + CLIENTS, ...: its own connection.
                async move { fhir_read(&connections[i % CLIENTS], &ids[i % ids.len()]).await }
            }
        };
        load(CLIENTS, duration / 5, grpc_call.clone()).await;
        load(CLIENTS, duration / 5, fhir_call.clone()).await;
        let (mut grpc, mut gateway) = (Stats::default(), Stats::default());
        for _ in 0..ROUNDS {
            grpc.merge(load(CLIENTS, duration / ROUNDS, grpc_call.clone()).await);
            gateway.merge(load(CLIENTS, duration / ROUNDS, fhir_call.clone()).await);
        }
        (grpc, gateway)
    });
    let ratio = gateway.per_second() / grpc.per_second();
    println!(
        "read {PAGE} Observations, gRPC through data access: {}",
        grpc.line()
    );
    println!(
        "read {PAGE} Observations, FHIR gateway:             {}",
        gateway.line()
    );
    println!(
        "goal gateway/gRPC >= 0.80 at {CLIENTS} clients: {} ({ratio:.2}); load average {}",
        if ratio >= 0.8 { "met" } else { "MISSED" },
        load_average()
    );

    let research_token = token("R8000", "system/*.rs");
    let researcher = platform.fhir().with_token(&research_token);
    let started = Instant::now();
    let (direct_rows, direct_samples) =
        load_rt.block_on(sampled(direct_extract(&platform, &research_token)));
    println!(
        "baseline: the extract straight from data access over gRPC, {direct_rows} rows in {:.1?}; RSS MiB every 100 ms: {}",
        started.elapsed(),
        series(&direct_samples)
    );
    let mut rows = 0;
    let mut growths = Vec::new();
    for run in 1..=2 {
        let started = Instant::now();
        let (exported, samples) = load_rt.block_on(sampled(export(&researcher)));
        let took = started.elapsed();
        rows = exported;
        growths.push(growth(&samples));
        println!(
            "export {run} of {exported} records through the gateway, files downloaded, in {took:.1?} ({:.0} records/s); RSS MiB every 100 ms: {}",
            exported as f64 / took.as_secs_f64(),
            series(&samples)
        );
    }
    println!(
        "goal memory flat during the export: {} (RSS growth: baseline extract +{:.0} MiB; exports +{:.0} and +{:.0} MiB); load average {}",
        if growths[1] < 32.0 { "met" } else { "MISSED" },
        growth(&direct_samples),
        growths[0],
        growths[1],
        load_average()
    );
    if grpc.errors > 0 || gateway.errors > 0 || rows != exported_records as u64 {
        println!(
            "WARNING: some calls failed or the export is incomplete ({rows} of {exported_records}); the figures are not valid"
        );
    }
    drop(platform);
    drop(load_rt);
    drop(services);
}
