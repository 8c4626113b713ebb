//! Conformance tests of the access module (written in a later step).

use crate::harness::Case;

pub(crate) fn cases() -> Vec<Case> {
    Vec::new()
}
