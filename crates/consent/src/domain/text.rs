//! The rule for text in every request: no NUL character (U+0000). PostgreSQL cannot store it in
//! text and SQLite can, so the service refuses it before anything else, naming each field that
//! holds one, and both backends answer the same.

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1 as pb;
use carerecord_platform::errors::Violations;

/// What a field holding NUL is told.
pub const NUL_REFUSED: &str = "must not contain the NUL character (U+0000)";

/// The most characters of a client's value an error description quotes.
pub const MAX_QUOTED_CHARS: usize = 32;

/// `raw` quoted for an error description, cut to [`MAX_QUOTED_CHARS`] characters (saying how
/// long it was when cut), so that an error never echoes a long input.
pub fn quoted(raw: &str) -> String {
    let length = raw.chars().count();
    if length <= MAX_QUOTED_CHARS {
        return format!("{raw:?}");
    }
    let start: String = raw.chars().take(MAX_QUOTED_CHARS).collect();
    format!("{start:?}… ({length} characters)")
}

/// A request, or a part of one, whose text fields can be checked for NUL.
pub trait Texts {
    /// Records a violation for each text field under `path` (empty for the request itself) that
    /// holds NUL.
    fn find_nul(&self, path: &str, v: &mut Violations);
}

/// The violations for the NUL characters in `request`: empty when there are none.
pub fn nul_violations(request: &impl Texts) -> Violations {
    let mut v = Violations::new();
    request.find_nul("", &mut v);
    v
}

fn field(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn text(path: &str, name: &str, value: &str, v: &mut Violations) {
    if value.contains('\0') {
        v.add(field(path, name), NUL_REFUSED);
    }
}

fn texts(path: &str, name: &str, values: &[String], v: &mut Violations) {
    for (i, value) in values.iter().enumerate() {
        if value.contains('\0') {
            v.add(format!("{}[{i}]", field(path, name)), NUL_REFUSED);
        }
    }
}

fn part(path: &str, name: &str, value: Option<&impl Texts>, v: &mut Violations) {
    if let Some(value) = value {
        value.find_nul(&field(path, name), v);
    }
}

fn parts(path: &str, name: &str, values: &[impl Texts], v: &mut Violations) {
    for (i, value) in values.iter().enumerate() {
        value.find_nul(&format!("{}[{i}]", field(path, name)), v);
    }
}

impl Texts for Requester {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        text(path, "user_id", &self.user_id, v);
        text(
            path,
            "organisation_ods_code",
            &self.organisation_ods_code,
            v,
        );
        text(path, "role_code", &self.role_code, v);
        text(path, "display_name", &self.display_name, v);
    }
}

impl Texts for pb::ProvisionActor {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        text(
            path,
            "organisation_ods_code",
            &self.organisation_ods_code,
            v,
        );
        text(path, "role_code", &self.role_code, v);
        text(path, "user_id", &self.user_id, v);
    }
}

impl Texts for pb::Provision {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        parts(path, "actors", &self.actors, v);
        texts(path, "purposes", &self.purposes, v);
        texts(path, "data_classes", &self.data_classes, v);
        texts(path, "study_ids", &self.study_ids, v);
        parts(path, "provisions", &self.provisions, v);
    }
}

impl Texts for pb::ConsentDirective {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        text(path, "directive_id", &self.directive_id, v);
        text(path, "patient_id", &self.patient_id, v);
        texts(path, "scope_purposes", &self.scope_purposes, v);
        parts(path, "provisions", &self.provisions, v);
        text(path, "grantor_display", &self.grantor_display, v);
        text(path, "policy_basis", &self.policy_basis, v);
        text(path, "policy_text", &self.policy_text, v);
        part(path, "recorded_by", self.recorded_by.as_ref(), v);
        part(path, "updated_by", self.updated_by.as_ref(), v);
        text(path, "revocation_reason", &self.revocation_reason, v);
        text(path, "etag", &self.etag, v);
    }
}

impl Texts for pb::CreateConsentDirectiveRequest {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        text(path, "request_id", &self.request_id, v);
        part(path, "directive", self.directive.as_ref(), v);
        part(path, "requester", self.requester.as_ref(), v);
    }
}

impl Texts for pb::GetConsentDirectiveRequest {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        text(path, "directive_id", &self.directive_id, v);
    }
}

impl Texts for pb::ListConsentDirectivesRequest {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        text(path, "patient_id", &self.patient_id, v);
        text(path, "page_token", &self.page_token, v);
    }
}

impl Texts for pb::UpdateConsentDirectiveRequest {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        part(path, "directive", self.directive.as_ref(), v);
        if let Some(mask) = &self.update_mask {
            texts(&field(path, "update_mask"), "paths", &mask.paths, v);
        }
        text(path, "etag", &self.etag, v);
        part(path, "requester", self.requester.as_ref(), v);
    }
}

impl Texts for pb::RevokeConsentDirectiveRequest {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        text(path, "directive_id", &self.directive_id, v);
        text(path, "etag", &self.etag, v);
        text(path, "reason", &self.reason, v);
        part(path, "requester", self.requester.as_ref(), v);
    }
}

impl Texts for pb::ListConsentDirectiveVersionsRequest {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        text(path, "directive_id", &self.directive_id, v);
        text(path, "page_token", &self.page_token, v);
    }
}

impl Texts for pb::GetNationalDataOptOutRequest {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        text(path, "patient_id", &self.patient_id, v);
    }
}

impl Texts for pb::SetNationalDataOptOutRequest {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        text(path, "patient_id", &self.patient_id, v);
        text(path, "etag", &self.etag, v);
        part(path, "requester", self.requester.as_ref(), v);
        text(path, "source", &self.source, v);
    }
}

impl Texts for pb::RecordNationalDataOptOutCheckRequest {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        texts(path, "checked_patient_ids", &self.checked_patient_ids, v);
        texts(
            path,
            "not_opted_out_patient_ids",
            &self.not_opted_out_patient_ids,
            v,
        );
        text(path, "source", &self.source, v);
        part(path, "requester", self.requester.as_ref(), v);
    }
}

impl Texts for pb::DecideRequest {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        text(path, "patient_id", &self.patient_id, v);
        part(path, "requester", self.requester.as_ref(), v);
        text(path, "purpose_of_use", &self.purpose_of_use, v);
        texts(path, "data_classes", &self.data_classes, v);
        text(path, "study_id", &self.study_id, v);
        text(path, "break_glass_reason", &self.break_glass_reason, v);
    }
}

impl Texts for pb::BatchDecideRequest {
    fn find_nul(&self, path: &str, v: &mut Violations) {
        texts(path, "patient_ids", &self.patient_ids, v);
        part(path, "requester", self.requester.as_ref(), v);
        text(path, "purpose_of_use", &self.purpose_of_use, v);
        texts(path, "data_classes", &self.data_classes, v);
        text(path, "study_id", &self.study_id, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nul_is_named_by_its_path() {
        let request = pb::CreateConsentDirectiveRequest {
            request_id: "id\0".into(),
            directive: Some(pb::ConsentDirective {
                policy_text: "ok".into(),
                grantor_display: "\0".into(),
                provisions: vec![pb::Provision {
                    provisions: vec![pb::Provision {
                        actors: vec![
                            pb::ProvisionActor::default(),
                            pb::ProvisionActor {
                                user_id: "a\0b".into(),
                                ..Default::default()
                            },
                        ],
                        study_ids: vec!["x".into(), "\0".into()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            requester: Some(Requester {
                display_name: "Dr\0".into(),
                ..Default::default()
            }),
        };
        let v = nul_violations(&request);
        let fields: Vec<&str> = v.iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "request_id",
                "directive.provisions[0].provisions[0].actors[1].user_id",
                "directive.provisions[0].provisions[0].study_ids[1]",
                "directive.grantor_display",
                "requester.display_name",
            ]
        );
        assert!(v.iter().all(|(_, d)| d == NUL_REFUSED));
        assert!(nul_violations(&pb::DecideRequest::default()).is_empty());
    }

    #[test]
    fn quoted_values_are_short() {
        assert_eq!(quoted("HRESCH"), "\"HRESCH\"");
        let long = quoted(&"é".repeat(10_000));
        assert!(long.chars().count() < 60, "{long}");
        assert!(long.ends_with("… (10000 characters)"));
    }
}
