//! API tests of the consent service.

mod startup;
