//! ResolveIdentifier and SearchPatients.

use carerecord_contracts::common::v1::{AdministrativeGender, Date, Identifier};
use carerecord_contracts::identity::v1::search_patients_request::Birth;
use carerecord_contracts::identity::v1::*;
use carerecord_platform::errors::Violations;
use carerecord_platform::nhs_number as nhs;

use super::IdentityService;
use super::request::valid;
use crate::domain::normalize;
use crate::domain::search::{Criteria, LAST_DATE, Term, date_int};
use crate::domain::validate::{self, NHS_NUMBER_SYSTEM};
use crate::error::{Error, IDENTIFIER};

/// The longest merge chain a resolution follows before it reports the data as corrupt.
const MAX_MERGE_CHAIN: usize = 1000;

/// The most candidate patients a search reads before filtering and scoring.
const MAX_SEARCH_CANDIDATES: i64 = 5000;

/// Birth date bounds from a date or a range: (from, to, the date itself when one was given).
fn birth_bounds(birth: Option<&Birth>, v: &mut Violations) -> (i64, i64, Option<Date>) {
    match birth {
        None => {
            v.add(
                "birth_date",
                "a birth_date or a birth_date_range is required",
            );
            (0, 0, None)
        }
        Some(Birth::BirthDate(d)) => {
            if validate::check_date(d, "birth_date", v) {
                (date_int(d), date_int(d), Some(*d))
            } else {
                (0, 0, None)
            }
        }
        Some(Birth::BirthDateRange(r)) => {
            if r.start.is_none() && r.end.is_none() {
                v.add("birth_date_range", "needs at least one bound");
            }
            let ok_start = r
                .start
                .as_ref()
                .is_none_or(|d| validate::check_date(d, "birth_date_range.start", v));
            let ok_end = r
                .end
                .as_ref()
                .is_none_or(|d| validate::check_date(d, "birth_date_range.end", v));
            let low = r.start.as_ref().map_or(1, date_int);
            let high = r.end.as_ref().map_or(LAST_DATE, date_int);
            if ok_start && ok_end && low > high {
                v.add("birth_date_range", "start is after end");
            }
            (low, high, None)
        }
    }
}

impl IdentityService {
    pub(super) async fn resolve(
        &self,
        request: ResolveIdentifierRequest,
    ) -> Result<ResolveIdentifierResponse, Error> {
        let mut v = Violations::new();
        let Identifier { system, value } = request.identifier.unwrap_or_default();
        let system = system.trim().to_owned();
        let mut value = value.trim().to_owned();
        if system.is_empty() {
            v.add("identifier.system", "is required");
        }
        if value.is_empty() {
            v.add("identifier.value", "is required");
        } else if system == NHS_NUMBER_SYSTEM {
            match nhs::normalise(&value) {
                Ok(n) => value = n,
                Err(e) => v.add("identifier.value", e.description()),
            }
        }
        v.into_result()?;
        let mut current =
            self.store
                .holder(&system, &value)
                .await?
                .ok_or_else(|| Error::NotFound {
                    resource_type: IDENTIFIER,
                    name: format!("{system}|{value}"),
                })?;
        let mut passed = Vec::new();
        while current.is_merged() {
            passed.push(current.patient.patient_id.clone());
            if passed.len() > MAX_MERGE_CHAIN {
                return Err(Error::Corrupt("merge chain too long".into()));
            }
            let next = current.patient.merged_into_patient_id.clone();
            current = self
                .store
                .get(&next)
                .await?
                .ok_or_else(|| Error::Corrupt(format!("merge target {next} missing")))?;
        }
        Ok(ResolveIdentifierResponse {
            patient_id: current.patient.patient_id.clone(),
            followed_merge: !passed.is_empty(),
            merged_patient_ids: passed,
            patient: Some(current.patient),
        })
    }

    pub(super) async fn search(
        &self,
        request: SearchPatientsRequest,
    ) -> Result<SearchPatientsResponse, Error> {
        let fuzzy = request.mode == SearchMode::Fuzzy as i32;
        let mut v = Violations::new();
        if SearchMode::try_from(request.mode).is_err() {
            v.add("mode", "unknown search mode");
        }
        let family = Term::parse(&request.family_name, "family_name", fuzzy, true, &mut v);
        let given = Term::parse(&request.given_name, "given_name", fuzzy, false, &mut v);
        let (born_from, born_to, birth_date) = birth_bounds(request.birth.as_ref(), &mut v);
        if AdministrativeGender::try_from(request.gender).is_err() {
            v.add("gender", "unknown administrative gender");
        }
        let max_results = v.page_size_within(
            "max_results",
            request.max_results,
            self.settings.search_default_results as usize,
            self.settings.search_max_results as usize,
        );
        let family = valid(v, family)?;
        let criteria = Criteria {
            family,
            given,
            born_from,
            born_to,
            birth_date,
            gender: request.gender,
            postcode: normalize::postcode_key(&request.postcode),
            fuzzy,
        };
        let ids = self
            .store
            .name_search(&criteria.name_query(), MAX_SEARCH_CANDIDATES)
            .await?;
        let mut scored: Vec<(f64, Patient)> = self
            .store
            .get_many(&ids)
            .await?
            .into_iter()
            .filter(|s| !s.is_merged())
            .filter_map(|s| {
                let score = criteria.score(&s.features, s.patient.gender)?;
                (score >= self.settings.search_min_score || !fuzzy).then_some((score, s.patient))
            })
            .collect();
        scored.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.1.patient_id.cmp(&b.1.patient_id))
        });
        let more_results_available = scored.len() > max_results.get();
        scored.truncate(max_results.get());
        Ok(SearchPatientsResponse {
            results: scored
                .into_iter()
                .map(|(score, patient)| SearchPatientsResult {
                    patient: Some(patient),
                    score,
                })
                .collect(),
            more_results_available,
            max_results_applied: max_results.get() as i32,
        })
    }
}
