//! Record hosting against PostgreSQL, each figure beside a baseline measured in the same run.
//!
//! - CreateRecord vs a bare tonic handler doing one raw sqlx INSERT of the same row (same pool,
//!   same table shape and indexes, same durability), 64 concurrent clients.
//! - GetRecord vs a bare handler doing one SELECT of the same row: throughput and p99.
//! - ImportRecords records/s, ExportRecords records/s with the process RSS before, during, after.
//!
//! Runtimes are sized for 2 cores shared with PostgreSQL: the server runs on a 1-worker runtime,
//! the load generator on a current-thread runtime. `CARERECORD_BENCH_SCALE` (default 1.0) scales
//! durations and volumes (0.1 for a quick look). Needs TEST_DATABASE_URL (PostgreSQL).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use carerecord_contracts::common::v1::{Period, Requester};
use carerecord_contracts::records::v1::export_records_request::Scope;
use carerecord_contracts::records::v1::record_hosting_service_server::RecordHostingService;
use carerecord_contracts::records::v1::{
    CreateRecordRequest, CreateRecordResponse, ExportRecordsRequest, GetRecordRequest,
    GetRecordResponse, ImportItem, ImportRecordsRequest, ListRecordsRequest, ListRecordsResponse,
    Record,
};
use carerecord_platform::db::{Database, DatabaseConfig, now_micros};
use carerecord_platform::env::Env;
use carerecord_records::RecordsConfig;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use common::CONNECTIONS;
use tonic::{Request, Response, Status};

const CLIENTS: usize = 64;

fn payload(patient_id: &str) -> Vec<u8> {
    format!(
        r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}}]}}],"code":{{"coding":[{{"system":"http://snomed.info/sct","code":"434912009","display":"Blood glucose concentration"}}]}},"subject":{{"reference":"Patient/{patient_id}"}},"effectiveDateTime":"2026-11-21T06:00:00Z","valueQuantity":{{"value":5.4,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}},"device":{{"display":"CGM sensor"}}}}"#
    )
    .into_bytes()
}

fn record(patient_id: &str) -> Record {
    Record {
        patient_id: patient_id.to_owned(),
        resource_type: "Observation".into(),
        content_type: "application/fhir+json".into(),
        payload: payload(patient_id),
        authoring_organisation_ods_code: "RR8".into(),
        source_system: "cgm-feed".into(),
        data_classes: vec![],
        ..Default::default()
    }
}

fn requester() -> Requester {
    Requester {
        user_id: "cgm-feed".into(),
        organisation_ods_code: "RR8".into(),
        role_code: String::new(),
        display_name: String::new(),
    }
}

/// The baseline: a handler doing one raw INSERT (create) or one SELECT (get), nothing else.
#[derive(Clone)]
struct Bare {
    db: Database,
    seq: Arc<AtomicI64>,
}

#[tonic::async_trait]
impl RecordHostingService for Bare {
    /// An echo without the database: the ceiling of the transport on this machine.
    async fn list_records(
        &self,
        _: Request<ListRecordsRequest>,
    ) -> Result<Response<ListRecordsResponse>, Status> {
        Ok(Response::new(ListRecordsResponse::default()))
    }

    async fn create_record(
        &self,
        request: Request<CreateRecordRequest>,
    ) -> Result<Response<CreateRecordResponse>, Status> {
        let r = request.into_inner().record.unwrap_or_default();
        let record_id = uuid::Uuid::now_v7().to_string();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let now = now_micros();
        sqlx::query(
            "INSERT INTO bare_versions (record_id, version, seq, creation_seq, change_type, patient_id, resource_type, status, \
             retraction_reason, content_type, payload, content_hash, payload_size, data_classes, authoring_org, author, \
             source_system, effective_time, recorded_time, create_time, update_time, requester_user_id, requester_org, \
             requester_role, requester_display) VALUES ($1, 1, $2, $2, 1, $3, $4, 1, '', $5, $6, '', $7, '', $8, $9, $10, NULL, $11, $11, $11, $12, $13, $14, $15)",
        )
        .bind(record_id.as_str())
        .bind(seq)
        .bind(r.patient_id.as_str())
        .bind(r.resource_type.as_str())
        .bind(r.content_type.as_str())
        .bind(r.payload.as_slice())
        .bind(r.payload.len() as i64)
        .bind(r.authoring_organisation_ods_code.as_str())
        .bind(r.author.as_str())
        .bind(r.source_system.as_str())
        .bind(now)
        .bind("cgm-feed")
        .bind("RR8")
        .bind("")
        .bind("")
        .execute(&self.db.pool)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(CreateRecordResponse {
            record: Some(Record { record_id, ..r }),
        }))
    }

    async fn get_record(
        &self,
        request: Request<GetRecordRequest>,
    ) -> Result<Response<GetRecordResponse>, Status> {
        let row = sqlx::query("SELECT record_id, patient_id, resource_type, payload, version FROM bare_versions WHERE record_id = $1 AND version = 1")
            .bind(request.into_inner().record_id)
            .fetch_optional(&self.db.pool)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(|| Status::not_found("no record"))?;
        let record = Record {
            record_id: row.get("record_id"),
            patient_id: row.get("patient_id"),
            resource_type: row.get("resource_type"),
            payload: row.get("payload"),
            version: row.get("version"),
            ..Default::default()
        };
        Ok(Response::new(GetRecordResponse {
            record: Some(record),
        }))
    }
}

struct Load {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

/// Runs `call` from CLIENTS concurrent tasks for `duration`.
async fn load<F, Fut>(clients: &[common::Client], duration: Duration, call: F) -> Load
where
    F: Fn(common::Client, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), Status>> + Send,
{
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let client = clients[i % clients.len()].clone();
            let call = call.clone();
            let errors = errors.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                while start.elapsed() < duration {
                    let t = Instant::now();
                    if call(client.clone(), i * 1_000_000 + n).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.push(t.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Load {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

fn print(name: &str, load: &Load) {
    println!(
        "  {name:<34} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   errors {}",
        load.per_second,
        load.p50.as_secs_f64() * 1e3,
        load.p99.as_secs_f64() * 1e3,
        load.errors
    );
}

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1 << 20) as f64
}

fn main() {
    if !common::have_postgres("records") {
        return;
    }
    let scale = carerecord_platform::testing::bench_scale();
    let phase = Duration::from_secs_f64(5.0 * scale);
    let (server, generator) = common::runtimes();
    println!(
        "records bench: PostgreSQL, 2 cores; server runtime 1 worker, load generator current-thread, {CLIENTS} clients over {CONNECTIONS} connections; phases of {:.1} s (CARERECORD_BENCH_SCALE={scale})",
        phase.as_secs_f64()
    );

    let shutdown = CancellationToken::new();
    let (db, real_addr, bare_addr) = server.block_on(async {
        let (db, real) = common::service(&shutdown).await;
        sqlx::query("CREATE TABLE bare_versions (LIKE record_versions INCLUDING ALL)")
            .execute(&db.pool)
            .await
            .unwrap();
        let bare = Bare {
            db: db.clone(),
            seq: Arc::new(AtomicI64::new(1)),
        };
        let real_addr = common::serve(real, shutdown.clone()).await;
        let bare_addr = common::serve(bare, shutdown.clone()).await;
        (db, real_addr, bare_addr)
    });
    println!(
        "  database pool: {} connections (CARERECORD_DB_MAX_CONNECTIONS default)",
        DatabaseConfig::DEFAULT_MAX_CONNECTIONS
    );
    // The pool alone, on the server runtime: 64 tasks selecting by key, no gRPC.
    let pool_tasks: Vec<_> = {
        let start = Instant::now();
        (0..CLIENTS)
            .map(|_| {
                let pool = db.pool.clone();
                server.spawn(async move {
                    let mut n = 0u64;
                    while start.elapsed() < Duration::from_secs(1) {
                        let _: Option<String> = sqlx::query_scalar(
                            "SELECT record_id FROM record_versions WHERE record_id = $1",
                        )
                        .bind("nope")
                        .fetch_optional(&pool)
                        .await
                        .unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect()
    };
    generator.block_on(async {
        let mut total = 0;
        for task in pool_tasks {
            total += task.await.unwrap();
        }
        println!("  sqlx pool alone, SELECT by key from {CLIENTS} tasks, 1 s: {total} queries");
    });
    generator.block_on(async {
        let real = common::clients(real_addr).await;
        let bare = common::clients(bare_addr).await;
        let patients: Arc<Vec<String>> = Arc::new((0..1000).map(|_| uuid::Uuid::new_v4().to_string()).collect());

        let create = |patients: Arc<Vec<String>>| {
            move |mut client: common::Client, n: usize| {
                let patients = patients.clone();
                async move {
                    let record = record(&patients[n % patients.len()]);
                    let request = CreateRecordRequest { request_id: uuid::Uuid::new_v4().to_string(), record: Some(record), requester: Some(requester()) };
                    client.create_record(request).await.map(|_| ())
                }
            }
        };
        // Warm-up of both paths (connections, prepared statements).
        load(&bare, phase / 5, create(patients.clone())).await;
        load(&real, phase / 5, create(patients.clone())).await;

        let echo = |mut client: common::Client, _: usize| async move {
            client.list_records(ListRecordsRequest::default()).await.map(|_| ())
        };
        load(&bare, phase / 5, echo).await;
        print("tonic echo, no database", &load(&bare, phase, echo).await);
        println!("create, {CLIENTS} concurrent clients:");
        let bare_create = load(&bare, phase, create(patients.clone())).await;
        print("bare INSERT handler (baseline)", &bare_create);
        let real_create = load(&real, phase, create(patients.clone())).await;
        print("CreateRecord", &real_create);
        println!("  ratio CreateRecord / bare insert: {:.2} (target >= 0.7)", real_create.per_second / bare_create.per_second);

        let real_ids: Arc<Vec<String>> = Arc::new(
            sqlx::query_scalar("SELECT record_id FROM record_versions ORDER BY seq DESC LIMIT 20000").fetch_all(&db.pool).await.unwrap(),
        );
        let bare_ids: Arc<Vec<String>> = Arc::new(
            sqlx::query_scalar("SELECT record_id FROM bare_versions ORDER BY seq DESC LIMIT 20000").fetch_all(&db.pool).await.unwrap(),
        );
        let get = |ids: Arc<Vec<String>>| {
            move |mut client: common::Client, n: usize| {
                let record_id = ids[(n * 7919) % ids.len()].clone();
                async move { client.get_record(GetRecordRequest { record_id, version: 0, view: 0 }).await.map(|_| ()) }
            }
        };
        println!("get by id, {CLIENTS} concurrent clients:");
        load(&bare, phase / 5, get(bare_ids.clone())).await;
        load(&real, phase / 5, get(real_ids.clone())).await;
        let bare_get = load(&bare, phase, get(bare_ids)).await;
        print("bare SELECT handler (baseline)", &bare_get);
        let real_get = load(&real, phase, get(real_ids)).await;
        print("GetRecord", &real_get);
        println!(
            "  ratio GetRecord / bare select: {:.2} (target >= 0.7); GetRecord p99 {:.2} ms (target < 10 ms)",
            real_get.per_second / bare_get.per_second,
            real_get.p99.as_secs_f64() * 1e3
        );

        // Bulk import: one client stream of messages of 1000 items.
        let items = ((200_000.0 * scale) as usize).max(10_000);
        let messages: Vec<ImportRecordsRequest> = (0..items / 1000)
            .map(|m| ImportRecordsRequest {
                items: (0..1000)
                    .map(|i| ImportItem { request_id: uuid::Uuid::new_v4().to_string(), record: Some(record(&patients[(m * 1000 + i) % patients.len()])) })
                    .collect(),
                requester: Some(requester()),
                return_record_ids: false,
            })
            .collect();
        // Breakdown of the import path on this machine: validation alone, the store alone.
        {
            use carerecord_records::domain::record::{RecordRules, validate_new};
            use carerecord_records::store::{NewRecord, Store};
            let rules: RecordRules = RecordsConfig::from_env(&Env::default()).unwrap().rules;
            let records: Vec<Record> = (0..10_000).map(|i| record(&patients[i % patients.len()])).collect();
            let start = Instant::now();
            let mut fields = Vec::new();
            for r in &records {
                let mut v = carerecord_platform::errors::Violations::new();
                fields.push(validate_new(r, "record", &rules, now_micros(), &mut v));
            }
            let validate = start.elapsed();
            let store = Store::new(db.clone());
            let items: Vec<NewRecord> = fields
                .into_iter()
                .map(|f| NewRecord { request_id: Some(uuid::Uuid::new_v4().to_string()), fields: f, requester: Default::default() })
                .collect();
            let start = Instant::now();
            for chunk in items.chunks(1000) {
                store.create_batch(chunk, Default::default()).await.unwrap();
            }
            let write = start.elapsed();
            println!(
                "  breakdown per record: validation {:.1} us, store write {:.1} us (10,000 records, batches of 1000)",
                validate.as_secs_f64() * 1e6 / 10_000.0,
                write.as_secs_f64() * 1e6 / 10_000.0
            );
        }
        let mut client = real[0].clone();
        let start = Instant::now();
        let response = client.import_records(tokio_stream::iter(messages)).await.unwrap().into_inner();
        let elapsed = start.elapsed();
        assert_eq!(response.accepted_count as usize, items);
        println!("bulk import, one stream of {items} Observations in messages of 1000:");
        println!("  ImportRecords                      {:>9.0} records/s (target >= 30,000)", items as f64 / elapsed.as_secs_f64());

        // Breakdown of the export path: reading rows through the store alone.
        {
            use carerecord_records::store::{Filter, Store};
            use tokio_stream::StreamExt;
            let store = Store::new(db.clone());
            let filter = Filter { snapshot: store.head().await.unwrap(), include_retracted: true, ..Filter::default() };
            let (mut after, mut read) = (0i64, 0usize);
            let start = Instant::now();
            loop {
                let mut rows = store.export_chunk(&filter, after, 500, true);
                let mut n = 0;
                while let Some(row) = rows.next().await {
                    after = row.unwrap().creation_seq;
                    n += 1;
                }
                read += n;
                if n < 500 {
                    break;
                }
            }
            println!("  breakdown: store read {:.1} us per record ({read} records in chunks of 500)", start.elapsed().as_secs_f64() * 1e6 / read as f64);
        }
        // Export of the whole store, counting records and watching memory.
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM record_versions").fetch_one(&db.pool).await.unwrap();
        let before = rss_mib();
        let mut peak = before;
        let start = Instant::now();
        let mut stream = client
            .export_records(ExportRecordsRequest { scope: Some(Scope::UpdatedBetween(Period::default())), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let (mut exported, mut bytes) = (0usize, 0usize);
        while let Some(message) = stream.message().await.unwrap() {
            exported += message.records.len();
            bytes += message.records.iter().map(|r| r.payload.len()).sum::<usize>();
            if exported % 20_000 < 100 {
                peak = peak.max(rss_mib());
            }
        }
        let elapsed = start.elapsed();
        assert_eq!(exported as i64, total);
        println!("export of the whole store ({exported} records, {:.0} MiB of payload), full view:", bytes as f64 / (1 << 20) as f64);
        println!(
            "  ExportRecords                      {:>9.0} records/s (target >= 50,000); process RSS {before:.0} MiB before, {peak:.0} MiB peak, {:.0} MiB after",
            exported as f64 / elapsed.as_secs_f64(),
            rss_mib()
        );
    });
    shutdown.cancel();
}
