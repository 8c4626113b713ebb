//! Pure domain logic: codes, validation, a directive's lifecycle, the decision, the opt-out's
//! exemptions. No I/O.

pub mod codes;
pub mod decide;
pub mod lifecycle;
pub mod optout;
pub mod time;
pub mod validate;
