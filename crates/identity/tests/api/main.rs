//! API tests of the identity service, each run on every backend under test.

mod confidentiality;
mod estimation;
mod helpers;
mod matching;
mod merges;
mod patients;
mod startup;
