//! API tests of the records service, each on SQLite and (with TEST_DATABASE_URL) PostgreSQL.

mod crud;
mod faults;
mod helpers;
mod list;
mod provenance;
mod startup;
mod streams;
mod terms;
mod watchers;
