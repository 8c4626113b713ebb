//! Pure rules of record hosting: identifiers, payload and record validation. No I/O.

pub mod ids;
pub mod payload;
pub mod record;
pub mod resource_types;
