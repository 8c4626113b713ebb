//! API tests of the consent service, on SQLite and (with TEST_DATABASE_URL) PostgreSQL.

mod decide;
mod directives;
mod helpers;
mod opt_out;
mod refusals;
mod startup;
