//! API tests of the records service.

mod startup;
