//! API tests of the identity service, each run on every backend under test.

mod helpers;
mod matching;
mod merges;
mod patients;
mod startup;
