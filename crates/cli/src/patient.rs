//! `carerecord patient …`: register, look up, search, match and merge patients (identity module).

use carerecord_contracts::common::v1::{
    Address, AdministrativeGender, Date, HumanName, Identifier, NameUse,
};
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::identity::v1::{
    CreatePatientRequest, GetPatientRequest, MatchCandidate, MatchPatientsRequest,
    MergePatientsRequest, Patient, PatientConfidentiality, ResolveIdentifierRequest, SearchMode,
    SearchPatientsRequest, SearchPatientsResult, SetPatientConfidentialityRequest,
    UnmergePatientRequest, match_patients_request::Probe, search_patients_request::Birth,
};
use clap::{Args, Subcommand};

use crate::connect::{Endpoints, Operator, connect, new_request_id};
use crate::output::{Output, call_failed, date, print_fields, reply};

pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

#[derive(Debug, Subcommand)]
pub enum PatientCommand {
    /// Register a patient.
    Register(Demographics),
    /// Show a patient by id.
    Get { patient_id: String },
    /// Find the patient holding an NHS number or a local identifier.
    Resolve(IdentifierArgs),
    /// PDS-style trace: family name and birth date, optionally given name, gender, postcode.
    Search {
        #[arg(long)]
        family: String,
        /// YYYY-MM-DD, or a range FROM..TO.
        #[arg(long)]
        birth_date: String,
        #[arg(long)]
        given: Option<String>,
        #[arg(long)]
        postcode: Option<String>,
        /// Phonetic names and transposed given/family names.
        #[arg(long)]
        fuzzy: bool,
    },
    /// Probabilistic match: ranked candidates with scores and per-field evidence.
    Match {
        #[command(flatten)]
        demographics: Demographics,
        /// Show each candidate's per-field evidence.
        #[arg(long)]
        explain: bool,
        #[arg(long, default_value_t = 10)]
        max: i32,
    },
    /// Merge a duplicate into the surviving patient.
    Merge {
        /// The duplicate.
        #[arg(long)]
        from: String,
        /// The survivor.
        #[arg(long)]
        into: String,
        #[arg(long)]
        reason: String,
    },
    /// Undo a merge, restoring both patients.
    Unmerge {
        /// The merged duplicate.
        patient_id: String,
        #[arg(long)]
        reason: String,
        /// The duplicate's current etag (read it with `patient get`).
        #[arg(long)]
        etag: String,
    },
    /// Mark a patient restricted (PDS flag R: their address, telephone and GP are never shown,
    /// postcode searches do not find them, every access is reviewed), or lift it with --lift.
    /// Needs a confidentiality role (by default R0001, privacy officer: `--as-role R0001`).
    Restrict {
        patient_id: String,
        /// Why, for the patient's history.
        #[arg(long)]
        reason: String,
        /// Lift the restriction instead.
        #[arg(long)]
        lift: bool,
    },
}

#[derive(Debug, Args)]
pub struct IdentifierArgs {
    /// An NHS number (spaces allowed).
    #[arg(
        long,
        conflicts_with = "identifier",
        required_unless_present = "identifier"
    )]
    nhs_number: Option<String>,
    /// A local identifier as SYSTEM|VALUE.
    #[arg(long)]
    identifier: Option<String>,
}

#[derive(Debug, Args)]
pub struct Demographics {
    #[arg(long)]
    nhs_number: Option<String>,
    /// Given names (repeat for middle names).
    #[arg(long)]
    given: Vec<String>,
    #[arg(long)]
    family: Option<String>,
    /// YYYY-MM-DD.
    #[arg(long)]
    birth_date: Option<String>,
    /// male, female, other or unknown.
    #[arg(long)]
    gender: Option<String>,
    /// Address lines (repeat).
    #[arg(long)]
    address_line: Vec<String>,
    #[arg(long)]
    city: Option<String>,
    #[arg(long)]
    postcode: Option<String>,
    /// Local identifiers as SYSTEM|VALUE (repeat).
    #[arg(long)]
    identifier: Vec<String>,
}

pub fn parse_date(flag: &str, raw: &str) -> Result<Date, String> {
    let parts: Vec<&str> = raw.trim().split('-').collect();
    let bad = || format!("--{flag} {raw:?}: expected YYYY-MM-DD");
    let [year, month, day] = parts.as_slice() else {
        return Err(bad());
    };
    Ok(Date {
        year: year.parse().map_err(|_| bad())?,
        month: month.parse().map_err(|_| bad())?,
        day: day.parse().map_err(|_| bad())?,
    })
}

pub fn parse_gender(raw: &str) -> Result<AdministrativeGender, String> {
    match raw.to_ascii_lowercase().as_str() {
        "male" | "m" => Ok(AdministrativeGender::Male),
        "female" | "f" => Ok(AdministrativeGender::Female),
        "other" => Ok(AdministrativeGender::Other),
        "unknown" => Ok(AdministrativeGender::Unknown),
        _ => Err(format!(
            "--gender {raw:?}: expected male, female, other or unknown"
        )),
    }
}

pub fn parse_identifier(raw: &str) -> Result<Identifier, String> {
    match raw.split_once('|') {
        Some((system, value)) if !system.is_empty() && !value.is_empty() => Ok(Identifier {
            system: system.to_owned(),
            value: value.to_owned(),
        }),
        _ => Err(format!("--identifier {raw:?}: expected SYSTEM|VALUE")),
    }
}

impl Demographics {
    fn to_patient(&self) -> Result<Patient, String> {
        let mut patient = Patient {
            nhs_number: self.nhs_number.clone().unwrap_or_default(),
            ..Default::default()
        };
        if self.family.is_some() || !self.given.is_empty() {
            patient.names.push(HumanName {
                r#use: NameUse::Official as i32,
                given: self.given.clone(),
                family: self.family.clone().unwrap_or_default(),
                ..Default::default()
            });
        }
        if let Some(raw) = &self.birth_date {
            patient.birth_date = Some(parse_date("birth-date", raw)?);
        }
        if let Some(raw) = &self.gender {
            patient.gender = parse_gender(raw)? as i32;
        }
        if !self.address_line.is_empty() || self.postcode.is_some() || self.city.is_some() {
            patient.addresses.push(Address {
                lines: self.address_line.clone(),
                city: self.city.clone().unwrap_or_default(),
                postal_code: self.postcode.clone().unwrap_or_default(),
                ..Default::default()
            });
        }
        for raw in &self.identifier {
            patient.identifiers.push(parse_identifier(raw)?);
        }
        Ok(patient)
    }
}

pub fn display_name(patient: &Patient) -> String {
    patient
        .names
        .first()
        .map(|n| {
            format!("{} {}", n.given.join(" "), n.family)
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

pub fn show_patient(patient: &Patient) {
    let identifiers: Vec<String> = patient
        .identifiers
        .iter()
        .map(|i| format!("{}|{}", i.system, i.value))
        .collect();
    let postcode = patient
        .addresses
        .first()
        .map(|a| a.postal_code.clone())
        .unwrap_or_default();
    print_fields(&[
        ("patient_id", patient.patient_id.clone()),
        ("nhs_number", patient.nhs_number.clone()),
        ("name", display_name(patient)),
        ("birth_date", date(patient.birth_date.as_ref())),
        (
            "gender",
            AdministrativeGender::try_from(patient.gender)
                .map(|g| g.as_str_name().to_owned())
                .unwrap_or_default(),
        ),
        ("postcode", postcode),
        ("identifiers", identifiers.join(", ")),
        (
            "state",
            carerecord_contracts::identity::v1::PatientState::try_from(patient.state)
                .map(|s| s.as_str_name().to_owned())
                .unwrap_or_default(),
        ),
        ("merged_into", patient.merged_into_patient_id.clone()),
        (
            "confidentiality",
            PatientConfidentiality::try_from(patient.confidentiality)
                .map(|c| c.as_str_name().to_owned())
                .unwrap_or_default(),
        ),
        ("version", patient.version.to_string()),
        ("etag", patient.etag.clone()),
    ]);
}

pub async fn run(
    command: PatientCommand,
    endpoints: &Endpoints,
    operator: &Operator,
    out: Output,
) -> Result<(), String> {
    let mut client = PatientIdentityServiceClient::new(connect("identity", &endpoints.identity)?);
    let status = |s: tonic::Status| call_failed("identity", &endpoints.identity, &s);
    const PATIENT: &str = "carerecord.identity.v1.Patient";
    match command {
        PatientCommand::Register(demographics) => {
            let request = CreatePatientRequest {
                request_id: new_request_id(),
                patient: Some(demographics.to_patient()?),
                requester: Some(operator.requester()),
            };
            let patient = reply(client.create_patient(request), status)
                .await?
                .patient
                .unwrap_or_default();
            out.message(&patient, PATIENT, show_patient);
        }
        PatientCommand::Get { patient_id } => {
            let patient =
                reply(client.get_patient(GetPatientRequest { patient_id }), status).await?;
            out.message(&patient.patient.unwrap_or_default(), PATIENT, show_patient);
        }
        PatientCommand::Resolve(args) => {
            let identifier = match (&args.nhs_number, &args.identifier) {
                (Some(nhs), _) => Identifier {
                    system: NHS_NUMBER_SYSTEM.into(),
                    value: nhs.clone(),
                },
                (None, Some(raw)) => parse_identifier(raw)?,
                (None, None) => return Err("give --nhs-number or --identifier".into()),
            };
            let request = ResolveIdentifierRequest {
                identifier: Some(identifier),
            };
            let response = reply(client.resolve_identifier(request), status).await?;
            out.message(
                &response,
                "carerecord.identity.v1.ResolveIdentifierResponse",
                |r| {
                    if r.followed_merge {
                        println!(
                            "(resolved through merged patient(s) {})",
                            r.merged_patient_ids.join(", ")
                        );
                    }
                    show_patient(r.patient.as_ref().unwrap_or(&Patient::default()));
                },
            );
        }
        PatientCommand::Search {
            family,
            birth_date,
            given,
            postcode,
            fuzzy,
        } => {
            let birth_date = match birth_date.split_once("..") {
                Some((from, to)) => {
                    Birth::BirthDateRange(carerecord_contracts::common::v1::DateRange {
                        start: Some(parse_date("birth-date", from)?),
                        end: Some(parse_date("birth-date", to)?),
                    })
                }
                None => Birth::BirthDate(parse_date("birth-date", &birth_date)?),
            };
            let request = SearchPatientsRequest {
                family_name: family,
                given_name: given.unwrap_or_default(),
                postcode: postcode.unwrap_or_default(),
                birth: Some(birth_date),
                mode: if fuzzy {
                    SearchMode::Fuzzy
                } else {
                    SearchMode::Exact
                } as i32,
                ..Default::default()
            };
            let results = reply(client.search_patients(request), status)
                .await?
                .results;
            out.list(
                &results,
                "carerecord.identity.v1.SearchPatientsResult",
                &["patient_id", "name", "birth date", "score"],
                |r: &SearchPatientsResult| {
                    let p = r.patient.clone().unwrap_or_default();
                    vec![
                        p.patient_id.clone(),
                        display_name(&p),
                        date(p.birth_date.as_ref()),
                        format!("{:.3}", r.score),
                    ]
                },
            );
        }
        PatientCommand::Match {
            demographics,
            explain,
            max,
        } => {
            let request = MatchPatientsRequest {
                probe: Some(Probe::Demographics(demographics.to_patient()?)),
                max_candidates: max,
                include_non_matches: false,
            };
            let candidates = reply(client.match_patients(request), status)
                .await?
                .candidates;
            out.list(
                &candidates,
                "carerecord.identity.v1.MatchCandidate",
                &[
                    "patient_id",
                    "name",
                    "birth date",
                    "probability",
                    "classification",
                ],
                |c: &MatchCandidate| {
                    let p = c.patient.clone().unwrap_or_default();
                    let class = carerecord_contracts::identity::v1::MatchClassification::try_from(
                        c.classification,
                    )
                    .map(|c| {
                        c.as_str_name()
                            .trim_start_matches("MATCH_CLASSIFICATION_")
                            .to_owned()
                    })
                    .unwrap_or_default();
                    vec![
                        p.patient_id.clone(),
                        display_name(&p),
                        date(p.birth_date.as_ref()),
                        format!("{:.4}", c.match_probability),
                        class,
                    ]
                },
            );
            if explain && !out.json {
                for candidate in &candidates {
                    let id = candidate
                        .patient
                        .as_ref()
                        .map(|p| p.patient_id.clone())
                        .unwrap_or_default();
                    println!(
                        "\nevidence for {id} (weight {:.2}):",
                        candidate.match_weight
                    );
                    crate::output::print_table(
                        &[
                            "field",
                            "level",
                            "comparator",
                            "similarity",
                            "level weight",
                            "adjustment",
                            "weight",
                        ],
                        evidence_rows(&candidate.evidence),
                    );
                }
            }
        }
        PatientCommand::Merge { from, into, reason } => {
            let request = MergePatientsRequest {
                source_patient_id: from,
                target_patient_id: into,
                reason,
                requester: Some(operator.requester()),
                request_id: new_request_id(),
                ..Default::default()
            };
            let response = reply(client.merge_patients(request), status).await?;
            out.message(
                &response,
                "carerecord.identity.v1.MergePatientsResponse",
                |r| {
                    println!("merged; the survivor is now:");
                    show_patient(r.target_patient.as_ref().unwrap_or(&Patient::default()));
                },
            );
        }
        PatientCommand::Unmerge {
            patient_id,
            reason,
            etag,
        } => {
            let request = UnmergePatientRequest {
                patient_id,
                reason,
                etag,
                requester: Some(operator.requester()),
            };
            let response = reply(client.unmerge_patient(request), status).await?;
            out.message(
                &response,
                "carerecord.identity.v1.UnmergePatientResponse",
                |r| {
                    println!("unmerged; restored:");
                    show_patient(r.patient.as_ref().unwrap_or(&Patient::default()));
                },
            );
        }
        PatientCommand::Restrict {
            patient_id,
            reason,
            lift,
        } => {
            let current = reply(
                client.get_patient(GetPatientRequest {
                    patient_id: patient_id.clone(),
                }),
                status,
            )
            .await?
            .patient
            .unwrap_or_default();
            let confidentiality = if lift {
                PatientConfidentiality::Unrestricted
            } else {
                PatientConfidentiality::Restricted
            };
            let request = SetPatientConfidentialityRequest {
                patient_id,
                confidentiality: confidentiality as i32,
                etag: current.etag,
                reason,
                requester: Some(operator.requester()),
            };
            let patient = reply(client.set_patient_confidentiality(request), status)
                .await?
                .patient
                .unwrap_or_default();
            out.message(&patient, PATIENT, show_patient);
        }
    }
    Ok(())
}

/// The `--explain` table's rows: each field's level, comparator, similarity, the level's weight,
/// the rule that adjusted it (twin, household, marriage, ...) and what it contributed.
fn evidence_rows(
    evidence: &[carerecord_contracts::identity::v1::FieldEvidence],
) -> Vec<Vec<String>> {
    evidence
        .iter()
        .map(|e| {
            let level = carerecord_contracts::identity::v1::ComparisonLevel::try_from(e.level)
                .map(|l| {
                    l.as_str_name()
                        .trim_start_matches("COMPARISON_LEVEL_")
                        .to_owned()
                })
                .unwrap_or_default();
            vec![
                e.field.clone(),
                level,
                e.comparator.clone(),
                format!("{:.3}", e.similarity),
                format!("{:+.2}", e.level_weight),
                e.adjustment.clone(),
                format!("{:+.2}", e.weight),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_or_name_themselves() {
        assert_eq!(
            parse_date("birth-date", "1970-03-09").unwrap(),
            Date {
                year: 1970,
                month: 3,
                day: 9
            }
        );
        assert!(
            parse_date("birth-date", "09/03/1970")
                .unwrap_err()
                .contains("--birth-date")
        );
        assert_eq!(parse_gender("F").unwrap(), AdministrativeGender::Female);
        assert!(parse_gender("x").is_err());
        let id = parse_identifier("https://fhir.rx1.nhs.uk/Id/mrn|A123").unwrap();
        assert_eq!(
            (id.system.as_str(), id.value.as_str()),
            ("https://fhir.rx1.nhs.uk/Id/mrn", "A123")
        );
        assert!(
            parse_identifier("A123")
                .unwrap_err()
                .contains("SYSTEM|VALUE")
        );
    }

    #[test]
    fn explain_shows_each_adjustment_beside_the_level_weight() {
        use carerecord_contracts::identity::v1::{ComparisonLevel, FieldEvidence};
        let rows = evidence_rows(&[
            FieldEvidence {
                field: "given_name".into(),
                level: ComparisonLevel::Missing as i32,
                comparator: "missing".into(),
                adjustment: "twin".into(),
                ..Default::default()
            },
            FieldEvidence {
                field: "birth_date".into(),
                level: ComparisonLevel::Exact as i32,
                comparator: "exact".into(),
                similarity: 1.0,
                level_weight: 14.9,
                weight: 6.5,
                adjustment: "same_household".into(),
                ..Default::default()
            },
        ]);
        assert_eq!(rows[0][1], "MISSING");
        assert_eq!(rows[0][5], "twin");
        assert_eq!(
            rows[1],
            [
                "birth_date",
                "EXACT",
                "exact",
                "1.000",
                "+14.90",
                "same_household",
                "+6.50"
            ]
        );
    }
}
