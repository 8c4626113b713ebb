//! Reading a patient's record through data access with all four real services on this machine.
//!
//! The sandbox starts identity, record hosting, consent and data access in-process, each on its
//! own listener and database, talking gRPC to each other as when deployed apart. 200 patients with
//! 20 records each are loaded (every tenth patient withholds mental-health data, which two of
//! their records carry). Then 64 concurrent clients, for a fixed time each:
//!
//! - direct: ListRecords on record hosting for a random patient (the baseline);
//! - through: ReadPatientRecord on data access by NHS number for the same patients (token check,
//!   identity resolution, consent decision, records, withholding, one audit append).
//!
//! The two alternate in five rounds each, so other work on the machine weighs on both alike.
//! Goals (issue 21): through throughput at least 0.6 of direct at 64 clients; and, offered 1,000
//! reads/s through data access open loop (latency from each call's scheduled start, so queueing
//! behind slow calls counts), p99 under 20 ms and p99.9 under 50 ms.
//! Then both paths at 4 clients (latency when not saturated), and the hops alone (identity
//! resolution, consent decision, FindPatient through data access), to show where the time goes.
//! Every phase also reports the CPU a call cost, split between the services, PostgreSQL and the
//! load generator (`common/cpu.rs`): throughput moves with whatever else the machine runs, CPU per
//! call much less. `CARERECORD_BENCH_SPANS=1` adds each hop's mean wall time (`common/spans.rs`).
//!
//! Runtimes: the four services share a 2-worker runtime; the load generator has its own 1-worker
//! runtime. Each service's pool has `CARERECORD_BENCH_POOL` connections (default 16, the services'
//! default; the test sandbox's 4 is for tests running in parallel). `CARERECORD_BENCH_SCALE`
//! (default 1.0) scales the durations. The database is `TEST_DATABASE_URL` (PostgreSQL, as
//! `make bench` sets it), else SQLite.

use std::sync::Arc;
use std::time::{Duration, Instant};

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::common::v1::{Identifier, Requester};
use carerecord_contracts::consent::v1 as consent;
use carerecord_contracts::consent::v1::consent_service_client::ConsentServiceClient;
use carerecord_contracts::identity::v1 as identity_api;
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::records::v1 as records;
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_e2e::{Platform, authed, by_nhs, token, uuid};
use common::cpu::CpuMeter;
use common::spans::SpanTimes;
use common::{
    LOADERS, Patient, Phase, Stats, alternating, connect, database, load, load_average, loader,
    measured, offer, pool_size, register_patients, start_platform,
};
use futures::StreamExt;
use tonic::transport::Channel;

mod common;

const CLIENTS: usize = 64;
const PATIENTS: usize = 200;
const RECORDS_PER_PATIENT: usize = 20;
/// Alternating rounds of each path in the measured time.
const ROUNDS: u32 = 5;
/// Clients of the unsaturated latency measurement.
const FEW_CLIENTS: usize = 4;
/// The open-loop rate offered through data access.
const OFFERED_PER_SECOND: f64 = 1000.0;

/// Registers the patients, their records and the withholding directives.
async fn load_data(platform: &Platform) -> Vec<Patient> {
    let patients = register_patients(platform, PATIENTS, |i| {
        (format!("Bench{i}"), "Patient".into())
    })
    .await;
    let records = patients.iter().flat_map(|p| {
        (0..RECORDS_PER_PATIENT).map(move |r| {
            let classes: &'static [&'static str] =
                if r % 10 == 0 { &["mental-health"] } else { &[] };
            (p.id.as_str(), classes)
        })
    });
    futures::stream::iter(records)
        .for_each_concurrent(LOADERS, |(id, classes)| async move {
            platform.add_record(id, classes).await;
        })
        .await;
    let mut consent_client = platform.consent_client().await;
    for patient in patients.iter().step_by(10) {
        let directive = consent::ConsentDirective {
            patient_id: patient.id.clone(),
            status: consent::ConsentDirectiveStatus::Active as i32,
            decision: consent::ConsentDecision::Permit as i32,
            provisions: vec![consent::Provision {
                data_classes: vec!["mental-health".into()],
                ..Default::default()
            }],
            date_time: Some(std::time::SystemTime::now().into()),
            ..Default::default()
        };
        consent_client
            .create_consent_directive(consent::CreateConsentDirectiveRequest {
                request_id: uuid(),
                directive: Some(directive),
                requester: Some(loader()),
            })
            .await
            .expect("record a directive");
    }
    patients
}

fn direct_read(
    client: &RecordHostingServiceClient<Channel>,
    patients: &Arc<Vec<Patient>>,
    i: usize,
) -> impl std::future::Future<Output = bool> + Send + use<> {
    let mut client = client.clone();
    let request = records::ListRecordsRequest {
        patient_id: patients[i % patients.len()].id.clone(),
        order: records::RecordOrder::EffectiveTimeDescending as i32,
        ..Default::default()
    };
    async move {
        client
            .list_records(request)
            .await
            .is_ok_and(|r| r.into_inner().records.len() == RECORDS_PER_PATIENT)
    }
}

fn read_through(
    client: &DataAccessServiceClient<Channel>,
    patients: &Arc<Vec<Patient>>,
    clinician: &str,
    i: usize,
) -> impl std::future::Future<Output = bool> + Send + use<> {
    let mut client = client.clone();
    let request = api::ReadPatientRecordRequest {
        patient: by_nhs(&patients[i % patients.len()].nhs_number),
        purpose_of_use: "TREAT".into(),
        ..Default::default()
    };
    let request = authed(request, clinician);
    async move {
        client.read_patient_record(request).await.is_ok_and(|r| {
            let summary = r.into_inner().disclosure.unwrap_or_default();
            summary.returned_count + summary.withheld_count == RECORDS_PER_PATIENT as i64
        })
    }
}

/// The hops of a read through data access, each alone at the same concurrency: where the time goes.
async fn breakdown(
    platform: &Platform,
    patients: &Arc<Vec<Patient>>,
    clinician: &str,
    duration: Duration,
    meter: &CpuMeter,
    spans: Option<&SpanTimes>,
) -> Vec<(&'static str, Phase)> {
    let identity = PatientIdentityServiceClient::new(connect(&platform.identity).await);
    let consent_client = ConsentServiceClient::new(connect(&platform.consent).await);
    let access = DataAccessServiceClient::new(connect(&platform.access).await);
    let resolve = {
        let patients = patients.clone();
        measured(
            "resolve",
            meter,
            spans,
            load(CLIENTS, duration, move |i| {
                let mut client = identity.clone();
                let request = identity_api::ResolveIdentifierRequest {
                    identifier: Some(Identifier {
                        system: "https://fhir.nhs.uk/Id/nhs-number".into(),
                        value: patients[i % patients.len()].nhs_number.clone(),
                    }),
                };
                async move { client.resolve_identifier(request).await.is_ok() }
            }),
        )
        .await
    };
    let decide = {
        let patients = patients.clone();
        measured(
            "decide",
            meter,
            spans,
            load(CLIENTS, duration, move |i| {
                let mut client = consent_client.clone();
                let request = consent::DecideRequest {
                    patient_id: patients[i % patients.len()].id.clone(),
                    requester: Some(Requester {
                        user_id: "e2e-user-R8000".into(),
                        organisation_ods_code: "RR8".into(),
                        role_code: "R8000".into(),
                        display_name: String::new(),
                    }),
                    purpose_of_use: "TREAT".into(),
                    ..Default::default()
                };
                async move { client.decide(request).await.is_ok() }
            }),
        )
        .await
    };
    let find = {
        let (patients, clinician) = (patients.clone(), clinician.to_owned());
        measured(
            "find",
            meter,
            spans,
            load(CLIENTS, duration, move |i| {
                let mut client = access.clone();
                let request = api::FindPatientRequest {
                    patient: by_nhs(&patients[i % patients.len()].nhs_number),
                    purpose_of_use: "TREAT".into(),
                };
                let request = authed(request, &clinician);
                async move { client.find_patient(request).await.is_ok() }
            }),
        )
        .await
    };
    vec![
        ("identity ResolveIdentifier, direct", resolve),
        ("consent Decide, direct", decide),
        (
            "FindPatient through data access (token, identity, audit)",
            find,
        ),
    ]
}

fn main() {
    let spans = SpanTimes::install_if_asked();
    let scale = carerecord_platform::testing::bench_scale();
    let pool = pool_size();
    let (backend, database_url) = database();
    let meter = CpuMeter::new(database_url.as_deref());
    let (services, load_rt, platform) = start_platform(backend, pool);
    println!(
        "read_four_services: backend {backend:?}; four services on 2 workers, load on 1 worker; \
         pools of {pool}; {PATIENTS} patients x {RECORDS_PER_PATIENT} records; {CLIENTS} clients; scale {scale}; \
         load average {}",
        load_average()
    );
    let started = Instant::now();
    let patients = Arc::new(services.block_on(load_data(&platform)));
    println!(
        "loaded {} records in {:.1?}",
        PATIENTS * RECORDS_PER_PATIENT,
        started.elapsed()
    );
    // Measured in the steady state autovacuum reaches within a minute: right after a load, stale
    // statistics let PostgreSQL scan whole tables.
    services.block_on(platform.settle());

    let duration = Duration::from_secs_f64(5.0 * scale);
    let warm_up = Duration::from_secs_f64(1.0 * scale);
    let clinician = token("R8000", "user/*.rs");
    let spans = spans.as_ref();
    let (direct, through, offered, direct_few, through_few) = load_rt.block_on(async {
        let records_client = RecordHostingServiceClient::new(connect(&platform.records).await);
        let access_client = DataAccessServiceClient::new(connect(&platform.access).await);
        let direct_call = {
            let (client, patients) = (records_client.clone(), patients.clone());
            move |i| direct_read(&client, &patients, i)
        };
        let through_call = {
            let (client, patients, clinician) =
                (access_client.clone(), patients.clone(), clinician.clone());
            move |i| read_through(&client, &patients, &clinician, i)
        };
        // Warm both paths (connections, pools, caches) before measuring either.
        load(CLIENTS, warm_up, direct_call.clone()).await;
        load(CLIENTS, warm_up, through_call.clone()).await;
        // What the services and their databases spend with no calls at all (pollers, timers).
        let idle = measured("idle", &meter, None, async {
            tokio::time::sleep(duration / 2).await;
            Stats::default()
        })
        .await;
        println!(
            "idle for {:.1?}: {}",
            duration / 2,
            idle.cpu.per_second(duration / 2)
        );
        let (direct, through) = alternating(
            ROUNDS,
            CLIENTS,
            duration,
            &meter,
            spans,
            ("direct", direct_call.clone()),
            ("through", through_call.clone()),
        )
        .await;
        // Open loop: the latency users feel at a fixed offered rate.
        let offered = measured(
            "offered",
            &meter,
            spans,
            offer(OFFERED_PER_SECOND, duration, through_call.clone()),
        )
        .await;
        // Unsaturated: the latency a few clients see.
        let (direct_few, through_few) = alternating(
            1,
            FEW_CLIENTS,
            duration / 2,
            &meter,
            spans,
            ("direct-few", direct_call),
            ("through-few", through_call),
        )
        .await;
        (direct, through, offered, direct_few, through_few)
    });
    let hops = load_rt.block_on(breakdown(
        &platform, &patients, &clinician, duration, &meter, spans,
    ));
    let ratio = through.stats.per_second() / direct.stats.per_second();
    let ratio_met = ratio >= 0.6;
    let (p99, p999) = (offered.stats.p99(), offered.stats.quantile(0.999));
    let open_met = p99 < Duration::from_millis(20) && p999 < Duration::from_millis(50);
    let clean = direct.stats.errors == 0 && through.stats.errors == 0 && offered.stats.errors == 0;
    direct.print("read, direct from record hosting");
    through.print("read through data access (token, identity, consent, records, audit)");
    println!(
        "goal throughput through/direct >= 0.60 at {CLIENTS} clients: {} ({ratio:.2})",
        if ratio_met { "met" } else { "MISSED" }
    );
    offered.print(&format!(
        "read through data access offered at {OFFERED_PER_SECOND:.0}/s (open loop, latency from the scheduled start)"
    ));
    println!(
        "goal open loop p99 < 20 ms and p99.9 < 50 ms: {} (p99 {p99:.2?}, p99.9 {p999:.2?})",
        if open_met { "met" } else { "MISSED" },
    );
    direct_few.print(&format!("{FEW_CLIENTS} clients, direct"));
    through_few.print(&format!("{FEW_CLIENTS} clients, through data access"));
    println!("where the time goes, each hop alone at {CLIENTS} clients:");
    for (name, phase) in &hops {
        phase.print(&format!("  {name}"));
    }
    println!("load average at the end: {}", load_average());
    if !clean {
        println!(
            "WARNING: some calls failed or returned the wrong records; the figures are not valid"
        );
    }
    drop(platform);
    drop(load_rt);
    drop(services);
}
