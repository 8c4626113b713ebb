//! Request fields that several handlers parse the same way.

use carerecord_contracts::common::v1::Period;
use carerecord_contracts::records::v1::RecordView;
use carerecord_platform::errors::Violations;

use crate::domain::record::{data_classes, optional_time};

/// Whether a view includes payloads; an unknown view is a violation on `view`.
pub fn with_payload(view: i32, violations: &mut Violations) -> bool {
    match RecordView::try_from(view) {
        Ok(RecordView::Unspecified | RecordView::Full) => true,
        Ok(RecordView::Metadata) => false,
        Err(_) => {
            violations.add("view", "unknown view");
            true
        }
    }
}

/// Validates data class labels used as filters.
pub fn labels(values: &[String], field: &str, violations: &mut Violations) -> Vec<String> {
    data_classes(values, field, violations);
    values.to_vec()
}

/// The bounds of a Period; start must be before end when both are set.
pub fn period(
    period: Option<&Period>,
    field: &str,
    violations: &mut Violations,
) -> (Option<i64>, Option<i64>) {
    let Some(period) = period else {
        return (None, None);
    };
    let start = optional_time(period.start.as_ref(), &format!("{field}.start"), violations);
    let end = optional_time(period.end.as_ref(), &format!("{field}.end"), violations);
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        violations.add(field, "start must be before end");
    }
    (start, end)
}

/// Validates a list of record or patient ids (at most `max`), lower-cased and deduplicated.
pub fn id_list(
    values: &[String],
    field: &str,
    max: usize,
    violations: &mut Violations,
) -> Vec<String> {
    violations
        .id_list(field, values, max)
        .into_iter()
        .map(String::from)
        .collect()
}
