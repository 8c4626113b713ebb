//! End-to-end tests of the whole platform: the four real services, in-process, on real listeners,
//! on SQLite and (when TEST_DATABASE_URL is set) PostgreSQL.

mod audit;
mod conformance;
mod console;
mod contributions;
mod defects;
mod extracts;
mod fhir;
mod fhir_bulk;
mod fhir_errors;
mod fhir_peers;
mod fhir_writes;
mod follow;
mod imports;
mod jwks;
mod observability;
mod reads;
mod replicas;
mod restart;
mod restricted;
mod self_service;
mod swap;
