//! Pure domain logic: codes, validation (and the rule for NUL in text), a directive's lifecycle,
//! the decision, the opt-out's exemptions. No I/O.

pub mod codes;
pub mod decide;
pub mod lifecycle;
pub mod optout;
pub mod text;
pub mod time;
pub mod validate;
