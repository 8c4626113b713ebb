//! Invented people for tests, benchmarks and the local demo: nothing here is a real person, and no
//! service depends on this crate.
//!
//! - [`population`]: a UK-style population (names, birth dates, postcodes, NHS numbers from a test
//!   range) with noisy duplicate registrations whose ground truth is known.

pub mod population;

pub use population::{Generated, Generator};
