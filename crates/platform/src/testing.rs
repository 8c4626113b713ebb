//! The test kit (feature `testing`, never in a production binary): fresh databases on both
//! backends, services started in-process or as processes, assertions on error details, and a
//! stand-in for another organisation's HTTP endpoint ([`JsonEndpoint`]).
//!
//! SQLite is always tested. PostgreSQL is tested when `TEST_DATABASE_URL` names a server (CI sets
//! it); each test then gets a database of its own, created on that server. When the variable is set
//! but the server cannot be reached, the test fails: a missing backend must never pass silently.

mod endpoint;

pub use endpoint::{JsonEndpoint, answer_json};

use sqlx::any::AnyConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;

use crate::db::Backend;

/// A database that lives as long as the test holds it.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    // Keeps the SQLite file's directory alive until the test ends.
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A fresh SQLite file in a temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}/test.db", dir.path().display());
        TestDatabase {
            url,
            backend: Backend::Sqlite,
            _dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL database on the server `TEST_DATABASE_URL` names, or `None` when unset.
    ///
    /// # Panics
    /// When `TEST_DATABASE_URL` is set but the server cannot be reached or the database cannot be created.
    pub async fn postgres() -> Option<Self> {
        let server_url = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())?;
        sqlx::any::install_default_drivers();
        // The creation time in the name lets `make clean-test-dbs` drop only stale databases, never
        // those of a test run still going.
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!(
            "carerecord_test_{created}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let options = AnyConnectOptions::from_str(&server_url)
            .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is not a valid URL: {e}"));
        let mut conn = options.connect().await.unwrap_or_else(|e| {
            panic!(
                "TEST_DATABASE_URL is set but PostgreSQL cannot be reached ({}): {e}",
                crate::db::redact(&server_url)
            )
        });
        conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name}"
        ))))
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        conn.close().await.ok();
        Some(TestDatabase {
            url: with_database(&server_url, &name),
            backend: Backend::Postgres,
            _dir: None,
        })
    }

    /// One fresh database per backend under test: SQLite, then PostgreSQL when configured.
    pub async fn each_backend() -> Vec<TestDatabase> {
        let mut databases = vec![TestDatabase::sqlite()];
        databases.extend(TestDatabase::postgres().await);
        databases
    }

    /// For benchmarks, after a bulk load: the state autovacuum reaches within minutes (fresh
    /// planner statistics, and a visibility map that allows index-only scans). No-op on SQLite.
    pub async fn settle(&self) {
        if self.backend != Backend::Postgres {
            return;
        }
        let options = AnyConnectOptions::from_str(&self.url).expect("test database url");
        let mut conn = options.connect().await.expect("connect for VACUUM ANALYZE");
        conn.execute(sqlx::raw_sql("VACUUM ANALYZE"))
            .await
            .expect("VACUUM ANALYZE");
        conn.close().await.ok();
    }
}

/// `url` pointed at database `name` on the same server, keeping its query parameters.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// A service binary started by a test, on an ephemeral port, stopped with SIGTERM.
pub struct ServiceProcess {
    pub addr: std::net::SocketAddr,
    child: tokio::process::Child,
    // Log lines after the start-up line, kept for assertions and diagnostics.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `binary` with JSON logs, listening on `127.0.0.1:0`, with `envs` added, and waits for
    /// its `started` log line to learn the port.
    ///
    /// # Panics
    /// When the binary cannot start or exits before serving.
    pub async fn start(binary: &str, envs: &[(&str, &str)]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut command = tokio::process::Command::new(binary);
        command
            .env("CARERECORD_LISTEN_ADDR", "127.0.0.1:0")
            .env("CARERECORD_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let addr = loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("{binary} did not start within 60 s"))
                .unwrap_or_else(|e| panic!("reading {binary}'s log: {e}"))
                .unwrap_or_else(|| {
                    panic!(
                        "{binary} exited before serving; log: {:?}",
                        logs.lock().map(|l| l.clone())
                    )
                });
            logs.lock().expect("log lock").push(line.clone());
            if let Some(addr) = started_addr(&line) {
                break addr;
            }
        };
        let sink = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("log lock").push(line);
            }
        });
        ServiceProcess { addr, child, logs }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id while it runs (`None` once it has been waited for).
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process is still running: it has neither exited nor been killed.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process with SIGKILL, as a node failure or the kernel's out-of-memory killer
    /// would: no drain, no clean exit, connections reset. Returns once it has exited.
    pub async fn kill(&mut self) {
        // An error means it had already exited.
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM and returns whether the process exited successfully within `timeout`.
    pub async fn terminate(mut self, timeout: std::time::Duration) -> bool {
        let Some(pid) = self.child.id() else {
            return false;
        };
        let sent = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
        if !sent.is_ok_and(|s| s.success()) {
            return false;
        }
        matches!(tokio::time::timeout(timeout, self.child.wait()).await, Ok(Ok(status)) if status.success())
    }
}

/// The path of `binary`, a binary target of the workspace's package `package`, in the target
/// directory of the running test (`target/debug` beside `target/debug/deps/<test>`), for
/// [`ServiceProcess::start`] from a test of another package.
///
/// `cargo test --workspace` builds every package's binaries before any test runs, so there it is
/// always current. When it is missing, or older than a source file it was built from (a test run
/// for one package only, after an edit), it is built first with `cargo build`.
///
/// # Panics
/// When it cannot be built.
pub fn workspace_binary(package: &str, binary: &str) -> std::path::PathBuf {
    let test = std::env::current_exe().expect("the running test's path");
    let profile_dir = test
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the test runs from <target>/<profile>/deps");
    let path = profile_dir.join(binary);
    if !is_current(&path) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = std::process::Command::new(cargo);
        command.args(["build", "--quiet", "-p", package, "--bin", binary]);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            command.arg("--release");
        }
        let status = command
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build {binary}: {e}"));
        assert!(status.success(), "building {binary} failed: {status}");
    }
    path
}

/// Whether `binary` exists and is newer than every source file its dep-info lists.
fn is_current(binary: &std::path::Path) -> bool {
    let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified());
    let Ok(built) = modified(binary) else {
        return false;
    };
    let Ok(dep_info) = std::fs::read_to_string(binary.with_extension("d")) else {
        return false;
    };
    // `<binary>: <source> <source> ...` (this workspace's paths have no spaces to escape).
    let Some((_, sources)) = dep_info.lines().next().and_then(|l| l.split_once(": ")) else {
        return false;
    };
    sources
        .split_whitespace()
        .all(|source| modified(std::path::Path::new(source)).is_ok_and(|t| t <= built))
}

/// The address in a JSON `started` log line, as written by [`crate::app::main`].
fn started_addr(line: &str) -> Option<std::net::SocketAddr> {
    if !line.contains("\"message\":\"started\"") {
        return None;
    }
    let start = line.find("\"addr\":\"")? + "\"addr\":\"".len();
    let end = start + line[start..].find('"')?;
    line[start..end].parse().ok()
}

/// Asserts that the server at `endpoint` reports `service` SERVING by grpc.health.v1 and lists it
/// by server reflection (v1).
///
/// # Panics
/// When either check fails.
pub async fn assert_serves_health_and_reflection(endpoint: &str, service: &str) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .expect("valid endpoint")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {endpoint}: {e}"));

    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap_or_else(|e| panic!("health check of {service}: {e}"))
        .into_inner()
        .status;
    assert_eq!(
        status,
        ServingStatus::Serving as i32,
        "{service} is not SERVING"
    );

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection call")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("reflection response")
        .expect("one reflection response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == service),
        "{service} not listed by reflection: {names:?}"
    );
    assert!(
        names.iter().any(|n| n == "grpc.health.v1.Health"),
        "health not listed: {names:?}"
    );
}

/// A service started in-process by a test on `127.0.0.1:0`, with a connected channel; stopped by
/// [`TestApp::stop`] (waiting for it to drain) or when dropped.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub channel: tonic::transport::Channel,
    shutdown: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the service and waits until it has drained.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("the service task ends cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts `S` from `vars` (plus `CARERECORD_LISTEN_ADDR=127.0.0.1:0` and a short shutdown grace
/// unless `vars` say otherwise) and connects to it.
///
/// # Panics
/// When the configuration is refused or the service does not start.
pub async fn spawn<S: crate::app::Service>(vars: &[(&str, &str)]) -> TestApp {
    let mut env = crate::env::Env::from_pairs(vars.iter().copied());
    env.set_default("CARERECORD_LISTEN_ADDR", "127.0.0.1:0");
    env.set_default("CARERECORD_SHUTDOWN_GRACE", "5s");
    spawn_with_config::<S>(
        <S::Config as crate::app::ServiceConfiguration>::from_env(&env)
            .unwrap_or_else(|e| panic!("{} configuration: {e}", S::NAME)),
    )
    .await
}

/// [`spawn`]s `S` on the database at `db_url` with the service's own test `settings`, then the
/// test's `extra` settings.
pub async fn spawn_on<S: crate::app::Service>(
    db_url: &str,
    settings: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> TestApp {
    let mut vars = vec![("DATABASE_URL", db_url)];
    vars.extend_from_slice(settings);
    vars.extend_from_slice(extra);
    spawn::<S>(&vars).await
}

/// Starts `S` from a configuration the test built itself, and connects to it.
///
/// # Panics
/// When the service does not start.
pub async fn spawn_with_config<S: crate::app::Service>(config: S::Config) -> TestApp {
    let running = crate::app::start::<S>(config)
        .await
        .unwrap_or_else(|e| panic!("{} does not start: {e}", S::NAME));
    let addr = running.local_addr();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(running.run(shutdown.clone()));
    connected(S::NAME, addr, shutdown, task).await
}

/// A bare gRPC server (health and reflection behind the platform's layers) serving in the
/// background, and connected to: for tests of the serving itself.
///
/// # Panics
/// When it cannot be connected to.
pub async fn serve(server: crate::server::GrpcServer) -> TestApp {
    let addr = server.local_addr();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(server.serve(shutdown.clone()));
    connected("the server", addr, shutdown, task).await
}

/// The [`TestApp`] of `name` serving at `addr` in `task`, which must not stop with an error.
async fn connected<E: std::fmt::Display + Send + 'static>(
    name: &'static str,
    addr: std::net::SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), E>>,
) -> TestApp {
    let task = tokio::spawn(async move {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{name} stopped with an error: {e}"),
            Err(e) => panic!("{name} task failed: {e}"),
        }
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid endpoint")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {name}: {e}"));
    TestApp {
        addr,
        channel,
        shutdown,
        task: Some(task),
    }
}

/// The field paths of an INVALID_ARGUMENT status's `BadRequest`, in order.
///
/// # Panics
/// When the status is not INVALID_ARGUMENT or carries no `BadRequest`.
pub fn violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .unwrap_or_else(|| panic!("no BadRequest in {status:?}"))
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect()
}

/// Asserts INVALID_ARGUMENT with exactly these field violation paths, in this order.
pub fn assert_invalid(status: &tonic::Status, fields: &[&str]) {
    assert_eq!(violations(status), fields, "{status:?}");
}

/// The description of the first field violation.
///
/// # Panics
/// When the status carries no field violation.
pub fn first_description(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.description.clone()))
        .unwrap_or_else(|| panic!("no field violation in {status:?}"))
}

/// The `ErrorInfo` reason of a status, or an empty string when it has none.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// The status's `ErrorInfo`.
///
/// # Panics
/// When it has none.
pub fn error_info(status: &tonic::Status) -> tonic_types::ErrorInfo {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"))
}

/// The status's `ResourceInfo`.
///
/// # Panics
/// When it has none.
pub fn resource_info(status: &tonic::Status) -> tonic_types::ResourceInfo {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .resource_info()
        .cloned()
        .unwrap_or_else(|| panic!("no ResourceInfo in {status:?}"))
}

/// The life of a service binary on each backend: it migrates its database, serves `api` (a gRPC
/// service name) with health and reflection, and exits cleanly on SIGTERM.
///
/// # Panics
/// When any of those does not happen.
pub async fn assert_binary_lifecycle(binary: &str, api: &str, envs: &[(&str, &str)]) {
    for db in TestDatabase::each_backend().await {
        let mut vars = vec![("DATABASE_URL", db.url.as_str())];
        vars.extend_from_slice(envs);
        let process = ServiceProcess::start(binary, &vars).await;
        assert_serves_health_and_reflection(&process.endpoint(), api).await;
        assert!(
            process.terminate(std::time::Duration::from_secs(30)).await,
            "{binary} did not exit cleanly on SIGTERM ({:?})",
            db.backend
        );
    }
}

/// Calls the gRPC method `path` (e.g. `/carerecord.records.v1.RecordHostingService/GetRecord`) with
/// `message` sent as the request message's bytes exactly as given, however malformed, and returns the
/// response message's bytes or the status.
///
/// # Panics
/// When the channel is not ready or `path` is not a valid path.
pub async fn call_raw(
    channel: tonic::transport::Channel,
    path: &str,
    message: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the channel is ready");
    let path: http::uri::PathAndQuery = path.parse().expect("a gRPC method path");
    grpc.unary(tonic::Request::new(message), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Messages as bytes, unencoded and undecoded.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let len = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, len).to_vec()))
    }
}

/// `CARERECORD_BENCH_SCALE` (default 1.0, must be positive): what every benchmark multiplies its
/// sizes and durations by, so `make bench` can be shortened on a slow machine.
pub fn bench_scale() -> f64 {
    std::env::var("CARERECORD_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_replaces_the_path_only() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://postgres@localhost", "x"),
            "postgres://postgres@localhost/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
    }

    #[tokio::test]
    async fn each_backend_gives_usable_empty_databases() {
        for db in TestDatabase::each_backend().await {
            let config = crate::db::DatabaseConfig::new(&db.url).unwrap();
            static NONE: sqlx::migrate::Migrator = sqlx::migrate::Migrator::DEFAULT;
            let migrations = crate::db::Migrations {
                postgres: &NONE,
                sqlite: &NONE,
            };
            let database = crate::db::Database::connect(&config, &migrations)
                .await
                .unwrap();
            assert_eq!(database.backend, db.backend);
            let row: (i64,) = sqlx::query_as("SELECT CAST(41 + 1 AS BIGINT)")
                .fetch_one(&database.pool)
                .await
                .unwrap();
            assert_eq!(row.0, 42);
        }
    }
}
