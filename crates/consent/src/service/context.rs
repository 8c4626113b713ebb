//! The request context Decide and BatchDecide share: who asks, for what purpose, under which legal
//! basis, about which data.

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1 as pb;
use carerecord_platform::errors::Violations;

use crate::domain::codes::{DataClass, LegalBasis, Purpose};
use crate::domain::decide::Context;
use crate::domain::text::quoted;
use crate::domain::time::Instant;
use crate::domain::validate::{
    self, MAX_REASON_CHARS, MAX_STUDY_ID_CHARS, char_count, check_timestamp,
    validate_decision_requester,
};

/// The fields of Decide and BatchDecide that make the request context.
pub(super) struct ContextFields<'a> {
    requester: Option<Requester>,
    purpose_of_use: &'a str,
    data_classes: &'a [String],
    time: Option<&'a prost_types::Timestamp>,
    legal_basis: i32,
    study_id: &'a str,
    /// `None` in a batch, which has no break-glass field.
    break_glass_reason: Option<&'a str>,
    batch: bool,
}

/// The context fields of `$req`, a request message that names them as Decide does (the two
/// generated messages share no type).
macro_rules! context_fields {
    ($req:expr, $break_glass_reason:expr, $batch:expr) => {
        ContextFields {
            requester: $req.requester.clone(),
            purpose_of_use: &$req.purpose_of_use,
            data_classes: &$req.data_classes,
            time: $req.time.as_ref(),
            legal_basis: $req.legal_basis,
            study_id: &$req.study_id,
            break_glass_reason: $break_glass_reason,
            batch: $batch,
        }
    };
}

impl<'a> ContextFields<'a> {
    pub(super) fn of_decide(req: &'a pb::DecideRequest) -> Self {
        context_fields!(req, Some(&req.break_glass_reason), false)
    }

    pub(super) fn of_batch(req: &'a pb::BatchDecideRequest) -> Self {
        context_fields!(req, None, true)
    }
}

/// The request context, or `None` with the violations recorded in `v`.
pub(super) fn parse_context(
    fields: ContextFields<'_>,
    now: Instant,
    v: &mut Violations,
) -> Option<Context> {
    let mut requester = fields.requester;
    let patient_self =
        validate_decision_requester(requester.as_mut(), Purpose::parse(fields.purpose_of_use), v);
    let purpose = if fields.purpose_of_use.is_empty() {
        v.add("purpose_of_use", "is required");
        None
    } else {
        let p = Purpose::parse(fields.purpose_of_use);
        match p {
            None => v.add(
                "purpose_of_use",
                format!("unknown purpose of use {}", quoted(fields.purpose_of_use)),
            ),
            Some(Purpose::Etreat) if fields.batch => v.add(
                "purpose_of_use",
                "ETREAT (break-glass) is decided per patient with Decide, never in a batch",
            ),
            Some(_) => {}
        }
        p
    };
    let mut classes = Vec::new();
    for (i, code) in fields.data_classes.iter().enumerate() {
        match DataClass::parse(code) {
            Some(c) => classes.push(c),
            None => v.add(
                format!("data_classes[{i}]"),
                validate::unknown_data_class(code),
            ),
        }
    }
    if classes.is_empty() {
        classes = DataClass::ALL.to_vec();
    }
    classes.sort_unstable();
    classes.dedup();
    let time = check_timestamp(fields.time, "time", v).unwrap_or(now);
    let legal_basis = LegalBasis::from_proto(fields.legal_basis);
    match (legal_basis, purpose) {
        (None, _) => v.add("legal_basis", "is not a known legal basis"),
        (Some(LegalBasis::DirectCare), Some(p))
            if !matches!(p, Purpose::Treat | Purpose::Etreat) =>
        {
            v.add(
                "legal_basis",
                "DIRECT_CARE is only valid with purpose TREAT or ETREAT",
            )
        }
        (Some(LegalBasis::PublicHealth), Some(p)) if p != Purpose::Pubhlth => v.add(
            "legal_basis",
            "PUBLIC_HEALTH is only valid with purpose PUBHLTH",
        ),
        (Some(LegalBasis::Section251Support), Some(p))
            if !matches!(p, Purpose::Hresch | Purpose::Hoperat | Purpose::Hpaymt) =>
        {
            v.add(
                "legal_basis",
                "SECTION_251_SUPPORT is only valid with purpose HRESCH, HOPERAT or HPAYMT",
            )
        }
        (
            Some(basis @ (LegalBasis::ExplicitConsent | LegalBasis::Section251Support)),
            Some(Purpose::Hresch),
        ) if fields.study_id.is_empty() => v.add(
            "study_id",
            format!(
                "is required for research (HRESCH) under {}",
                basis.policy_name()
            ),
        ),
        _ => {}
    }
    if char_count(fields.study_id) > MAX_STUDY_ID_CHARS {
        v.add(
            "study_id",
            format!("must be at most {MAX_STUDY_ID_CHARS} characters"),
        );
    }
    let break_glass = if let Some(reason) = fields.break_glass_reason {
        let etreat = purpose == Some(Purpose::Etreat);
        if etreat && reason.trim().is_empty() {
            v.add("break_glass_reason", "is required with purpose ETREAT");
        } else if !etreat && !reason.is_empty() {
            v.add("break_glass_reason", "is only allowed with purpose ETREAT");
        } else if char_count(reason) > MAX_REASON_CHARS {
            v.add(
                "break_glass_reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            );
        }
        etreat
    } else {
        false
    };
    let requester = requester?;
    Some(Context {
        time,
        user_id: requester.user_id,
        organisation_ods_code: requester.organisation_ods_code,
        role_code: requester.role_code,
        requester_is_patient: patient_self,
        purpose: purpose?,
        classes,
        legal_basis: legal_basis?,
        study_id: (!fields.study_id.is_empty()).then(|| fields.study_id.to_owned()),
        break_glass,
    })
    .filter(|_| v.is_empty())
}
