//! Contributing and following through data access, as an integrator does: submit a record from a
//! file for an NHS number, amend or retract it, import NDJSON with a progress bar, and follow
//! patients' records live (Ctrl-C stops; the cursor file makes the next run resume).

use std::path::PathBuf;

use carerecord_contracts::access::v1::{
    CreateRecordRequest, FollowRecordChangesRequest, ImportItem, ImportOutcome,
    ImportRecordsRequest, PatientReference, RecordContent, RetractRecordRequest,
    UpdateRecordRequest, patient_reference::Reference,
};
use clap::{Args, Subcommand};

use crate::access::{PatientArgs, client_with_scope};
use crate::connect::{Endpoints, Operator};
use crate::output::{Output, call_failed, print_table, reply, timestamp};
use crate::record::{progress_bar, read_input};

/// Items per import message (the contract's maximum).
const ITEMS_PER_MESSAGE: usize = 1000;
/// The namespace of request ids derived from import lines, so re-sending a file writes nothing twice.
const LINE_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c1d_2f7a_4b0e_4f63_9a51_7d3e_c0a8_9b41);

#[derive(Debug, Subcommand)]
pub enum FrontDoorCommand {
    /// Contribute a FHIR resource from a file to a patient's record through data access. The file's
    /// subject may name the patient by NHS number alone.
    Submit {
        /// The patient (optional when the file's subject carries the NHS number).
        #[command(flatten)]
        patient: OptionalPatient,
        /// The FHIR resource (JSON); `-` reads standard input.
        #[arg(long)]
        file: PathBuf,
        /// Sensitivity labels (repeat), e.g. `mental-health`.
        #[arg(long = "data-class")]
        data_classes: Vec<String>,
        /// A request id (UUID) making a retry safe; a fresh one by default.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Contribute a new version of a record this organisation contributed.
    Amend {
        #[arg(long)]
        record_id: String,
        /// The version being replaced (the latest).
        #[arg(long)]
        version: i64,
        #[arg(long)]
        file: PathBuf,
        #[arg(long = "data-class")]
        data_classes: Vec<String>,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Retract a record entered in error (nothing is deleted).
    Retract {
        #[arg(long)]
        record_id: String,
        /// The latest version.
        #[arg(long)]
        version: i64,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Import newline-delimited FHIR resources through data access (each names its patient in its
    /// subject, by NHS number or `Patient/<id>`), with a result per line. Re-sending a file writes
    /// nothing twice.
    Import {
        #[arg(long)]
        file: PathBuf,
    },
    /// Follow patients' records live: one line per change; Ctrl-C stops. With --cursor-file, the
    /// next run resumes where this one stopped.
    Follow {
        /// Patients by NHS number (repeat).
        #[arg(long = "nhs-number", required_unless_present = "patient_id")]
        nhs_numbers: Vec<String>,
        /// Patients by id (repeat).
        #[arg(long = "patient-id")]
        patient_id: Vec<String>,
        /// FHIR resource types (repeat); all the token covers by default.
        #[arg(long = "type")]
        resource_types: Vec<String>,
        #[arg(long, default_value = "TREAT")]
        purpose: String,
        /// Where the cursor is kept between runs.
        #[arg(long)]
        cursor_file: Option<PathBuf>,
    },
}

/// A patient named on the command line, or not.
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct OptionalPatient {
    #[arg(long)]
    nhs_number: Option<String>,
    #[arg(long)]
    patient_id: Option<String>,
    #[arg(long)]
    identifier: Option<String>,
}

impl OptionalPatient {
    fn reference(&self) -> Result<Option<PatientReference>, String> {
        if self.nhs_number.is_none() && self.patient_id.is_none() && self.identifier.is_none() {
            return Ok(None);
        }
        PatientArgs::from_parts(
            self.nhs_number.clone(),
            self.patient_id.clone(),
            self.identifier.clone(),
        )
        .reference()
        .map(Some)
    }
}

fn content(payload: Vec<u8>, data_classes: Vec<String>) -> Result<RecordContent, String> {
    let json: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|e| format!("--file is not JSON: {e}"))?;
    let resource_type = json["resourceType"]
        .as_str()
        .ok_or("--file has no resourceType")?
        .to_owned();
    Ok(RecordContent {
        resource_type,
        payload,
        data_classes,
        ..RecordContent::default()
    })
}

fn request_id(given: Option<String>) -> String {
    given.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// One import line: its content, the patient it names, and a request id derived from the line.
fn import_item(line: &[u8]) -> ImportItem {
    let json: serde_json::Value = serde_json::from_slice(line).unwrap_or(serde_json::Value::Null);
    let reference = json["subject"]["reference"]
        .as_str()
        .or_else(|| json["patient"]["reference"].as_str())
        .and_then(|r| r.rsplit_once("Patient/").map(|(_, id)| id.to_owned()));
    ImportItem {
        request_id: uuid::Uuid::new_v5(&LINE_NAMESPACE, line).to_string(),
        patient: reference.map(|id| PatientReference {
            reference: Some(Reference::PatientId(id)),
        }),
        content: Some(RecordContent {
            resource_type: json["resourceType"].as_str().unwrap_or_default().to_owned(),
            payload: line.to_vec(),
            ..RecordContent::default()
        }),
    }
}

pub async fn run(
    command: FrontDoorCommand,
    token: Option<String>,
    endpoints: &Endpoints,
    operator: &Operator,
    out: Output,
) -> Result<(), String> {
    let mut access = client_with_scope(endpoints, operator, token, "user/*.cruds")?;
    let status = |s: tonic::Status| call_failed("data access", &endpoints.access, &s);
    match command {
        FrontDoorCommand::Submit {
            patient,
            file,
            data_classes,
            request_id: given,
        } => {
            let request = CreateRecordRequest {
                request_id: request_id(given),
                patient: patient.reference()?,
                purpose_of_use: "TREAT".into(),
                content: Some(content(read_input(&file)?, data_classes)?),
                ..CreateRecordRequest::default()
            };
            let created = reply(access.create_record(request), status).await?;
            out.message(&created, "carerecord.access.v1.CreateRecordResponse", |r| {
                let record = r.record.clone().unwrap_or_default();
                println!(
                    "record {} version {} for patient {} (audit entry {})",
                    record.record_id, record.version, r.patient_id, r.audit_index
                );
            });
        }
        FrontDoorCommand::Amend {
            record_id,
            version,
            file,
            data_classes,
            request_id: given,
        } => {
            let request = UpdateRecordRequest {
                request_id: request_id(given),
                record_id,
                expected_version: version,
                purpose_of_use: "TREAT".into(),
                content: Some(content(read_input(&file)?, data_classes)?),
                ..UpdateRecordRequest::default()
            };
            let updated = reply(access.update_record(request), status).await?;
            out.message(&updated, "carerecord.access.v1.UpdateRecordResponse", |r| {
                let record = r.record.clone().unwrap_or_default();
                println!(
                    "record {} is now version {}",
                    record.record_id, record.version
                );
            });
        }
        FrontDoorCommand::Retract {
            record_id,
            version,
            reason,
            request_id: given,
        } => {
            let request = RetractRecordRequest {
                request_id: request_id(given),
                record_id,
                expected_version: version,
                reason,
                purpose_of_use: "TREAT".into(),
                ..RetractRecordRequest::default()
            };
            let retracted = reply(access.retract_record(request), status).await?;
            out.message(
                &retracted,
                "carerecord.access.v1.RetractRecordResponse",
                |r| {
                    let record = r.record.clone().unwrap_or_default();
                    println!(
                        "record {} retracted (version {})",
                        record.record_id, record.version
                    );
                },
            );
        }
        FrontDoorCommand::Import { file } => {
            let input = read_input(&file)?;
            let lines = crate::record::non_blank_lines(&input);
            let progress = progress_bar(lines.len() as u64, "importing");
            let messages: Vec<ImportRecordsRequest> = lines
                .chunks(ITEMS_PER_MESSAGE)
                .enumerate()
                .map(|(i, chunk)| ImportRecordsRequest {
                    purpose_of_use: if i == 0 {
                        "TREAT".into()
                    } else {
                        String::new()
                    },
                    items: chunk.iter().map(|line| import_item(line)).collect(),
                    ..ImportRecordsRequest::default()
                })
                .collect();
            let mut answers =
                reply(access.import_records(tokio_stream::iter(messages)), status).await?;
            let (mut accepted, mut deduplicated, mut rejected) = (0, 0, Vec::new());
            while let Some(answer) = answers.message().await.map_err(status)? {
                progress.inc(answer.results.len() as u64);
                for result in answer.results {
                    match ImportOutcome::try_from(result.outcome) {
                        Ok(ImportOutcome::Accepted) => accepted += 1,
                        Ok(ImportOutcome::Deduplicated) => deduplicated += 1,
                        _ => rejected.push(result),
                    }
                }
            }
            progress.finish_and_clear();
            println!(
                "accepted {accepted}, deduplicated {deduplicated}, rejected {}",
                rejected.len()
            );
            for result in &rejected {
                let fields: Vec<String> = result
                    .field_violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect();
                println!(
                    "  line {}: {} {}",
                    result.index + 1,
                    result.reason,
                    fields.join("; ")
                );
            }
            if !rejected.is_empty() {
                return Err(format!(
                    "{} of {} lines were rejected",
                    rejected.len(),
                    lines.len()
                ));
            }
        }
        FrontDoorCommand::Follow {
            nhs_numbers,
            patient_id,
            resource_types,
            purpose,
            cursor_file,
        } => {
            let after_cursor = match &cursor_file {
                Some(path) => std::fs::read_to_string(path)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
                None => String::new(),
            };
            let patients = nhs_numbers
                .into_iter()
                .map(Reference::NhsNumber)
                .chain(patient_id.into_iter().map(Reference::PatientId))
                .map(|reference| PatientReference {
                    reference: Some(reference),
                })
                .collect();
            let request = FollowRecordChangesRequest {
                patients,
                resource_types,
                purpose_of_use: purpose,
                start_at_head: after_cursor.is_empty(),
                after_cursor,
                ..FollowRecordChangesRequest::default()
            };
            let mut stream = reply(access.follow_record_changes(request), status).await?;
            eprintln!("following; Ctrl-C stops");
            let stop = tokio::signal::ctrl_c();
            tokio::pin!(stop);
            loop {
                let message = tokio::select! {
                    _ = &mut stop => return Ok(()),
                    message = stream.message() => message.map_err(status)?,
                };
                let Some(message) = message else {
                    return Err("data access ended the stream: run again to resume".into());
                };
                if out.json {
                    for notification in &message.notifications {
                        println!(
                            "{}",
                            crate::output::to_json(
                                notification,
                                "carerecord.access.v1.ChangeNotification"
                            )
                        );
                    }
                } else if !message.notifications.is_empty() {
                    print_table(
                        &[
                            "when",
                            "change",
                            "type",
                            "record_id",
                            "version",
                            "patient",
                            "by",
                        ],
                        message.notifications.iter().map(|n| {
                            let provenance = n.provenance.clone().unwrap_or_default();
                            let agent = provenance.agent.unwrap_or_default();
                            vec![
                                timestamp(provenance.recorded_time.as_ref()),
                                carerecord_contracts::common::v1::ChangeType::try_from(
                                    n.change_type,
                                )
                                .map(|c| {
                                    c.as_str_name()
                                        .trim_start_matches("CHANGE_TYPE_")
                                        .to_owned()
                                })
                                .unwrap_or_default(),
                                n.resource_type.clone(),
                                n.record_id.clone(),
                                n.version.to_string(),
                                n.patient_id.clone(),
                                format!(
                                    "{} ({})",
                                    agent.organisation_ods_code, provenance.source_system
                                ),
                            ]
                        }),
                    );
                }
                if let Some(path) = &cursor_file {
                    std::fs::write(path, &message.cursor)
                        .map_err(|e| format!("--cursor-file {}: {e}", path.display()))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_lines_name_their_patient_and_get_stable_request_ids() {
        let line = br#"{"resourceType":"Observation","subject":{"reference":"Patient/p-1"}}"#;
        let item = import_item(line);
        assert_eq!(
            item.patient.unwrap().reference,
            Some(Reference::PatientId("p-1".into()))
        );
        assert_eq!(item.request_id, import_item(line).request_id);
        let by_nhs = br#"{"resourceType":"Observation","subject":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}}}"#;
        assert!(
            import_item(by_nhs).patient.is_none(),
            "data access resolves it"
        );
    }
}
