//! AggregateExtract: counts over a registered project's cohort, small numbers suppressed.

use std::collections::{BTreeMap, HashSet};

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::records::v1 as records;
use carerecord_platform::errors::Violations;
use tonic::{Request, Status};

use super::cohort::{Admission, cohort_args};
use super::{AccessService, BoxStream};
use crate::error::Error;

/// An aggregate group: (resource_type, code system, code, month).
type GroupKey = (String, String, String, String);

/// `YYYY-MM` of a UTC instant.
pub fn month_of(micros: i64) -> String {
    let (year, month, _) =
        carerecord_platform::time::civil_from_days(micros.div_euclid(86_400_000_000));
    format!("{year:04}-{month:02}")
}

/// The first coding of the resource's `code` (or `medicationCodeableConcept`).
fn first_coding(resource_type: &str, payload: &[u8]) -> (String, String) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Default::default();
    };
    let element = if matches!(resource_type, "MedicationRequest" | "MedicationStatement") {
        "medicationCodeableConcept"
    } else {
        "code"
    };
    let coding = value
        .get(element)
        .and_then(|c| c.get("coding"))
        .and_then(|c| c.get(0));
    let field = |name: &str| {
        coding
            .and_then(|c| c.get(name))
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    (field("system"), field("code"))
}

impl AccessService {
    pub(super) async fn aggregate(
        &self,
        request: Request<api::AggregateExtractRequest>,
    ) -> Result<BoxStream<api::AggregateExtractResponse>, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let args = cohort_args!(&mut v, req);
        let mut dims = Vec::new();
        for (i, d) in req.group_by.iter().enumerate() {
            match api::AggregateDimension::try_from(*d) {
                Ok(api::AggregateDimension::Unspecified) | Err(_) => {
                    v.add(format!("group_by[{i}]"), "must be a known dimension")
                }
                Ok(dim) if dims.contains(&dim) => {
                    v.add(format!("group_by[{i}]"), "repeats a dimension")
                }
                Ok(dim) => dims.push(dim),
            }
        }
        let measure = match api::AggregateMeasure::try_from(req.measure) {
            Ok(api::AggregateMeasure::Records) => api::AggregateMeasure::Records,
            Ok(_) => api::AggregateMeasure::Patients,
            Err(_) => {
                v.add("measure", "unknown value");
                api::AggregateMeasure::Patients
            }
        };
        let Some(args) = args.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let mut leaf = self.cohort_leaf(&caller, &trace, api::AuditAction::Aggregate, &args);
        let result = async {
            let prepared = self.prepare(&caller, &args).await?;
            leaf.cohort_counts = Some(prepared.counts);
            let by_code = dims.contains(&api::AggregateDimension::Code);
            let view = if by_code {
                records::RecordView::Full
            } else {
                records::RecordView::Metadata
            };
            // (resource_type, system, code, month) -> (records, patients)
            let mut groups: BTreeMap<GroupKey, (u64, HashSet<String>)> = BTreeMap::new();
            let mut withheld = 0i64;
            for owners in prepared.owner_batches() {
                let request = prepared.export_request(owners, view);
                self.export(request, |record| {
                    let (survivor, effective) = match prepared.admit(&record, &args) {
                        Admission::Skipped => return Ok(()),
                        Admission::Withheld => {
                            withheld += 1;
                            return Ok(());
                        }
                        Admission::Admitted {
                            survivor,
                            effective,
                            ..
                        } => (survivor, effective),
                    };
                    let resource_type = if dims.contains(&api::AggregateDimension::ResourceType) {
                        record.resource_type.clone()
                    } else {
                        String::new()
                    };
                    let (system, code) = if by_code {
                        first_coding(&record.resource_type, &record.payload)
                    } else {
                        Default::default()
                    };
                    let month = if dims.contains(&api::AggregateDimension::EffectiveMonth) {
                        effective.map(month_of).unwrap_or_default()
                    } else {
                        String::new()
                    };
                    let group = groups
                        .entry((resource_type, system, code, month))
                        .or_default();
                    group.0 += 1;
                    group.1.insert(survivor.to_owned());
                    Ok(())
                })
                .await?;
            }
            let rows: Vec<api::AggregateRow> = groups
                .into_iter()
                .map(
                    |((resource_type, system, code, month), (records, patients))| {
                        let true_count = match measure {
                            api::AggregateMeasure::Records => records,
                            _ => patients.len() as u64,
                        };
                        let (count, suppressed) = crate::domain::suppression::protect(true_count);
                        api::AggregateRow {
                            resource_type,
                            code: by_code.then(|| common::Coding {
                                system,
                                code,
                                display: String::new(),
                            }),
                            effective_month: month,
                            count: i64::try_from(count).unwrap_or(i64::MAX),
                            suppressed,
                        }
                    },
                )
                .collect();
            leaf.row_count = rows.len() as i64;
            leaf.returned_count = rows.len() as i64;
            leaf.withheld_count = withheld;
            Ok(rows)
        }
        .await;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => return Err(self.audited_failure(leaf, e, false).await),
        };
        let appended = self.audit(leaf, None, false).await?;
        let summary = api::AggregateSummary {
            rows: rows.len() as i64,
            audit_entry_id: appended.entry_id,
            audit_index: appended.index,
        };
        let messages: Vec<Result<api::AggregateExtractResponse, Status>> = rows
            .into_iter()
            .map(|row| {
                Ok(api::AggregateExtractResponse {
                    item: Some(api::aggregate_extract_response::Item::Row(row)),
                })
            })
            .chain(std::iter::once(Ok(api::AggregateExtractResponse {
                item: Some(api::aggregate_extract_response::Item::Summary(summary)),
            })))
            .collect();
        Ok(Box::pin(futures::stream::iter(messages)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(month_of(0), "1970-01");
        assert_eq!(
            month_of(951_782_400_000_000),
            "2000-02-29".get(..7).unwrap()
        );
        assert_eq!(month_of(1_709_251_199_000_000), "2024-02");
        assert_eq!(month_of(1_709_251_200_000_000), "2024-03");
        assert_eq!(month_of(-1), "1969-12");
    }

    #[test]
    fn codes_come_from_the_first_coding() {
        let obs = br#"{"resourceType":"Observation","code":{"coding":[{"system":"http://snomed.info/sct","code":"123"},{"code":"x"}]}}"#;
        assert_eq!(
            first_coding("Observation", obs),
            ("http://snomed.info/sct".into(), "123".into())
        );
        let med = br#"{"medicationCodeableConcept":{"coding":[{"system":"dmd","code":"9"}]}}"#;
        assert_eq!(
            first_coding("MedicationRequest", med),
            ("dmd".into(), "9".into())
        );
        assert_eq!(
            first_coding("Observation", b"{}"),
            (String::new(), String::new())
        );
    }
}
