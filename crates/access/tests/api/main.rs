//! API tests of the access service: in-process, against in-memory doubles of identity, consent
//! and record hosting, on SQLite and (with TEST_DATABASE_URL) PostgreSQL.

mod audit_log;
mod break_glass;
mod calls;
mod extracts;
mod issuers;
mod limits;
mod reads;
mod restricted;
mod startup;
mod store;
mod support;
mod tokens;
