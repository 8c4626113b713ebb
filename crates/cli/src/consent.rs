//! `carerecord consent …`: patients' directives, the national data opt-out, and decisions.

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1::consent_service_client::ConsentServiceClient;
use std::path::PathBuf;

use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, CreateConsentDirectiveRequest,
    DecideRequest, Decision, DecisionOutcome, GetNationalDataOptOutRequest, LegalBasis,
    ListConsentDirectivesRequest, NationalDataOptOut, ObligationType, Provision, ProvisionActor,
    RecordNationalDataOptOutCheckRequest, RecordNationalDataOptOutCheckResponse,
    RevokeConsentDirectiveRequest, SetNationalDataOptOutRequest,
};
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use clap::{Args, Subcommand};

use crate::connect::{Endpoints, Operator, connect, new_request_id};
use crate::output::{Output, call_failed, print_fields, reply, timestamp};

mod opt_out_check;

use opt_out_check::{CheckFiles, MAX_CHECKED_PER_CALL, parse_check_time};

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Record that a patient withholds some data (by class, and optionally from some organisations,
    /// roles or purposes only), sharing everything else.
    Withhold {
        #[arg(long)]
        patient: String,
        #[command(flatten)]
        scope: ProvisionArgs,
    },
    /// Record that a patient refuses all sharing, optionally except with some organisations, roles or purposes.
    Dissent {
        #[arg(long)]
        patient: String,
        #[command(flatten)]
        except: ProvisionArgs,
    },
    /// List a patient's directives.
    List {
        #[arg(long)]
        patient: String,
    },
    /// Revoke a directive (history is kept).
    Revoke {
        directive_id: String,
        #[arg(long)]
        etag: String,
        #[arg(long)]
        reason: String,
    },
    /// Set or clear the national data opt-out by hand (a manual check), or show it.
    OptOut {
        #[arg(long)]
        patient: String,
        /// Opt the patient out.
        #[arg(long, conflicts_with = "clear")]
        set: bool,
        /// Withdraw the opt-out.
        #[arg(long)]
        clear: bool,
        /// With --set or --clear: where the status comes from (the check's source; default `manual`).
        #[arg(long)]
        source: Option<String>,
    },
    /// Record the national data opt-out service's answer: the file of NHS numbers sent to it and the
    /// file it returned (the numbers whose data may be used; every other number has opted out).
    /// NHS numbers are resolved to patients through identity. Every line is checked before anything
    /// is recorded: a file with any bad line records nothing.
    OptOutCheck {
        /// The file sent to the national service: NHS numbers (or patient ids), one per line; a
        /// trailing comma, commas between values and blank lines are accepted.
        #[arg(long)]
        sent: PathBuf,
        /// The file the national service returned (its "cleaned list"), in the same format.
        #[arg(long)]
        returned: PathBuf,
        /// When the national service answered: RFC 3339 (2026-11-30T09:15:00Z) or a date
        /// (2026-11-30, taken as its start, UTC).
        #[arg(long)]
        checked_at: String,
        /// Where the answer came from, e.g. the MESH message id; defaults to the returned file's name.
        #[arg(long)]
        source: Option<String>,
    },
    /// Ask for a decision: may this requester see this patient's data for this purpose?
    Decide {
        #[arg(long)]
        patient: String,
        /// HL7 v3 ActReason code: TREAT, ETREAT, HRESCH, HOPERAT, PUBHLTH, …
        #[arg(long, default_value = "TREAT")]
        purpose: String,
        /// Data classes asked for (repeat); none asks for all.
        #[arg(long)]
        data_class: Vec<String>,
        /// direct-care, explicit-consent, legal-requirement, court-order, public-health,
        /// overriding-public-interest, section-251-support.
        #[arg(long)]
        legal_basis: Option<String>,
        /// The research study (e.g. an IRAS id); required for HRESCH under explicit-consent or
        /// section-251-support.
        #[arg(long)]
        study: Option<String>,
        #[arg(long)]
        break_glass_reason: Option<String>,
    },
}

/// The criteria of one provision; empty lists mean "any".
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// Data classes, e.g. mental-health (repeat).
    #[arg(long)]
    data_class: Vec<String>,
    /// Organisation ODS codes (repeat).
    #[arg(long)]
    org: Vec<String>,
    /// Role codes (repeat).
    #[arg(long)]
    role: Vec<String>,
    /// Purposes of use (repeat).
    #[arg(long)]
    purpose: Vec<String>,
}

impl ProvisionArgs {
    fn provision(&self) -> Option<Provision> {
        let mut actors: Vec<ProvisionActor> = self
            .org
            .iter()
            .map(|o| ProvisionActor {
                organisation_ods_code: o.clone(),
                ..Default::default()
            })
            .collect();
        actors.extend(self.role.iter().map(|r| ProvisionActor {
            role_code: r.clone(),
            ..Default::default()
        }));
        let provision = Provision {
            actors,
            purposes: self.purpose.clone(),
            data_classes: self.data_class.clone(),
            ..Default::default()
        };
        let empty = provision.actors.is_empty()
            && provision.purposes.is_empty()
            && provision.data_classes.is_empty();
        (!empty).then_some(provision)
    }
}

pub fn parse_legal_basis(raw: &str) -> Result<LegalBasis, String> {
    let name = format!("LEGAL_BASIS_{}", raw.replace('-', "_").to_ascii_uppercase());
    LegalBasis::from_str_name(&name).ok_or_else(|| format!("--legal-basis {raw:?} is not one of direct-care, explicit-consent, legal-requirement, court-order, public-health, overriding-public-interest, section-251-support"))
}

fn enum_name(name: Option<&str>, prefix: &str) -> String {
    name.map(|n| n.trim_start_matches(prefix).to_owned())
        .unwrap_or_default()
}

fn show_directive(directive: &ConsentDirective) {
    print_fields(&[
        ("directive_id", directive.directive_id.clone()),
        ("patient_id", directive.patient_id.clone()),
        (
            "status",
            enum_name(
                ConsentDirectiveStatus::try_from(directive.status)
                    .ok()
                    .map(|s| s.as_str_name()),
                "CONSENT_DIRECTIVE_STATUS_",
            ),
        ),
        (
            "decision",
            enum_name(
                ConsentDecision::try_from(directive.decision)
                    .ok()
                    .map(|s| s.as_str_name()),
                "CONSENT_DECISION_",
            ),
        ),
        ("provisions", directive.provisions.len().to_string()),
        ("version", directive.version.to_string()),
        ("etag", directive.etag.clone()),
    ]);
}

pub fn show_decision(decision: &Decision) {
    let outcome = enum_name(
        DecisionOutcome::try_from(decision.outcome)
            .ok()
            .map(|o| o.as_str_name()),
        "DECISION_OUTCOME_",
    );
    println!("{outcome}");
    for obligation in &decision.obligations {
        let kind = enum_name(
            ObligationType::try_from(obligation.r#type)
                .ok()
                .map(|o| o.as_str_name()),
            "OBLIGATION_TYPE_",
        );
        let classes = if obligation.data_classes.is_empty() {
            String::new()
        } else {
            format!(": {}", obligation.data_classes.join(", "))
        };
        println!("  obligation {kind}{classes}");
    }
    for reason in &decision.reasons {
        println!("  because {}", reason.explanation);
    }
}

pub async fn run(
    command: ConsentCommand,
    endpoints: &Endpoints,
    operator: &Operator,
    out: Output,
) -> Result<(), String> {
    let mut client = ConsentServiceClient::new(connect("consent", &endpoints.consent)?);
    let status = |s: tonic::Status| call_failed("consent", &endpoints.consent, &s);
    let requester: Requester = operator.requester();
    const DIRECTIVE: &str = "carerecord.consent.v1.ConsentDirective";
    let create = |patient_id: String, decision: ConsentDecision, provision: Option<Provision>| {
        CreateConsentDirectiveRequest {
            request_id: new_request_id(),
            directive: Some(ConsentDirective {
                patient_id,
                status: ConsentDirectiveStatus::Active as i32,
                decision: decision as i32,
                provisions: provision.into_iter().collect(),
                ..Default::default()
            }),
            requester: Some(requester.clone()),
        }
    };
    match command {
        ConsentCommand::Withhold { patient, scope } => {
            let provision = scope
                .provision()
                .ok_or("say what to withhold: --data-class, --org, --role or --purpose")?;
            // A provision is an exception to the base decision: permit everything except this.
            let request = create(patient, ConsentDecision::Permit, Some(provision));
            let directive = reply(client.create_consent_directive(request), status)
                .await?
                .directive
                .unwrap_or_default();
            out.message(&directive, DIRECTIVE, show_directive);
        }
        ConsentCommand::Dissent { patient, except } => {
            let request = create(patient, ConsentDecision::Deny, except.provision());
            let directive = reply(client.create_consent_directive(request), status)
                .await?
                .directive
                .unwrap_or_default();
            out.message(&directive, DIRECTIVE, show_directive);
        }
        ConsentCommand::List { patient } => {
            let request = ListConsentDirectivesRequest {
                patient_id: patient,
                page_size: 1000,
                ..Default::default()
            };
            let directives = reply(client.list_consent_directives(request), status)
                .await?
                .directives;
            out.list(
                &directives,
                DIRECTIVE,
                &[
                    "directive_id",
                    "status",
                    "decision",
                    "provisions",
                    "updated",
                ],
                |d| {
                    vec![
                        d.directive_id.clone(),
                        enum_name(
                            ConsentDirectiveStatus::try_from(d.status)
                                .ok()
                                .map(|s| s.as_str_name()),
                            "CONSENT_DIRECTIVE_STATUS_",
                        ),
                        enum_name(
                            ConsentDecision::try_from(d.decision)
                                .ok()
                                .map(|s| s.as_str_name()),
                            "CONSENT_DECISION_",
                        ),
                        d.provisions.len().to_string(),
                        timestamp(d.update_time.as_ref()),
                    ]
                },
            );
        }
        ConsentCommand::Revoke {
            directive_id,
            etag,
            reason,
        } => {
            let request = RevokeConsentDirectiveRequest {
                directive_id,
                etag,
                reason,
                requester: Some(requester.clone()),
            };
            let directive = reply(client.revoke_consent_directive(request), status)
                .await?
                .directive
                .unwrap_or_default();
            out.message(&directive, DIRECTIVE, show_directive);
        }
        ConsentCommand::OptOut {
            patient,
            set,
            clear,
            source,
        } => {
            let opt_out = if set || clear {
                let request = SetNationalDataOptOutRequest {
                    patient_id: patient,
                    opted_out: set,
                    etag: String::new(),
                    requester: Some(requester.clone()),
                    source: source.unwrap_or_default(),
                };
                reply(client.set_national_data_opt_out(request), status)
                    .await?
                    .national_data_opt_out
            } else {
                reply(
                    client.get_national_data_opt_out(GetNationalDataOptOutRequest {
                        patient_id: patient,
                    }),
                    status,
                )
                .await?
                .national_data_opt_out
            };
            out.message(
                &opt_out.unwrap_or_default(),
                "carerecord.consent.v1.NationalDataOptOut",
                show_opt_out,
            );
        }
        ConsentCommand::OptOutCheck {
            sent,
            returned,
            checked_at,
            source,
        } => {
            let check_time = parse_check_time(&checked_at)?;
            let source = source.unwrap_or_else(|| {
                returned
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let answer = CheckFiles::read(&sent, &returned)?;
            let mut identity =
                PatientIdentityServiceClient::new(connect("identity", &endpoints.identity)?);
            let patients = answer
                .resolve(&mut identity, |s| {
                    call_failed("identity", &endpoints.identity, &s)
                })
                .await?;
            let mut total = RecordNationalDataOptOutCheckResponse::default();
            for chunk in patients.chunks(MAX_CHECKED_PER_CALL) {
                let request = RecordNationalDataOptOutCheckRequest {
                    checked_patient_ids: chunk.iter().map(|(id, _)| id.clone()).collect(),
                    not_opted_out_patient_ids: chunk
                        .iter()
                        .filter(|(_, opted_out)| !opted_out)
                        .map(|(id, _)| id.clone())
                        .collect(),
                    check_time: Some(check_time),
                    source: source.clone(),
                    requester: Some(requester.clone()),
                };
                let recorded =
                    reply(client.record_national_data_opt_out_check(request), status).await?;
                total.patients_checked += recorded.patients_checked;
                total.patients_opted_out += recorded.patients_opted_out;
                total.patients_recorded += recorded.patients_recorded;
            }
            out.message(
                &total,
                "carerecord.consent.v1.RecordNationalDataOptOutCheckResponse",
                |t| {
                    println!(
                        "recorded the national data opt-out check of {} patients ({} opted out; {} records written, the others already had this or a newer check)",
                        t.patients_checked, t.patients_opted_out, t.patients_recorded
                    );
                },
            );
        }
        ConsentCommand::Decide {
            patient,
            purpose,
            data_class,
            legal_basis,
            study,
            break_glass_reason,
        } => {
            let request = DecideRequest {
                patient_id: patient,
                requester: Some(requester.clone()),
                purpose_of_use: purpose,
                data_classes: data_class,
                legal_basis: legal_basis
                    .as_deref()
                    .map(parse_legal_basis)
                    .transpose()?
                    .map_or(0, |b| b as i32),
                study_id: study.unwrap_or_default(),
                break_glass_reason: break_glass_reason.unwrap_or_default(),
                ..Default::default()
            };
            let decision = reply(client.decide(request), status)
                .await?
                .decision
                .unwrap_or_default();
            out.message(&decision, "carerecord.consent.v1.Decision", show_decision);
        }
    }
    Ok(())
}

fn show_opt_out(o: &NationalDataOptOut) {
    let status = if o.opted_out {
        "opted out of research and planning"
    } else {
        "not opted out"
    };
    match &o.check_time {
        None => println!(
            "{}: never checked (research and planning exclude the patient until a check)",
            o.patient_id
        ),
        Some(checked) => println!(
            "{}: {status} (checked {checked} from {}; the check counts until {})",
            o.patient_id,
            o.check_source,
            timestamp(o.check_expire_time.as_ref())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_basis_flags() {
        assert_eq!(
            parse_legal_basis("court-order").unwrap(),
            LegalBasis::CourtOrder
        );
        assert_eq!(
            parse_legal_basis("section-251-support").unwrap(),
            LegalBasis::Section251Support
        );
        assert!(
            parse_legal_basis("because")
                .unwrap_err()
                .contains("--legal-basis")
        );
    }

    #[test]
    fn empty_provision_criteria_make_no_provision() {
        let args = ProvisionArgs {
            data_class: vec![],
            org: vec![],
            role: vec![],
            purpose: vec![],
        };
        assert!(args.provision().is_none());
        let args = ProvisionArgs {
            data_class: vec!["mental-health".into()],
            org: vec!["RX1".into()],
            role: vec![],
            purpose: vec![],
        };
        let provision = args.provision().unwrap();
        assert_eq!(provision.data_classes, ["mental-health"]);
        assert_eq!(provision.actors[0].organisation_ods_code, "RX1");
    }
}
