//! Pure rules of record hosting: identifiers, payload and record validation, the clinical
//! terms that listings filter on. No I/O.

pub mod ids;
pub mod payload;
pub mod record;
pub mod resource_types;
pub mod terms;
