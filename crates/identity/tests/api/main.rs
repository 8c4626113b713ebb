//! API tests of the identity service.

mod startup;
