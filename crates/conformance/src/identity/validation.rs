//! CreatePatient validation: one test per rule of the contract, each requiring INVALID_ARGUMENT
//! naming the field, and that nothing was written.

use carerecord_contracts::common::v1::{ContactPoint, Date, HumanName, Identifier};
use carerecord_contracts::identity::v1::{CreatePatientRequest, Patient};

use super::support::{
    LOCAL_SYSTEM, NHS_SYSTEM, bad_check_digit, check_digit, client, create_request, ensure_unheld,
    local_id, new_patient, nhs_number,
};
use crate::harness::Case;
use crate::refusal::Field::{Is, Under};
use crate::refusal::{Field, refused};

type Mutate = fn(&mut CreatePatientRequest);

fn p(r: &mut CreatePatientRequest) -> &mut Patient {
    r.patient.get_or_insert_with(Default::default)
}

fn identifier(r: &mut CreatePatientRequest, system: &str, value: &str) {
    p(r).identifiers = vec![Identifier {
        system: system.into(),
        value: value.into(),
    }];
}

fn birth(r: &mut CreatePatientRequest, year: i32, month: i32, day: i32) {
    p(r).birth_date = Some(Date { year, month, day });
}

/// (id, what is refused, mutation of a valid request, field named)
const RULES: &[(&str, &str, Mutate, Field)] = &[
    (
        "ID-VAL-001",
        "request_id missing",
        |r| r.request_id.clear(),
        Is("request_id"),
    ),
    (
        "ID-VAL-002",
        "request_id not a UUID",
        |r| r.request_id = "1".into(),
        Is("request_id"),
    ),
    (
        "ID-VAL-003",
        "requester missing",
        |r| r.requester = None,
        Under("requester"),
    ),
    (
        "ID-VAL-004",
        "requester without user_id",
        |r| {
            if let Some(q) = r.requester.as_mut() {
                q.user_id.clear()
            }
        },
        Under("requester"),
    ),
    (
        "ID-VAL-005",
        "an NHS number failing the modulus-11 check",
        |r| p(r).nhs_number = bad_check_digit(),
        Is("patient.nhs_number"),
    ),
    (
        "ID-VAL-006",
        "an NHS number of nine digits",
        |r| p(r).nhs_number = "999123456".into(),
        Is("patient.nhs_number"),
    ),
    (
        "ID-VAL-007",
        "an NHS number with a letter",
        |r| p(r).nhs_number = "99912345A7".into(),
        Is("patient.nhs_number"),
    ),
    (
        "ID-VAL-008",
        "no name",
        |r| p(r).names.clear(),
        Under("patient.names"),
    ),
    (
        "ID-VAL-009",
        "no name with a family or a given name (only an honorific)",
        |r| {
            p(r).names = vec![HumanName {
                prefixes: vec!["Dr".into()],
                ..Default::default()
            }]
        },
        Under("patient.names"),
    ),
    (
        "ID-VAL-010",
        "an identifier of the NHS number system",
        |r| identifier(r, NHS_SYSTEM, &nhs_number()),
        Is("patient.identifiers[0].system"),
    ),
    (
        "ID-VAL-011",
        "an identifier system that is not an absolute URI",
        |r| identifier(r, "mrn", "1"),
        Is("patient.identifiers[0].system"),
    ),
    (
        "ID-VAL-012",
        "an identifier value that is only white space",
        |r| identifier(r, LOCAL_SYSTEM, "  "),
        Is("patient.identifiers[0].value"),
    ),
    (
        "ID-VAL-013",
        "the same identifier twice",
        |r| {
            let id = local_id();
            p(r).identifiers = vec![id.clone(), id];
        },
        Under("patient.identifiers"),
    ),
    (
        "ID-VAL-014",
        "a birth date with a day but no month",
        |r| birth(r, 1984, 0, 17),
        Under("patient.birth_date"),
    ),
    (
        "ID-VAL-015",
        "a birth date that is not a calendar date (30 February)",
        |r| birth(r, 1984, 2, 30),
        Under("patient.birth_date"),
    ),
    (
        "ID-VAL-016",
        "a birth date in the future",
        |r| birth(r, 9999, 1, 1),
        Under("patient.birth_date"),
    ),
    (
        "ID-VAL-017",
        "a death date before the birth date",
        |r| {
            p(r).deceased_date = Some(Date {
                year: 1980,
                month: 1,
                day: 1,
            })
        },
        Under("patient.deceased_date"),
    ),
    (
        "ID-VAL-018",
        "a telecom without a value",
        |r| p(r).telecoms = vec![ContactPoint::default()],
        Under("patient.telecoms[0]"),
    ),
    (
        "ID-VAL-019",
        "more than 50 identifiers",
        |r| p(r).identifiers = (0..51).map(|_| local_id()).collect(),
        Under("patient.identifiers"),
    ),
    (
        "ID-VAL-020",
        "a string over 256 characters",
        |r| {
            if let Some(n) = p(r).names.first_mut() {
                n.family = "F".repeat(257)
            }
        },
        Is("patient.names[0].family"),
    ),
    (
        "ID-VAL-021",
        "more than 20 names",
        |r| {
            let n = p(r).names[0].clone();
            p(r).names = vec![n; 21];
        },
        Under("patient.names"),
    ),
];

/// Whether `nhs` is a valid NHS number (ten digits, right check digit): only then could a
/// refused create have registered a patient holding it.
fn is_valid_nhs_number(nhs: &str) -> bool {
    let digits: Vec<u8> = nhs.bytes().map(|b| b.wrapping_sub(b'0')).collect();
    digits.len() == 10
        && digits.iter().all(|d| *d <= 9)
        && check_digit(&digits[..9]) == Some(digits[9])
}

pub(super) fn cases() -> Vec<Case> {
    RULES
        .iter()
        .map(|&(id, what, mutate, field)| {
            let title = format!(
                "CreatePatient refuses {what}: INVALID_ARGUMENT naming `{}`, nothing written",
                field.path()
            );
            Case::new(id, title, move |ctx| async move {
                let mut request = create_request(new_patient());
                mutate(&mut request);
                let nhs = request
                    .patient
                    .as_ref()
                    .map(|p| p.nhs_number.clone())
                    .unwrap_or_default();
                refused(
                    client(&ctx).create_patient(request).await,
                    &field.refusal(),
                    &format!("CreatePatient({what})"),
                )?;
                if is_valid_nhs_number(&nhs) {
                    let written =
                        format!("a refused create wrote a patient holding NHS number {nhs}");
                    ensure_unheld(&ctx, &nhs, &written).await?;
                }
                Ok(())
            })
        })
        .collect()
}
