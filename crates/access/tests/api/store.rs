//! The audit store under concurrency: consecutive indexes, no gaps, on both backends.

use carerecord_access::domain::merkle;
use carerecord_access::store::{Effect, Store};
use carerecord_contracts::access::v1 as api;
use carerecord_platform::db::{Database, DatabaseConfig};
use carerecord_platform::testing::TestDatabase;
use prost::Message;

#[tokio::test]
async fn concurrent_appends_get_consecutive_indexes() {
    for db in TestDatabase::each_backend().await {
        let config = DatabaseConfig::new(&db.url).unwrap();
        let database = Database::connect(&config, &carerecord_access::MIGRATIONS)
            .await
            .unwrap();
        let store = Store::new(database);
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let leaf = api::AuditLeaf {
                        entry_id: uuid::Uuid::new_v4().to_string(),
                        action: api::AuditAction::Read as i32,
                        returned_count: i,
                        ..Default::default()
                    };
                    store.append(&leaf, Effect::None).await.unwrap().index
                })
            })
            .collect();
        let mut indexes = Vec::new();
        for task in tasks {
            indexes.push(task.await.unwrap());
        }
        indexes.sort();
        assert_eq!(indexes, (0..200).collect::<Vec<i64>>(), "{:?}", db.backend);
        let entries = store.entries(0, 200).await.unwrap();
        let hashes: Vec<merkle::Hash> = entries
            .iter()
            .map(|e| merkle::leaf_hash(&e.leaf_data))
            .collect();
        assert!(
            entries
                .iter()
                .all(|e| api::AuditLeaf::decode(e.leaf_data.as_slice()).is_ok())
        );
        assert_eq!(store.root(200).await.unwrap(), merkle::root(&hashes));
        assert_eq!(store.root(77).await.unwrap(), merkle::root(&hashes[..77]));
    }
}
