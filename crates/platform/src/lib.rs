//! The small, shared runtime of every carerecord service.
//!
//! - [`app`]: the shape of a service binary, and its `main`.
//! - [`config`]: configuration from environment variables, with errors that name the variable.
//! - [`telemetry`]: logs (human or JSON), OpenTelemetry traces over OTLP, W3C trace context.
//! - [`server`]: gRPC serving with health, reflection, timeouts, size limits and graceful shutdown.
//! - [`errors`]: gRPC statuses with google.rpc error details.
//! - [`page_token`]: opaque, unforgeable page tokens and cursors.
//! - [`fhir`]: the FHIR R4 resource type names.
//! - [`metrics`]: RED metrics (rate, errors, duration) per RPC.
//! - [`db`]: a sqlx pool over PostgreSQL or embedded SQLite, with migrations run at start.
//! - [`tls`]: TLS and mutual TLS for serving and for calls between modules.
//! - [`testing`]: fresh databases for tests, on both backends.

pub mod app;
pub mod config;
pub mod db;
pub mod errors;
pub mod fhir;
pub mod metrics;
pub mod page_token;
pub mod server;
pub mod telemetry;
pub mod testing;
pub mod tls;
