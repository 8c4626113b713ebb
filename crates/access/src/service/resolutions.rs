//! Patient resolutions kept between calls ([`crate::cache`]): a reference by patient id, NHS
//! number or local identifier resolves from memory once a check of identity's change listing,
//! begun after the call arrived, has dropped every resolution a change touched. Demographic
//! references are matched afresh every time (a match is not a lookup), and a reference that
//! resolves to nobody is never kept (a number may be assigned at any moment).

use carerecord_contracts::identity::v1 as identity;

use super::parse::{NHS_NUMBER_SYSTEM, Reference};
use super::patients::Resolved;
use super::{AccessService, restricted};
use crate::cache::{Changes, Checked, LISTED_PER_CHECK, ValidatedCache};
use crate::error::Error;

/// What a kept resolution is found by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum ResolutionKey {
    PatientId(String),
    /// (system, value); an NHS number under its system.
    Identifier(String, String),
}

pub(super) type Resolutions = ValidatedCache<ResolutionKey, Resolved>;

impl ResolutionKey {
    fn of(reference: &Reference) -> Option<ResolutionKey> {
        match reference {
            Reference::PatientId(id) => Some(ResolutionKey::PatientId(id.to_ascii_lowercase())),
            Reference::Nhs(number) => Some(ResolutionKey::Identifier(
                NHS_NUMBER_SYSTEM.to_owned(),
                number.clone(),
            )),
            Reference::Identifier(system, value) => {
                Some(ResolutionKey::Identifier(system.clone(), value.clone()))
            }
            Reference::Demographics(_) => None,
        }
    }
}

/// The tag under which a change to `system|value`'s holder drops resolutions of it.
fn identifier_tag(system: &str, value: &str) -> String {
    format!("{system}|{value}")
}

/// What a change to any of drops `resolved` (reached from `key`): the survivor, the patient the
/// reference named if it was merged, and the identifier itself.
fn tags(key: &ResolutionKey, resolved: &Resolved) -> Vec<String> {
    let mut tags = vec![resolved.id().to_owned()];
    if !resolved.merged_from.is_empty() {
        tags.push(resolved.merged_from.clone());
    }
    match key {
        ResolutionKey::PatientId(id) if !tags.contains(id) => tags.push(id.clone()),
        ResolutionKey::PatientId(_) => {}
        ResolutionKey::Identifier(system, value) => tags.push(identifier_tag(system, value)),
    }
    tags
}

/// What identity's listing says changed: every patient written, the other patient of a merge or
/// unmerge, and the identifiers the written patients now hold.
fn changed(response: identity::ListPatientChangesResponse) -> Changes {
    let mut tags = Vec::with_capacity(response.changes.len() * 2);
    for change in response.changes {
        tags.push(change.patient_id);
        if !change.related_patient_id.is_empty() {
            tags.push(change.related_patient_id);
        }
        tags.extend(
            change
                .identifiers
                .iter()
                .map(|id| identifier_tag(&id.system, &id.value)),
        );
    }
    Changes {
        tags,
        next_cursor: response.next_cursor,
        more: response.more,
    }
}

impl AccessService {
    /// Resolves a reference to the surviving patient: from memory when a check allows it, else
    /// through identity (see [`AccessService::resolve_upstream`]).
    pub(super) async fn resolve(&self, reference: &Reference) -> Result<Resolved, Error> {
        let Some(key) = ResolutionKey::of(reference) else {
            return self.resolve_upstream(reference).await;
        };
        let resolutions = &self.inner.resolutions;
        let checked = resolutions
            .validate(|after_cursor| self.identity_changes(after_cursor))
            .await;
        if let Some(resolved) = resolutions.get(checked, &key) {
            // As resolving it afresh would.
            restricted::resolved(&resolved.patient);
            return Ok(resolved);
        }
        let resolved = self.resolve_upstream(reference).await?;
        if checked != Checked::Bypass {
            let tags = tags(&key, &resolved);
            resolutions.insert(checked, key, resolved.clone(), tags);
        }
        Ok(resolved)
    }

    async fn identity_changes(&self, after_cursor: String) -> Result<Changes, tonic::Status> {
        let request = identity::ListPatientChangesRequest {
            after_cursor,
            page_size: LISTED_PER_CHECK,
        };
        let listed = self.inner.upstream.list_patient_changes(request).await;
        listed.map(changed).map_err(|failed| failed.status)
    }
}

#[cfg(test)]
mod tests {
    use carerecord_contracts::common::v1::Identifier;

    use super::*;

    fn resolved(id: &str, merged_from: &str) -> Resolved {
        Resolved {
            patient: identity::Patient {
                patient_id: id.into(),
                ..Default::default()
            },
            merged_from: merged_from.into(),
        }
    }

    #[test]
    fn a_resolution_is_tagged_with_every_patient_and_identifier_it_depends_on() {
        let key = ResolutionKey::of(&Reference::Nhs("9434765919".into())).unwrap();
        assert_eq!(
            tags(&key, &resolved("b", "a")),
            ["b", "a", "https://fhir.nhs.uk/Id/nhs-number|9434765919"]
        );
        let key = ResolutionKey::of(&Reference::PatientId("A".into())).unwrap();
        assert_eq!(tags(&key, &resolved("b", "a")), ["b", "a"]);
        let key = ResolutionKey::of(&Reference::PatientId("C".into())).unwrap();
        assert_eq!(tags(&key, &resolved("b", "a")), ["b", "a", "c"]);
    }

    #[test]
    fn a_listed_change_names_its_patients_and_their_identifiers() {
        let response = identity::ListPatientChangesResponse {
            changes: vec![identity::PatientChange {
                sequence: 4,
                patient_id: "a".into(),
                related_patient_id: "b".into(),
                identifiers: vec![Identifier {
                    system: NHS_NUMBER_SYSTEM.into(),
                    value: "9434765919".into(),
                }],
                change_type: 0,
            }],
            next_cursor: "next".into(),
            more: false,
        };
        let changes = changed(response);
        assert_eq!(
            changes.tags,
            ["a", "b", "https://fhir.nhs.uk/Id/nhs-number|9434765919"]
        );
        assert_eq!(changes.next_cursor, "next");
    }
}
