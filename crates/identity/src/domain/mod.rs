//! Pure domain logic: validation, normalisation, comparators and the matching model. No I/O.

pub mod compare;
pub mod estimate;
pub mod features;
pub mod model;
pub mod normalize;
pub mod phonetic;
pub mod validate;
