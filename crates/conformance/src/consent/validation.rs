//! CreateConsentDirective validation: one test per rule of the contract, each requiring
//! INVALID_ARGUMENT naming the field, and that nothing was written.

use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, CreateConsentDirectiveRequest,
    Provision, ProvisionActor,
};

use super::support::{
    actor, classes, client, create_request, directive, directives_of, period, strings, year,
};
use crate::harness::{Case, ensure};
use crate::refusal::Field::{Is, Under};
use crate::refusal::{Field, refused};

type Mutate = fn(&mut CreateConsentDirectiveRequest);

fn d(r: &mut CreateConsentDirectiveRequest) -> &mut ConsentDirective {
    r.directive.get_or_insert_with(Default::default)
}

fn p0(r: &mut CreateConsentDirectiveRequest) -> &mut Provision {
    let dir = d(r);
    if dir.provisions.is_empty() {
        dir.provisions.push(classes(&["hiv"]));
    }
    &mut dir.provisions[0]
}

/// (id, what is refused, mutation of a valid request, field named)
const RULES: &[(&str, &str, Mutate, Field)] = &[
    (
        "CON-VAL-001",
        "request_id missing",
        |r| r.request_id.clear(),
        Is("request_id"),
    ),
    (
        "CON-VAL-002",
        "request_id not a UUID",
        |r| r.request_id = "x".into(),
        Is("request_id"),
    ),
    (
        "CON-VAL-003",
        "requester missing",
        |r| r.requester = None,
        Is("requester"),
    ),
    (
        "CON-VAL-004",
        "requester without organisation_ods_code",
        |r| {
            if let Some(q) = r.requester.as_mut() {
                q.organisation_ods_code.clear()
            }
        },
        Under("requester"),
    ),
    (
        "CON-VAL-005",
        "directive missing",
        |r| r.directive = None,
        Under("directive"),
    ),
    (
        "CON-VAL-006",
        "directive.patient_id not a UUID",
        |r| d(r).patient_id = "9434765919".into(),
        Is("directive.patient_id"),
    ),
    (
        "CON-VAL-007",
        "directive.status UNSPECIFIED",
        |r| d(r).status = 0,
        Is("directive.status"),
    ),
    (
        "CON-VAL-008",
        "directive.status INACTIVE on create",
        |r| d(r).status = ConsentDirectiveStatus::Inactive as i32,
        Is("directive.status"),
    ),
    (
        "CON-VAL-009",
        "directive.decision UNSPECIFIED",
        |r| d(r).decision = 0,
        Is("directive.decision"),
    ),
    (
        "CON-VAL-010",
        "an unknown purpose code (codes are case-sensitive)",
        |r| d(r).scope_purposes = strings(&["HRESCH", "treat"]),
        Is("directive.scope_purposes[1]"),
    ),
    (
        "CON-VAL-011",
        "a duplicate purpose",
        |r| d(r).scope_purposes = strings(&["HRESCH", "HRESCH"]),
        Under("directive.scope_purposes"),
    ),
    (
        "CON-VAL-012",
        "a period whose end is not after its start",
        |r| d(r).period = period(Some(year(2024)), Some(year(2024))),
        Under("directive.period"),
    ),
    (
        "CON-VAL-013",
        "date_time missing",
        |r| d(r).date_time = None,
        Is("directive.date_time"),
    ),
    (
        "CON-VAL-014",
        "date_time more than 5 minutes in the future",
        |r| d(r).date_time = Some(crate::records::seconds_from_now(3600)),
        Is("directive.date_time"),
    ),
    (
        "CON-VAL-015",
        "a provision with no criteria",
        |r| {
            d(r).provisions = vec![Provision {
                provisions: vec![classes(&["hiv"])],
                ..Default::default()
            }]
        },
        Under("directive.provisions[0]"),
    ),
    (
        "CON-VAL-016",
        "an unknown data class in a provision",
        |r| p0(r).data_classes = strings(&["hiv", "confidential"]),
        Is("directive.provisions[0].data_classes[1]"),
    ),
    (
        "CON-VAL-017",
        "an unknown purpose in a nested provision",
        |r| {
            p0(r).provisions = vec![Provision {
                purposes: strings(&["RESEARCH"]),
                ..Default::default()
            }]
        },
        Is("directive.provisions[0].provisions[0].purposes[0]"),
    ),
    (
        "CON-VAL-018",
        "an actor with no field set",
        |r| p0(r).actors = vec![actor("RXA", ""), ProvisionActor::default()],
        Under("directive.provisions[0].actors[1]"),
    ),
    (
        "CON-VAL-019",
        "an actor role code that is not an R-code",
        |r| p0(r).actors = vec![actor("", "S8000:G8000:R8000")],
        Under("directive.provisions[0].actors[0]"),
    ),
    (
        "CON-VAL-020",
        "an actor ODS code with a character other than letters and digits",
        |r| p0(r).actors = vec![actor("RX-A", "")],
        Under("directive.provisions[0].actors[0]"),
    ),
    (
        "CON-VAL-021",
        "provisions nested deeper than 5",
        |r| {
            let mut p = classes(&["hiv"]);
            for _ in 0..5 {
                p = Provision {
                    provisions: vec![p],
                    ..classes(&["hiv"])
                };
            }
            d(r).provisions = vec![p];
        },
        Under("directive.provisions"),
    ),
    (
        "CON-VAL-022",
        "more than 200 provisions in total",
        |r| d(r).provisions = (0..201).map(|_| classes(&["hiv"])).collect(),
        Under("directive.provisions"),
    ),
    (
        "CON-VAL-023",
        "policy_basis not an absolute URI",
        |r| d(r).policy_basis = "protocol.pdf".into(),
        Is("directive.policy_basis"),
    ),
    (
        "CON-VAL-024",
        "grantor_display over 200 characters",
        |r| d(r).grantor_display = "g".repeat(201),
        Is("directive.grantor_display"),
    ),
    (
        "CON-VAL-025",
        "an empty study id",
        |r| p0(r).study_ids = vec![String::new()],
        Under("directive.provisions[0].study_ids"),
    ),
    (
        "CON-VAL-026",
        "a study id over 128 characters",
        |r| p0(r).study_ids = vec!["s".repeat(129)],
        Under("directive.provisions[0].study_ids"),
    ),
    (
        "CON-VAL-027",
        "a provision data_period whose end is not after its start",
        |r| p0(r).data_period = period(Some(year(2021)), Some(year(2020))),
        Under("directive.provisions[0].data_period"),
    ),
];

/// The last rules, which differ only in the policy_basis sent (each refused naming
/// `directive.policy_basis`): (id, what is refused, the policy_basis)
const POLICY_BASES: &[(&str, &str, &str)] = &[
    (
        "CON-VAL-028",
        "a javascript: policy_basis",
        "javascript:alert(1)",
    ),
    (
        "CON-VAL-029",
        "a plain http: policy_basis",
        "http://example.org/p",
    ),
    ("CON-VAL-030", "a data: policy_basis", "data:text/html,x"),
    (
        "CON-VAL-031",
        "a file: policy_basis",
        "file:///etc/consent.pdf",
    ),
    (
        "CON-VAL-032",
        "an https policy_basis without a host",
        "https:///protocol",
    ),
];

pub(super) fn cases() -> Vec<Case> {
    let rules = RULES
        .iter()
        .map(|&(id, what, mutate, field)| rule_case(id, what, mutate, field));
    let bases = POLICY_BASES.iter().map(|&(id, what, basis)| {
        let mutate = move |r: &mut CreateConsentDirectiveRequest| d(r).policy_basis = basis.into();
        rule_case(id, what, mutate, Is("directive.policy_basis"))
    });
    rules.chain(bases).collect()
}

/// The case of one rule: a valid create changed by `mutate` is refused naming `field`, and
/// writes nothing.
fn rule_case(
    id: &'static str,
    what: &'static str,
    mutate: impl Fn(&mut CreateConsentDirectiveRequest) + Copy + Send + Sync + 'static,
    field: Field,
) -> Case {
    let title = format!(
        "CreateConsentDirective refuses {what}: INVALID_ARGUMENT naming `{}`",
        field.path()
    );
    Case::new(id, title, move |ctx| async move {
        let pid = ctx.new_patient();
        let mut request = create_request(directive(
            &pid,
            ConsentDecision::Deny,
            vec![classes(&["hiv"])],
        ));
        mutate(&mut request);
        refused(
            client(&ctx).create_consent_directive(request).await,
            &field.refusal(),
            &format!("CreateConsentDirective({what})"),
        )?;
        ensure!(
            directives_of(&ctx, &pid).await?.is_empty(),
            "a refused create wrote a directive"
        );
        Ok(())
    })
}
