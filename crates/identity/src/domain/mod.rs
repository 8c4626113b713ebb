//! Pure domain logic, no I/O: validation and normalisation, the life of a patient record, search,
//! comparators, the matching model and its estimation.

pub mod activation;
pub mod compare;
pub mod estimate;
pub mod features;
pub mod field;
pub mod model;
pub mod nicknames;
pub mod normalize;
pub mod pairs;
pub mod patient;
pub mod phonetic;
pub mod score;
pub mod search;
pub mod validate;
