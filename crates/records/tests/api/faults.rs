//! Faults: PostgreSQL connections killed under load, or the PostgreSQL server restarted.
//!
//! `CARERECORD_TEST_POSTGRES_RESTART` names a shell command that restarts the server, for example
//! `pg_ctlcluster 15 main restart -m fast`. With it, the fault is a real restart. Run the test alone
//! then (`cargo test -p carerecord-records --test api faults::`): a restart breaks every other
//! test's connections too, which is why `make test` kills only this test database's connections.

use std::collections::HashSet;
use std::time::Duration;

use carerecord_contracts::records::v1::{ImportRecordsRequest, RecordView};
use carerecord_platform::db::Backend;
use carerecord_platform::testing::TestDatabase;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::helpers::*;

/// Items per import stream: three transactions (2,000, 2,000, 1,000), each written by COPY.
const IMPORT_ITEMS: usize = 5_000;

/// Breaks the service's database connections while eight clients create records and one imports
/// them, then checks that every create and import the service acknowledged is stored once, and
/// that every failure was retryable. Each request is retried with its request ids until it is
/// acknowledged.
#[tokio::test]
async fn killed_database_connections_lose_no_acknowledged_write() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    assert_eq!(db.backend, Backend::Postgres);
    let app = spawn_app(&db).await;
    let (created_for, imported_for) = (new_id(), new_id());
    let stop = CancellationToken::new();

    let creators: Vec<_> = (0..8)
        .map(|_| {
            let client = app.client.clone();
            let patient = created_for.clone();
            until_stopped(stop.clone(), move || {
                let (client, patient) = (client.clone(), patient.clone());
                async move {
                    let request = create_request(record(&patient));
                    let (response, retries) = until_acknowledged("a create", || {
                        let (mut client, request) = (client.clone(), request.clone());
                        async move { client.create_record(request).await }
                    })
                    .await;
                    (vec![response.record.unwrap().record_id], retries)
                }
            })
        })
        .collect();
    let importer = {
        let client = app.client.clone();
        let patient = imported_for.clone();
        until_stopped(stop.clone(), move || {
            let (client, patient) = (client.clone(), patient.clone());
            async move {
                let messages: Vec<ImportRecordsRequest> = (0..IMPORT_ITEMS / 1000)
                    .map(|i| ImportRecordsRequest {
                        items: (0..1000)
                            .map(|_| item(record(&patient), &new_id()))
                            .collect(),
                        requester: (i == 0).then(requester),
                        return_record_ids: i == 0,
                    })
                    .collect();
                let (response, retries) = until_acknowledged("an import", || {
                    let (mut client, messages) = (client.clone(), messages.clone());
                    async move { client.import_records(tokio_stream::iter(messages)).await }
                })
                .await;
                assert_eq!(
                    (response.accepted_count, response.rejected_count),
                    (IMPORT_ITEMS as i64, 0),
                    "an acknowledged import accepts every item"
                );
                let acknowledged = response.accepted_records.into_iter().map(|r| r.record_id);
                (acknowledged.collect(), retries)
            }
        })
    };

    match std::env::var("CARERECORD_TEST_POSTGRES_RESTART") {
        Ok(command) if !command.trim().is_empty() => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let status = tokio::process::Command::new("sh")
                .args(["-c", &command])
                .status()
                .await
                .unwrap();
            assert!(status.success(), "{command:?} failed: {status}");
            eprintln!("restarted PostgreSQL with {command:?}");
            // Long enough for the pools to reconnect and acknowledge writes again.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        _ => kill_connections(&db.url).await,
    }
    stop.cancel();
    let (mut created, mut unavailable) = (Vec::new(), 0);
    for creator in creators {
        let (ids, failures) = creator.await.unwrap();
        created.extend(ids);
        unavailable += failures;
    }
    let (imported, import_failures) = importer.await.unwrap();
    assert!(!created.is_empty() && !imported.is_empty());

    let mut client = app.client.clone();
    for record_id in &created {
        get(&mut client, record_id, 0, RecordView::Metadata).await;
    }
    let stored = list_all(&mut client, &created_for).await;
    assert_eq!(
        stored.len(),
        created.len(),
        "retried creates wrote no duplicates"
    );
    // Every imported record is stored once, and nothing else: an import that failed partway and
    // was sent again wrote each item once.
    let stored: HashSet<String> = list_all(&mut client, &imported_for)
        .await
        .into_iter()
        .map(|r| r.record_id)
        .collect();
    let imported_ids: HashSet<String> = imported.iter().cloned().collect();
    assert_eq!(imported_ids.len(), imported.len());
    assert_eq!(
        stored, imported_ids,
        "every acknowledged import item is stored once"
    );
    eprintln!(
        "acknowledged {} creates and {} imported records; {unavailable} creates and \
         {import_failures} imports answered UNAVAILABLE and were retried",
        created.len(),
        imported.len()
    );
    app.stop().await;
}

/// Terminates every server connection to the database of `url`, five times, 200 ms apart.
async fn kill_connections(url: &str) {
    let mut admin = sqlx::AnyConnection::connect(url).await.unwrap();
    let name = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        sqlx::query("SELECT CAST(count(pg_terminate_backend(pid)) AS BIGINT) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
            .bind(name.as_str())
            .fetch_one(&mut admin)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Runs `round` until `stop`, gathering the ids of the writes each round had acknowledged and the
/// UNAVAILABLE answers it retried.
fn until_stopped<F, Fut>(
    stop: CancellationToken,
    mut round: F,
) -> tokio::task::JoinHandle<(Vec<String>, usize)>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (Vec<String>, usize)> + Send,
{
    tokio::spawn(async move {
        let (mut acknowledged, mut unavailable) = (Vec::new(), 0);
        while !stop.is_cancelled() {
            let (ids, retries) = round().await;
            acknowledged.extend(ids);
            unavailable += retries;
        }
        (acknowledged, unavailable)
    })
}

/// Sends a request (the same request ids each time) until it is answered, and counts the
/// UNAVAILABLE answers it retried. Any other error fails the test: it would not be retryable.
async fn until_acknowledged<T, F, Fut>(what: &str, mut send: F) -> (T, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut retries = 0;
    loop {
        match send().await {
            Ok(response) => return (response.into_inner(), retries),
            Err(status) if status.code() == Code::Unavailable => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(status) => panic!("{what} failed with {status:?}, not a retryable status"),
        }
    }
}
