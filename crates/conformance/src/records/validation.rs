//! CreateRecord validation: one test per rule of the contract, each requiring INVALID_ARGUMENT
//! with a google.rpc.BadRequest violation of the named field, and that nothing was written.

use carerecord_contracts::records::v1::CreateRecordRequest;
use tonic::Code;

use super::support::{
    MAX_PAYLOAD_LIMIT, client, create_request, ensure_nothing_written, new_record, observation,
    payload_with, seconds_from_now,
};
use crate::harness::{Case, Ctx, TestResult, ensure, err, has_violation};
use crate::refusal::{Refusal, refused};

type Mutate = fn(&mut CreateRecordRequest, &str);

struct Rule {
    id: &'static str,
    title: &'static str,
    mutate: Mutate,
    field: &'static str,
    /// The description must begin with this JSON Pointer (payload reference rules).
    pointer: Option<&'static str>,
}

fn record(req: &mut CreateRecordRequest) -> &mut carerecord_contracts::records::v1::Record {
    req.record.get_or_insert_with(Default::default)
}

fn set_payload(req: &mut CreateRecordRequest, payload: Vec<u8>) {
    record(req).payload = payload;
}

fn with_subject(req: &mut CreateRecordRequest, subject: serde_json::Value) {
    let payload = serde_json::json!({"resourceType": "Observation", "subject": subject});
    set_payload(req, payload.to_string().into_bytes());
}

/// A record of `resource_type` whose payload agrees with it, so that only the type is refused.
fn claim_type(req: &mut CreateRecordRequest, pid: &str, resource_type: &str) {
    record(req).resource_type = resource_type.into();
    let reference = format!("Patient/{pid}");
    set_payload(req, payload_with(resource_type, "subject", &reference));
}

const RULES: &[Rule] = &[
    Rule {
        id: "REC-VAL-001",
        title: "request_id missing",
        field: "request_id",
        pointer: None,
        mutate: |r, _| r.request_id.clear(),
    },
    Rule {
        id: "REC-VAL-002",
        title: "request_id not a UUID",
        field: "request_id",
        pointer: None,
        mutate: |r, _| r.request_id = "retry-1".into(),
    },
    Rule {
        id: "REC-VAL-003",
        title: "requester missing",
        field: "requester",
        pointer: None,
        mutate: |r, _| r.requester = None,
    },
    Rule {
        id: "REC-VAL-004",
        title: "record.patient_id missing",
        field: "record.patient_id",
        pointer: None,
        mutate: |r, _| record(r).patient_id.clear(),
    },
    Rule {
        id: "REC-VAL-005",
        title: "record.patient_id not a UUID",
        field: "record.patient_id",
        pointer: None,
        mutate: |r, _| record(r).patient_id = "9434765919".into(),
    },
    Rule {
        id: "REC-VAL-006",
        title: "record.patient_id the nil UUID",
        field: "record.patient_id",
        pointer: None,
        mutate: |r, _| record(r).patient_id = "00000000-0000-0000-0000-000000000000".into(),
    },
    Rule {
        id: "REC-VAL-007",
        title: "record.resource_type missing",
        field: "record.resource_type",
        pointer: None,
        mutate: |r, _| record(r).resource_type.clear(),
    },
    Rule {
        id: "REC-VAL-008",
        title: "record.resource_type `Patient` is refused",
        field: "record.resource_type",
        pointer: None,
        mutate: |r, pid| claim_type(r, pid, "Patient"),
    },
    Rule {
        id: "REC-VAL-009",
        title: "record.resource_type `Bundle` is refused",
        field: "record.resource_type",
        pointer: None,
        mutate: |r, pid| claim_type(r, pid, "Bundle"),
    },
    Rule {
        id: "REC-VAL-010",
        title: "record.resource_type not a FHIR R4 type name (case-sensitive: `observation`)",
        field: "record.resource_type",
        pointer: None,
        mutate: |r, pid| claim_type(r, pid, "observation"),
    },
    Rule {
        id: "REC-VAL-011",
        title: "record.resource_type not a FHIR R4 type name (`CarePathway`)",
        field: "record.resource_type",
        pointer: None,
        mutate: |r, pid| claim_type(r, pid, "CarePathway"),
    },
    Rule {
        id: "REC-VAL-012",
        title: "record.content_type other than application/fhir+json",
        field: "record.content_type",
        pointer: None,
        mutate: |r, _| record(r).content_type = "application/json".into(),
    },
    Rule {
        id: "REC-VAL-013",
        title: "record.content_type with parameters",
        field: "record.content_type",
        pointer: None,
        mutate: |r, _| record(r).content_type = "application/fhir+json; charset=utf-8".into(),
    },
    Rule {
        id: "REC-VAL-014",
        title: "record.payload empty",
        field: "record.payload",
        pointer: None,
        mutate: |r, _| record(r).payload.clear(),
    },
    Rule {
        id: "REC-VAL-015",
        title: "record.payload not JSON",
        field: "record.payload",
        pointer: None,
        mutate: |r, pid| {
            set_payload(r, format!("{{\"resourceType\":\"Observation\",\"subject\":{{\"reference\":\"Patient/{pid}\"}}").into_bytes())
        },
    },
    Rule {
        id: "REC-VAL-016",
        title: "record.payload with a UTF-8 byte order mark",
        field: "record.payload",
        pointer: None,
        mutate: |r, pid| {
            let mut p = vec![0xEF, 0xBB, 0xBF];
            p.extend(observation(pid));
            set_payload(r, p)
        },
    },
    Rule {
        id: "REC-VAL-017",
        title: "record.payload not valid UTF-8",
        field: "record.payload",
        pointer: None,
        mutate: |r, pid| {
            let mut p = format!("{{\"resourceType\":\"Observation\",\"subject\":{{\"reference\":\"Patient/{pid}\"}},\"note\":[{{\"text\":\"").into_bytes();
            p.extend([0xC3, 0x28]);
            p.extend(b"\"}]}");
            set_payload(r, p)
        },
    },
    Rule {
        id: "REC-VAL-018",
        title: "record.payload top-level value not an object",
        field: "record.payload",
        pointer: None,
        mutate: |r, pid| {
            let p = format!("[{}]", String::from_utf8_lossy(&observation(pid)));
            set_payload(r, p.into_bytes())
        },
    },
    Rule {
        id: "REC-VAL-019",
        title: "record.payload with a duplicate member name",
        field: "record.payload",
        pointer: None,
        mutate: |r, pid| {
            set_payload(r, format!("{{\"resourceType\":\"Observation\",\"status\":\"final\",\"status\":\"amended\",\"subject\":{{\"reference\":\"Patient/{pid}\"}}}}").into_bytes())
        },
    },
    Rule {
        id: "REC-VAL-020",
        title: "record.payload nested deeper than 64",
        field: "record.payload",
        pointer: None,
        mutate: |r, pid| {
            let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
            set_payload(r, format!("{{\"resourceType\":\"Observation\",\"subject\":{{\"reference\":\"Patient/{pid}\"}},\"extension\":{deep}}}").into_bytes())
        },
    },
    Rule {
        id: "REC-VAL-021",
        title: "record.payload over the largest configurable limit (3 MiB)",
        field: "record.payload",
        pointer: None,
        mutate: |r, pid| {
            let mut v: serde_json::Value =
                serde_json::from_slice(&observation(pid)).unwrap_or_default();
            v["note"] = serde_json::json!([{"text": "x".repeat(MAX_PAYLOAD_LIMIT)}]);
            set_payload(r, v.to_string().into_bytes())
        },
    },
    Rule {
        id: "REC-VAL-022",
        title: "payload resourceType different from record.resource_type",
        field: "record.payload",
        pointer: None,
        mutate: |r, pid| {
            set_payload(
                r,
                payload_with("Condition", "subject", &format!("Patient/{pid}")),
            )
        },
    },
    Rule {
        id: "REC-VAL-023",
        title: "payload without resourceType",
        field: "record.payload",
        pointer: None,
        mutate: |r, pid| {
            set_payload(
                r,
                serde_json::json!({"subject": {"reference": format!("Patient/{pid}")}})
                    .to_string()
                    .into_bytes(),
            )
        },
    },
    Rule {
        id: "REC-VAL-024",
        title: "payload with neither `subject` nor `patient`",
        field: "record.payload",
        pointer: None,
        mutate: |r, _| {
            set_payload(
                r,
                br#"{"resourceType":"Observation","status":"final"}"#.to_vec(),
            )
        },
    },
    Rule {
        id: "REC-VAL-025",
        title: "payload referencing another patient (description begins /subject/reference)",
        field: "record.payload",
        pointer: Some("/subject/reference"),
        mutate: |r, _| {
            with_subject(
                r,
                serde_json::json!({"reference": format!("Patient/{}", uuid::Uuid::new_v4())}),
            )
        },
    },
    Rule {
        id: "REC-VAL-026",
        title: "payload referencing a Group",
        field: "record.payload",
        pointer: Some("/subject"),
        mutate: |r, pid| with_subject(r, serde_json::json!({"reference": format!("Group/{pid}")})),
    },
    Rule {
        id: "REC-VAL-027",
        title: "payload with a versioned patient reference",
        field: "record.payload",
        pointer: Some("/subject"),
        mutate: |r, pid| {
            with_subject(
                r,
                serde_json::json!({"reference": format!("Patient/{pid}/_history/1")}),
            )
        },
    },
    Rule {
        id: "REC-VAL-028",
        title: "payload with an identifier-only reference (by NHS number)",
        field: "record.payload",
        pointer: Some("/subject"),
        mutate: |r, _| {
            with_subject(
                r,
                serde_json::json!({"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}}),
            )
        },
    },
    Rule {
        id: "REC-VAL-029",
        title: "payload reference with `type` other than Patient",
        field: "record.payload",
        pointer: Some("/subject"),
        mutate: |r, pid| {
            with_subject(
                r,
                serde_json::json!({"reference": format!("Patient/{pid}"), "type": "Group"}),
            )
        },
    },
    Rule {
        id: "REC-VAL-030",
        title: "payload reference under a base URL the deployment cannot have configured",
        field: "record.payload",
        pointer: Some("/subject"),
        mutate: |r, pid| {
            with_subject(
                r,
                serde_json::json!({"reference": format!("https://unconfigured.invalid/R4/Patient/{pid}")}),
            )
        },
    },
    Rule {
        id: "REC-VAL-031",
        title: "payload where `patient` references another patient than `subject`",
        field: "record.payload",
        pointer: Some("/patient"),
        mutate: |r, pid| {
            set_payload(r, serde_json::json!({"resourceType": "Observation", "subject": {"reference": format!("Patient/{pid}")}, "patient": {"reference": format!("Patient/{}", uuid::Uuid::new_v4())}}).to_string().into_bytes())
        },
    },
    Rule {
        id: "REC-VAL-032",
        title: "record.data_classes with an unknown label (index reported)",
        field: "record.data_classes[1]",
        pointer: None,
        mutate: |r, _| record(r).data_classes = vec!["hiv".into(), "confidential".into()],
    },
    Rule {
        id: "REC-VAL-033",
        title: "record.authoring_organisation_ods_code missing",
        field: "record.authoring_organisation_ods_code",
        pointer: None,
        mutate: |r, _| record(r).authoring_organisation_ods_code.clear(),
    },
    Rule {
        id: "REC-VAL-034",
        title: "record.authoring_organisation_ods_code shorter than 3",
        field: "record.authoring_organisation_ods_code",
        pointer: None,
        mutate: |r, _| record(r).authoring_organisation_ods_code = "R8".into(),
    },
    Rule {
        id: "REC-VAL-035",
        title: "record.authoring_organisation_ods_code longer than 10",
        field: "record.authoring_organisation_ods_code",
        pointer: None,
        mutate: |r, _| record(r).authoring_organisation_ods_code = "RR8RR8RR8RR".into(),
    },
    Rule {
        id: "REC-VAL-036",
        title: "record.authoring_organisation_ods_code with a character other than letters and digits",
        field: "record.authoring_organisation_ods_code",
        pointer: None,
        mutate: |r, _| record(r).authoring_organisation_ods_code = "RR-8".into(),
    },
    Rule {
        id: "REC-VAL-037",
        title: "record.author longer than 256 characters",
        field: "record.author",
        pointer: None,
        mutate: |r, _| record(r).author = "a".repeat(257),
    },
    Rule {
        id: "REC-VAL-038",
        title: "record.source_system missing",
        field: "record.source_system",
        pointer: None,
        mutate: |r, _| record(r).source_system.clear(),
    },
    Rule {
        id: "REC-VAL-039",
        title: "record.source_system longer than 256 characters",
        field: "record.source_system",
        pointer: None,
        mutate: |r, _| record(r).source_system = "s".repeat(257),
    },
    Rule {
        id: "REC-VAL-040",
        title: "record.recorded_time more than 5 minutes in the future",
        field: "record.recorded_time",
        pointer: None,
        mutate: |r, _| record(r).recorded_time = Some(seconds_from_now(3600)),
    },
];

pub(super) fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = RULES
        .iter()
        .map(|rule| {
            Case::new(
                rule.id,
                format!(
                    "CreateRecord refuses {}: INVALID_ARGUMENT naming `{}`, nothing written",
                    rule.title, rule.field
                ),
                move |ctx| check_rule(ctx, rule),
            )
        })
        .collect();
    cases.push(Case::new(
        "REC-VAL-041",
        "CreateRecord reports every problem of a request: one field violation per invalid field",
        every_problem,
    ));
    cases.push(Case::new(
        "REC-VAL-042",
        "CreateRecord without a record -> INVALID_ARGUMENT naming `record` or a field of it",
        missing_record,
    ));
    cases
}

async fn check_rule(ctx: Ctx, rule: &'static Rule) -> TestResult {
    let pid = ctx.new_patient();
    let mut request = create_request(new_record(&pid));
    (rule.mutate)(&mut request, &pid);
    let status = err(
        client(&ctx).create_record(request).await,
        Code::InvalidArgument,
        &format!("CreateRecord({})", rule.title),
    )?;
    let description = has_violation(&status, rule.field)?;
    if let Some(pointer) = rule.pointer {
        ensure!(
            description.starts_with(pointer),
            "the violation's description must begin with the JSON Pointer {pointer}, got {description:?}"
        );
    }
    ensure_nothing_written(&ctx, &pid).await
}

async fn every_problem(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let mut request = create_request(new_record(&pid));
    request.request_id = "not-a-uuid".into();
    record(&mut request).source_system.clear();
    record(&mut request).data_classes = vec!["bogus".into()];
    refused(
        client(&ctx).create_record(request).await,
        &Refusal::invalid("request_id")
            .field("record.source_system")
            .field("record.data_classes[0]"),
        "CreateRecord(three invalid fields)",
    )?;
    ensure_nothing_written(&ctx, &pid).await
}

async fn missing_record(ctx: Ctx) -> TestResult {
    let mut request = create_request(new_record(&ctx.new_patient()));
    request.record = None;
    refused(
        client(&ctx).create_record(request).await,
        &Refusal::invalid_under("record"),
        "CreateRecord(no record)",
    )
    .map(|_| ())
}
