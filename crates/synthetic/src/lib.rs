//! Invented people for tests, benchmarks and the local demo: nothing here is a real person, and no
//! service depends on this crate.
//!
//! - [`population`]: a UK-style population (names, birth dates, postcodes, NHS numbers from a test
//!   range) with noisy duplicate registrations whose ground truth is known.
//! - [`uk`]: a UK-like population for measuring matching: households, en-GB name frequencies,
//!   nicknames, marriages, moves, twins, mis-keyed dates and NHS numbers; an index of one
//!   registration per person and probes whose true matches are known; a development seed and a
//!   held-out one.

mod places;
pub mod population;
pub mod uk;

pub use population::{Generated, Generator};
