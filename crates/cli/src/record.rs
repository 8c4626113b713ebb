//! `carerecord record …`: add, read, list, import and export clinical records (record hosting).

use std::io::Write;
use std::path::PathBuf;

use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_contracts::records::v1::{
    CreateRecordRequest, ExportRecordsRequest, GetRecordRequest, ImportItem, ImportRecordsRequest,
    ListRecordsRequest, PatientIdList, Record, RecordStatus, export_records_request::Scope,
};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use crate::connect::{Endpoints, Operator, connect, new_request_id};
use crate::output::{Output, call_failed, print_fields, reply, timestamp};

pub const FHIR_JSON: &str = "application/fhir+json";
const IMPORT_BATCH: usize = 500;

#[derive(Debug, Subcommand)]
pub enum RecordCommand {
    /// Add a FHIR R4 resource (JSON) to a patient's record.
    Add {
        #[arg(long)]
        patient: String,
        /// The FHIR resource file; `-` reads standard input.
        #[arg(long)]
        file: PathBuf,
        /// Sensitivity labels, e.g. mental-health (repeat).
        #[arg(long)]
        data_class: Vec<String>,
        /// ODS code of the authoring organisation.
        #[arg(long, default_value = "")]
        organisation: String,
    },
    /// Show a record (latest version, or --version N), payload included.
    Get {
        record_id: String,
        #[arg(long, default_value_t = 0)]
        version: i64,
    },
    /// List a patient's records.
    List {
        #[arg(long)]
        patient: String,
        /// FHIR resource types (repeat).
        #[arg(long = "type")]
        resource_type: Vec<String>,
        #[arg(long)]
        data_class: Vec<String>,
        #[arg(long)]
        include_retracted: bool,
    },
    /// Import newline-delimited FHIR resources; each names its patient as subject `Patient/<id>`.
    Import {
        /// NDJSON file; `-` reads standard input.
        #[arg(long)]
        file: PathBuf,
    },
    /// Export the records of patients as NDJSON.
    Export {
        /// Patient ids (repeat).
        #[arg(long, required = true)]
        patient: Vec<String>,
        /// Output file; `-` writes standard output.
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
}

pub fn read_input(path: &PathBuf) -> Result<Vec<u8>, String> {
    if path.as_os_str() == "-" {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buffer)
            .map_err(|e| format!("reading stdin: {e}"))?;
        Ok(buffer)
    } else {
        std::fs::read(path).map_err(|e| format!("--file {}: {e}", path.display()))
    }
}

/// The lines of an import file that are not blank: one resource each.
pub fn non_blank_lines(input: &[u8]) -> Vec<&[u8]> {
    input
        .split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .collect()
}

/// Where an export goes (`-` is standard output), with a progress spinner labelled `label` when
/// it goes to a file.
pub fn export_sink(
    path: &PathBuf,
    label: &'static str,
) -> Result<(Box<dyn Write>, ProgressBar), String> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(std::io::stdout().lock()), ProgressBar::hidden()));
    }
    let file = std::fs::File::create(path).map_err(|e| format!("--out {}: {e}", path.display()))?;
    Ok((
        Box::new(std::io::BufWriter::new(file)),
        progress_bar(0, label),
    ))
}

/// The source system this command records on what it writes.
pub const SOURCE_SYSTEM: &str = "carerecord-cli";

/// The clinically relevant time of a FHIR resource, from the usual R4 elements, when present.
pub fn effective_time_of(json: &serde_json::Value) -> Option<prost_types::Timestamp> {
    let candidates = [
        json.get("effectiveDateTime"),
        json.get("effectivePeriod").and_then(|p| p.get("start")),
        json.get("onsetDateTime"),
        json.get("period").and_then(|p| p.get("start")),
        json.get("recordedDate"),
        json.get("issued"),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|v| v.as_str()?.parse().ok())
}

/// The `resourceType` and subject patient id of a FHIR resource, for routing an import line.
fn resource_type_and_patient(json: &serde_json::Value) -> (String, String) {
    let resource_type = json
        .get("resourceType")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let reference = ["subject", "patient"]
        .iter()
        .find_map(|field| {
            json.get(field)
                .and_then(|s| s.get("reference"))
                .and_then(|r| r.as_str())
        })
        .unwrap_or_default();
    let patient = reference
        .strip_prefix("Patient/")
        .unwrap_or(reference)
        .to_owned();
    (resource_type, patient)
}

pub fn show_record(record: &Record) {
    print_fields(&[
        ("record_id", record.record_id.clone()),
        ("patient_id", record.patient_id.clone()),
        ("resource_type", record.resource_type.clone()),
        ("data_classes", record.data_classes.join(", ")),
        ("effective", timestamp(record.effective_time.as_ref())),
        (
            "status",
            RecordStatus::try_from(record.status)
                .map(|s| s.as_str_name().to_owned())
                .unwrap_or_default(),
        ),
        ("version", record.version.to_string()),
        ("etag", record.etag.clone()),
        ("sha256", record.content_hash.clone()),
    ]);
    if !record.payload.is_empty() {
        println!("{}", String::from_utf8_lossy(&record.payload));
    }
}

fn record_row(record: &Record) -> Vec<String> {
    vec![
        record.record_id.clone(),
        record.resource_type.clone(),
        record.data_classes.join(","),
        timestamp(record.effective_time.as_ref()),
        record.version.to_string(),
    ]
}

pub async fn run(
    command: RecordCommand,
    endpoints: &Endpoints,
    operator: &Operator,
    out: Output,
) -> Result<(), String> {
    let mut client = RecordHostingServiceClient::new(connect("records", &endpoints.records)?)
        .max_decoding_message_size(64 << 20);
    let status = |s: tonic::Status| call_failed("records", &endpoints.records, &s);
    match command {
        RecordCommand::Add {
            patient,
            file,
            data_class,
            organisation,
        } => {
            let payload = read_input(&file)?;
            let json: serde_json::Value = serde_json::from_slice(&payload)
                .map_err(|e| format!("--file {}: not JSON: {e}", file.display()))?;
            let (resource_type, _) = resource_type_and_patient(&json);
            let record = Record {
                patient_id: patient,
                resource_type,
                content_type: FHIR_JSON.into(),
                effective_time: effective_time_of(&json),
                source_system: SOURCE_SYSTEM.into(),
                payload,
                data_classes: data_class,
                authoring_organisation_ods_code: organisation,
                ..Default::default()
            };
            let request = CreateRecordRequest {
                request_id: new_request_id(),
                record: Some(record),
                requester: Some(operator.requester()),
            };
            let record = reply(client.create_record(request), status)
                .await?
                .record
                .unwrap_or_default();
            out.message(&record, "carerecord.records.v1.Record", show_record);
        }
        RecordCommand::Get { record_id, version } => {
            let request = GetRecordRequest {
                record_id,
                version,
                ..Default::default()
            };
            let record = reply(client.get_record(request), status)
                .await?
                .record
                .unwrap_or_default();
            out.message(&record, "carerecord.records.v1.Record", show_record);
        }
        RecordCommand::List {
            patient,
            resource_type,
            data_class,
            include_retracted,
        } => {
            let mut records = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = ListRecordsRequest {
                    patient_id: patient.clone(),
                    resource_types: resource_type.clone(),
                    data_classes: data_class.clone(),
                    include_retracted,
                    page_size: 1000,
                    page_token,
                    view: carerecord_contracts::records::v1::RecordView::Metadata as i32,
                    ..Default::default()
                };
                let page = reply(client.list_records(request), status).await?;
                records.extend(page.records);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            out.list(
                &records,
                "carerecord.records.v1.Record",
                &["record_id", "type", "data classes", "effective", "version"],
                record_row,
            );
        }
        RecordCommand::Import { file } => {
            let input = read_input(&file)?;
            let lines = non_blank_lines(&input);
            let progress = progress_bar(lines.len() as u64, "importing");
            let requester = operator.requester();
            let mut batches = Vec::new();
            for (batch_index, chunk) in lines.chunks(IMPORT_BATCH).enumerate() {
                let items = chunk
                    .iter()
                    .map(|line| {
                        let json: serde_json::Value =
                            serde_json::from_slice(line).unwrap_or(serde_json::Value::Null);
                        let (resource_type, patient_id) = resource_type_and_patient(&json);
                        let record = Record {
                            patient_id,
                            resource_type,
                            content_type: FHIR_JSON.into(),
                            effective_time: effective_time_of(&json),
                            source_system: SOURCE_SYSTEM.into(),
                            payload: line.to_vec(),
                            ..Default::default()
                        };
                        ImportItem {
                            request_id: new_request_id(),
                            record: Some(record),
                        }
                    })
                    .collect();
                batches.push(ImportRecordsRequest {
                    items,
                    requester: if batch_index == 0 {
                        Some(requester.clone())
                    } else {
                        None
                    },
                    return_record_ids: false,
                });
            }
            let counter = progress.clone();
            let stream = tokio_stream::iter(
                batches
                    .into_iter()
                    .inspect(move |batch| counter.inc(batch.items.len() as u64)),
            );
            let response = reply(client.import_records(stream), status).await?;
            progress.finish_and_clear();
            out.message(
                &response,
                "carerecord.records.v1.ImportRecordsResponse",
                |r| {
                    println!(
                        "accepted {}, deduplicated {}, rejected {}",
                        r.accepted_count, r.deduplicated_count, r.rejected_count
                    );
                    for rejection in &r.rejections {
                        println!("  line {}: {}", rejection.index + 1, rejection.message);
                    }
                },
            );
            if response.rejected_count > 0 {
                return Err(format!(
                    "{} of {} lines were rejected",
                    response.rejected_count,
                    lines.len()
                ));
            }
        }
        RecordCommand::Export { patient, out: path } => {
            let request = ExportRecordsRequest {
                scope: Some(Scope::Patients(PatientIdList {
                    patient_ids: patient,
                })),
                ..Default::default()
            };
            let mut stream = reply(client.export_records(request), status).await?;
            let (mut sink, progress) = export_sink(&path, "exporting")?;
            let mut count = 0u64;
            while let Some(message) = stream.message().await.map_err(status)? {
                for record in message.records {
                    sink.write_all(&record.payload)
                        .and_then(|()| sink.write_all(b"\n"))
                        .map_err(|e| e.to_string())?;
                    count += 1;
                }
                progress.set_position(count);
            }
            sink.flush().map_err(|e| e.to_string())?;
            progress.finish_and_clear();
            if path.as_os_str() != "-" {
                eprintln!("exported {count} records to {}", path.display());
            }
        }
    }
    Ok(())
}

pub fn progress_bar(length: u64, label: &'static str) -> ProgressBar {
    let bar = if length > 0 {
        ProgressBar::new(length)
    } else {
        ProgressBar::no_length()
    };
    let template = if length > 0 {
        "{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})"
    } else {
        "{msg} {spinner} {pos} ({per_sec})"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(label);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_lines_route_by_subject() {
        let first = serde_json::json!({"resourceType": "Observation", "subject": {"reference": "Patient/p-1"}});
        assert_eq!(
            resource_type_and_patient(&first),
            ("Observation".to_owned(), "p-1".to_owned())
        );
        let second = serde_json::json!({"resourceType": "Encounter", "patient": {"reference": "Patient/p-2"}});
        assert_eq!(
            resource_type_and_patient(&second),
            ("Encounter".to_owned(), "p-2".to_owned())
        );
    }

    #[test]
    fn effective_time_comes_from_the_usual_elements() {
        let observation = serde_json::json!({"effectiveDateTime": "2026-03-01T09:30:00Z"});
        assert_eq!(
            effective_time_of(&observation).unwrap().seconds,
            1_772_357_400
        );
        let encounter = serde_json::json!({"period": {"start": "2026-03-01T09:30:00Z"}});
        assert!(effective_time_of(&encounter).is_some());
        assert!(
            effective_time_of(&serde_json::json!({"effectiveDateTime": "yesterday"})).is_none()
        );
    }
}
