//! The database: one sqlx `Any` pool over PostgreSQL (production) or SQLite (the embedded default).
//!
//! Each service owns its own database and embeds one migration set per dialect
//! (`migrations/postgres`, `migrations/sqlite`); they run at start. Schemas behind the `Any` driver
//! use only its portable types: integers, floats, text, blobs and booleans. Timestamps are stored as
//! microseconds since the Unix epoch, identifiers as text.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::env::{ConfigError, Env};

/// Which database engine is behind a pool; stores use it where SQL dialects differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend a `DATABASE_URL` names, by its scheme.
    pub fn from_url(url: &str) -> Option<Backend> {
        let scheme = url.split(':').next()?;
        match scheme {
            "postgres" | "postgresql" => Some(Backend::Postgres),
            "sqlite" => Some(Backend::Sqlite),
            _ => None,
        }
    }
}

/// `DATABASE_URL` and pool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`: `postgres://…` or `sqlite://path/to/file.db` (created if missing).
    pub url: String,
    pub backend: Backend,
    /// `CARERECORD_DB_MAX_CONNECTIONS`.
    pub max_connections: u32,
    /// `CARERECORD_DB_ACQUIRE_TIMEOUT`: how long a call waits for a free connection.
    pub acquire_timeout: Duration,
}

impl DatabaseConfig {
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

    /// Reads the database settings; `service` names the default SQLite file `data/<service>.db`.
    pub fn from_env(env: &Env, service: &str) -> Result<Self, ConfigError> {
        let default_url = format!("sqlite://data/{service}.db");
        let mut config = Self::new(&env.string_or("DATABASE_URL", &default_url))?;
        config.max_connections = env.parse_or(
            "CARERECORD_DB_MAX_CONNECTIONS",
            Self::DEFAULT_MAX_CONNECTIONS,
        )?;
        config.acquire_timeout =
            env.duration_or("CARERECORD_DB_ACQUIRE_TIMEOUT", Duration::from_secs(5))?;
        Ok(config)
    }

    /// Settings for `url` with default pool sizes.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        let backend = Backend::from_url(url).ok_or_else(|| {
            ConfigError::invalid(
                "DATABASE_URL",
                &redact(url),
                "expected a postgres:// or sqlite:// URL",
            )
        })?;
        if backend == Backend::Sqlite && sqlite_path(url).is_none() {
            return Err(ConfigError::invalid(
                "DATABASE_URL",
                url,
                "expected sqlite://<path to file> or sqlite::memory:",
            ));
        }
        Ok(DatabaseConfig {
            url: url.to_owned(),
            backend,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Duration::from_secs(5),
        })
    }
}

/// The file path of a SQLite URL, or `Some("")` for an in-memory database.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    if rest.starts_with(":memory:") {
        return Some("");
    }
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty()).then_some(path)
}

/// A URL with any password replaced, safe to log or show in an error.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create the directory for the SQLite database {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A service's migrations, one set per dialect.
pub struct Migrations {
    pub postgres: &'static Migrator,
    pub sqlite: &'static Migrator,
}

impl Migrations {
    /// For a service that owns no database.
    pub const NONE: Migrations = Migrations {
        postgres: &Migrator::DEFAULT,
        sqlite: &Migrator::DEFAULT,
    };
}

/// A connected, migrated database.
#[derive(Debug, Clone)]
pub struct Database {
    pub pool: AnyPool,
    pub backend: Backend,
    /// On PostgreSQL, its own driver beside the `Any` pool, for what `Any` cannot express or does
    /// slowly: COPY (bulk writes at about half the server time of an INSERT that parses its rows
    /// from JSON) and hot reads ([`crate::sql::fetch_all`]). Connected lazily, so a service that
    /// uses neither opens no connection.
    pub postgres: Option<PgPool>,
}

/// The fewest connections of the native PostgreSQL pool: bulk writes are few and long; it grows to
/// the `Any` pool's size for the reads it serves.
const COPY_CONNECTIONS: u32 = 4;

/// Session settings for every PostgreSQL connection. Every query here is short OLTP. With
/// statistics lagging behind a bulk load, PostgreSQL's cost estimates can pass jit_above_cost and
/// spend ~25 ms compiling a query that runs in 1 ms; parallel workers cost the same way on a small
/// machine.
const POSTGRES_SESSION: &str = "SET jit = off; SET max_parallel_workers_per_gather = 0";

impl Database {
    /// Connects (creating a SQLite file and its directory if missing) and runs the migrations.
    pub async fn connect(
        config: &DatabaseConfig,
        migrations: &Migrations,
    ) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let mut url = config.url.clone();
        let mut max_connections = config.max_connections;
        if config.backend == Backend::Sqlite {
            match sqlite_path(&url) {
                Some("") => max_connections = 1, // each in-memory connection would be its own database
                Some(path) => {
                    if let Some(dir) = Path::new(path)
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                    {
                        std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
                            path: path.to_owned(),
                            source,
                        })?;
                    }
                    if !url.contains("mode=") {
                        url.push_str(if url.contains('?') {
                            "&mode=rwc"
                        } else {
                            "?mode=rwc"
                        });
                    }
                }
                None => {}
            }
        }
        let connect_error = |source| DbError::Connect {
            url: redact(&config.url),
            source,
        };
        let options = AnyConnectOptions::from_str(&url).map_err(connect_error)?;
        let backend = config.backend;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(config.acquire_timeout)
            // A round trip per acquire costs ~15% throughput; broken connections surface as errors
            // on use and are replaced by the pool.
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; busy_timeout queues writers instead of failing.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    } else {
                        conn.execute(POSTGRES_SESSION).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        let migrator = match backend {
            Backend::Postgres => migrations.postgres,
            Backend::Sqlite => migrations.sqlite,
        };
        migrator.run(&pool).await?;
        let postgres = match backend {
            Backend::Postgres => Some(
                PgPoolOptions::new()
                    .max_connections(max_connections.max(COPY_CONNECTIONS))
                    .acquire_timeout(config.acquire_timeout)
                    .test_before_acquire(false)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(POSTGRES_SESSION).await?;
                            Ok(())
                        })
                    })
                    .connect_lazy_with(
                        PgConnectOptions::from_str(&config.url).map_err(connect_error)?,
                    ),
            ),
            Backend::Sqlite => None,
        };
        Ok(Database {
            pool,
            backend,
            postgres,
        })
    }
}

/// Whether a database error means "try again": the connection or server went away, the pool is
/// exhausted, or the database is busy. These become UNAVAILABLE so clients retry.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => match db.code() {
            // PostgreSQL: connection exceptions (08), shutdown and crash recovery (57P0x),
            // serialization failures and deadlocks (40001, 40P01), too many connections (53300).
            Some(code) => {
                let code = code.as_ref();
                code.starts_with("08")
                    || code.starts_with("57P")
                    || matches!(code, "40001" | "40P01" | "53300")
                    // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6), including extended codes.
                    || code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
            }
            None => false,
        },
        _ => false,
    }
}

/// Microseconds since the Unix epoch: how timestamps are stored.
pub fn now_micros() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_follows_the_scheme() {
        assert_eq!(
            Backend::from_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("sqlite://data/x.db"),
            Some(Backend::Sqlite)
        );
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("mysql://u@h/db"), None);
        assert_eq!(Backend::from_url("data/x.db"), None);
    }

    #[test]
    fn default_url_is_a_sqlite_file_per_service() {
        let config = DatabaseConfig::from_env(&Env::default(), "consent").unwrap();
        assert_eq!(config.url, "sqlite://data/consent.db");
        assert_eq!(config.backend, Backend::Sqlite);
    }

    #[test]
    fn bad_urls_are_rejected_without_leaking_passwords() {
        let env = Env::from_pairs([("DATABASE_URL", "mysql://admin:hunter2@db/x")]);
        let message = DatabaseConfig::from_env(&env, "identity")
            .unwrap_err()
            .to_string();
        assert!(message.contains("DATABASE_URL"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(DatabaseConfig::new("sqlite://").is_err());
        let env = Env::from_pairs([
            ("DATABASE_URL", "sqlite://x.db"),
            ("CARERECORD_DB_MAX_CONNECTIONS", "lots"),
        ]);
        assert!(DatabaseConfig::from_env(&env, "identity").is_err());
    }

    #[test]
    fn sqlite_paths_and_redaction() {
        assert_eq!(
            sqlite_path("sqlite://data/x.db?mode=rwc"),
            Some("data/x.db")
        );
        assert_eq!(sqlite_path("sqlite:///tmp/x.db"), Some("/tmp/x.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), Some(""));
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[tokio::test]
    async fn sqlite_file_and_directory_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/dir/svc.db", dir.path().display());
        static EMPTY_PG: Migrator = Migrator::DEFAULT;
        static EMPTY_SQLITE: Migrator = Migrator::DEFAULT;
        let migrations = Migrations {
            postgres: &EMPTY_PG,
            sqlite: &EMPTY_SQLITE,
        };
        let db = Database::connect(&DatabaseConfig::new(&url).unwrap(), &migrations)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(dir.path().join("nested/dir/svc.db").exists());
    }
}
