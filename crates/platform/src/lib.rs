//! The small, shared runtime of every carerecord service.
//!
//! - [`app`]: the shape of a service binary, and its `main`.
//! - [`env`]: configuration variables, with errors that name the variable.
//! - [`config`]: the settings every service shares (server, database, telemetry).
//! - [`telemetry`]: logs (human or JSON), OpenTelemetry traces over OTLP, W3C trace context.
//! - [`server`]: gRPC serving with health, reflection, timeouts, size limits and graceful shutdown.
//! - [`http_server`]: plain HTTP serving (the FHIR gateway) with the same lifecycle.
//! - [`errors`]: gRPC statuses with google.rpc error details.
//! - [`status_policy`]: every status sent is bounded in size, and undecodable requests are the
//!   client's fault.
//! - [`page_token`]: opaque, unforgeable page tokens and cursors.
//! - [`change_log`]: listings of a change log after a cursor (identity's and consent's).
//! - [`fhir`]: the FHIR R4 resource type names.
//! - [`time`]: timestamps, microseconds and FHIR's partial dates.
//! - [`nhs_number`]: NHS numbers (ten digits, modulus-11 check digit).
//! - [`metrics`]: RED metrics (rate, errors, duration) per RPC.
//! - [`sql`]: dynamic SQL with `sqlx::QueryBuilder` on both backends (numbered binds, IN lists,
//!   batched inserts).
//! - [`db`]: a sqlx pool over PostgreSQL or embedded SQLite, with migrations run at start.
//! - [`tls`]: TLS and mutual TLS for serving and for calls between modules.
//! - [`transport`]: HTTP/2 windows, the channel one module opens to another, and data access as
//!   the gateways call it.
//! - [`request`]: parsing requests into ids, page sizes and page positions.
//! - [`testing`] (feature `testing`): the test kit: fresh databases on both backends, services
//!   started in-process, assertions on error details.

/// mimalloc, for every service, tool, test and bench that links the platform: matching, reads
/// and imports make many small, short-lived allocations, and glibc's allocator spent a large
/// share of identity's CPU on them (perf, README "Measured performance"). Not in fuzzing builds,
/// where libFuzzer watches the system allocator.
#[cfg(not(fuzzing))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod app;
pub mod change_log;
pub mod config;
pub mod db;
pub mod env;
pub mod errors;
pub mod fhir;
pub mod http_server;
pub mod metrics;
pub mod nhs_number;
pub mod page_token;
pub mod request;
pub mod server;
pub mod sql;
pub mod status_policy;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod tls;
pub mod transport;
