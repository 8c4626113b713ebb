//! API tests of the access service.

mod startup;
