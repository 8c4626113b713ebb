//! `sql::fetch_all` reads the same rows on both backends: on PostgreSQL through the native driver
//! with the binds converted from `Any`, on SQLite through `Any`.

use carerecord_platform::db::{Database, DatabaseConfig, Migrations};
use carerecord_platform::sql::{DecodeRow, ReadRow, fetch_all, push_in};
use carerecord_platform::testing::TestDatabase;
use sqlx::{Any, Executor, QueryBuilder};

#[derive(Debug, PartialEq)]
struct Item {
    name: String,
    count: i64,
    note: Option<String>,
    weight: Option<i64>,
    blob: Vec<u8>,
    width: usize,
}

impl DecodeRow for Item {
    fn decode_row<R: ReadRow>(row: &R) -> Result<Item, sqlx::Error> {
        Ok(Item {
            name: row.text("name")?,
            count: row.int("count")?,
            note: row.opt_text_at(2)?,
            weight: row.opt_int("weight")?,
            blob: row.bytes("blob")?,
            width: row.width(),
        })
    }
}

/// A name column that is text on either backend but read as a number, to see the error.
struct Misread;

impl DecodeRow for Misread {
    fn decode_row<R: ReadRow>(row: &R) -> Result<Misread, sqlx::Error> {
        row.int("name").map(|_| Misread)
    }
}

async fn database(db: &TestDatabase) -> Database {
    let config = DatabaseConfig::new(&db.url).unwrap();
    let database = Database::connect(&config, &Migrations::NONE).await.unwrap();
    let blob = if database.postgres.is_some() {
        "BYTEA"
    } else {
        "BLOB"
    };
    database
        .pool
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE items (name TEXT NOT NULL, count BIGINT NOT NULL, note TEXT, weight BIGINT, blob {blob} NOT NULL)"
        )))
        .await
        .unwrap();
    let mut insert =
        QueryBuilder::<Any>::new("INSERT INTO items (name, count, note, weight, blob) ");
    insert.push_values(
        [
            ("a", 1, Some("first"), Some(10), vec![0u8, 1, 2]),
            ("b", 2, None, None, vec![]),
            ("c?", 3, Some("it's"), Some(-7), vec![255]),
        ],
        |mut row, (name, count, note, weight, blob)| {
            row.push_bind(name)
                .push_bind(count as i64)
                .push_bind(note)
                .push_bind(weight.map(i64::from))
                .push_bind(blob);
        },
    );
    carerecord_platform::sql::finish(&mut insert)
        .unwrap()
        .execute(&database.pool)
        .await
        .unwrap();
    database
}

#[tokio::test]
async fn rows_read_the_same_on_either_backend() {
    for db in TestDatabase::each_backend().await {
        let database = database(&db).await;
        assert_eq!(
            database.postgres.is_some(),
            db.backend == carerecord_platform::db::Backend::Postgres
        );

        let mut select = QueryBuilder::<Any>::new(
            "SELECT name, count, note, weight, blob FROM items WHERE count >= ",
        );
        select.push_bind(2_i64).push(" AND name");
        push_in(&mut select, ["b", "c?", "z"].map(String::from));
        select.push(" ORDER BY name");
        let items: Vec<Item> = fetch_all(&database, &mut select).await.unwrap();
        assert_eq!(
            items,
            vec![
                Item {
                    name: "b".into(),
                    count: 2,
                    note: None,
                    weight: None,
                    blob: vec![],
                    width: 5,
                },
                Item {
                    name: "c?".into(),
                    count: 3,
                    note: Some("it's".into()),
                    weight: Some(-7),
                    blob: vec![255],
                    width: 5,
                },
            ],
            "{:?}",
            db.backend
        );

        let mut none = QueryBuilder::<Any>::new(
            "SELECT name, count, note, weight, blob FROM items WHERE name = ",
        );
        none.push_bind("nobody");
        let items: Vec<Item> = fetch_all(&database, &mut none).await.unwrap();
        assert!(items.is_empty());

        let mut misread = QueryBuilder::<Any>::new("SELECT name FROM items");
        let error = fetch_all::<Misread>(&database, &mut misread).await.err();
        assert!(
            matches!(error, Some(sqlx::Error::ColumnDecode { .. })),
            "{:?}: {error:?}",
            db.backend
        );
    }
}
