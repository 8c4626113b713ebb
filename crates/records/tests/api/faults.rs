//! Faults: PostgreSQL connections killed under load.

use std::time::Duration;

use carerecord_contracts::records::v1::GetRecordRequest;
use carerecord_platform::db::Backend;
use carerecord_platform::testing::TestDatabase;
use sqlx::Connection;
use tonic::Code;

use crate::helpers::*;

/// Kills every server connection of the service's database while clients create records, then
/// checks that each create the service acknowledged is stored, and that failures were retryable.
#[tokio::test]
async fn killed_database_connections_lose_no_acknowledged_write() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    assert_eq!(db.backend, Backend::Postgres);
    let app = spawn_app(&db).await;
    let patient = new_id();
    let stop = tokio_util::sync::CancellationToken::new();

    let clients: Vec<_> = (0..8)
        .map(|_| {
            let mut client = app.client.clone();
            let patient = patient.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut acknowledged, mut unavailable) = (Vec::new(), 0);
                while !stop.is_cancelled() {
                    // Retry each request with its request id until it is acknowledged.
                    let request = create_request(record(&patient));
                    loop {
                        match client.create_record(request.clone()).await {
                            Ok(response) => {
                                acknowledged.push(response.into_inner().record.unwrap().record_id);
                                break;
                            }
                            Err(status) if status.code() == Code::Unavailable => {
                                unavailable += 1;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            Err(status) => {
                                panic!("a create failed with {status:?}, not a retryable status")
                            }
                        }
                    }
                }
                (acknowledged, unavailable)
            })
        })
        .collect();

    let mut admin = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    let name = db
        .url
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
    stop.cancel();
    let (mut acknowledged, mut unavailable) = (Vec::new(), 0);
    for client in clients {
        let (ids, failures) = client.await.unwrap();
        acknowledged.extend(ids);
        unavailable += failures;
    }
    assert!(!acknowledged.is_empty());
    let mut client = app.client.clone();
    for record_id in &acknowledged {
        client
            .get_record(GetRecordRequest {
                record_id: record_id.clone(),
                version: 0,
                view: 2,
            })
            .await
            .unwrap();
    }
    let stored = list_all(&mut client, &patient).await;
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "retries with the request id wrote no duplicates"
    );
    eprintln!(
        "acknowledged {} creates; {unavailable} UNAVAILABLE answers were retried",
        acknowledged.len()
    );
    app.stop().await;
}
