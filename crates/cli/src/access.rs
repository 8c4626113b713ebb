//! The integrator's view: read a patient's record through data access, break glass, see who saw a
//! record, extract for research, verify the audit log offline, and mint development tokens.

use std::io::Write;
use std::path::PathBuf;

use carerecord_access::dev_token::{DevToken, mint};
use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::access::v1::{
    BreakGlassReadPatientRecordRequest, Cohort, ExtractPseudonymisedRequest,
    GetAuditPublicKeyRequest, GetSignedTreeHeadRequest, ListAuditEntriesRequest,
    ListDisclosuresRequest, PatientIdList, PatientReference, ReadPatientRecordResponse,
    SignedTreeHead, cohort::Selection, extract_pseudonymised_response::Item,
    patient_reference::Reference,
};
use clap::{Args, Subcommand};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;

use crate::connect::{Endpoints, Operator, connect};
use crate::output::{Output, call_failed, print_table, reply, timestamp};
use crate::patient::parse_identifier;

/// How the patient is named: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PatientArgs {
    /// The patient's NHS number.
    #[arg(long)]
    nhs_number: Option<String>,
    /// The patient id from identity.
    #[arg(long)]
    patient_id: Option<String>,
    /// A local identifier as SYSTEM|VALUE.
    #[arg(long)]
    identifier: Option<String>,
}

impl PatientArgs {
    pub fn from_parts(
        nhs_number: Option<String>,
        patient_id: Option<String>,
        identifier: Option<String>,
    ) -> Self {
        PatientArgs {
            nhs_number,
            patient_id,
            identifier,
        }
    }

    pub fn reference(&self) -> Result<PatientReference, String> {
        let reference = match (&self.nhs_number, &self.patient_id, &self.identifier) {
            (Some(nhs), _, _) => Reference::NhsNumber(nhs.clone()),
            (_, Some(id), _) => Reference::PatientId(id.clone()),
            (_, _, Some(raw)) => Reference::Identifier(parse_identifier(raw)?),
            _ => return Err("name the patient: --nhs-number, --patient-id or --identifier".into()),
        };
        Ok(PatientReference {
            reference: Some(reference),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Fetch the whole audit log and its signed tree head, and verify them offline (RFC 6962).
    Verify {
        /// A tree head saved by an earlier verify: the log must extend it. Updated on success.
        #[arg(long)]
        head: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a DEVELOPMENT token signed by the well-known development key. Data access accepts it
    /// only when started with CARERECORD_DEV_TOKENS=true (as `carerecord up` does); never in production.
    Mint {
        /// SMART scopes, space separated.
        #[arg(long, default_value = "user/*.rs")]
        scope: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Read a patient's record for a stated purpose: consent decides, withheld data is counted, all is audited.
    Read {
        #[command(flatten)]
        patient: PatientArgs,
        /// HL7 v3 ActReason purpose of use.
        #[arg(long, default_value = "TREAT")]
        purpose: String,
        /// FHIR resource types (repeat).
        #[arg(long = "type")]
        resource_type: Vec<String>,
    },
    /// Emergency access with a stated reason (purpose ETREAT); flagged for review.
    BreakGlass {
        #[command(flatten)]
        patient: PatientArgs,
        #[arg(long)]
        reason: String,
    },
    /// Who accessed a patient's record, when and why.
    Disclosures {
        #[command(flatten)]
        patient: PatientArgs,
    },
    /// A pseudonymised extract for research or planning, as NDJSON.
    Extract {
        #[arg(long)]
        project: String,
        /// HOPERAT (planning: the default rules permit pseudonymised data of patients who have not
        /// opted out) or HRESCH (research: needs the patients' explicit consent or an approved legal basis).
        #[arg(long, default_value = "HOPERAT")]
        purpose: String,
        /// Patient ids in the cohort (repeat).
        #[arg(long, required = true)]
        patient: Vec<String>,
        /// Output file; `-` writes standard output.
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
}

/// Adds `authorization: Bearer …` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A development token for the operator, minted locally.
pub fn dev_token(operator: &Operator, scope: &str, ttl_seconds: u64) -> Result<String, String> {
    mint(&DevToken {
        subject: operator.user.clone(),
        organisation_ods_code: operator.organisation.clone(),
        role_code: operator.role.clone(),
        display_name: operator.user.clone(),
        client_id: "carerecord-cli".into(),
        scope: scope.into(),
        audience: carerecord_access::config::DEFAULT_AUDIENCE.into(),
        ttl_seconds,
        ..Default::default()
    })
}

/// A data access client carrying `token`, or a development token for the operator with `scope`.
pub fn client_with_scope(
    endpoints: &Endpoints,
    operator: &Operator,
    token: Option<String>,
    scope: &str,
) -> Result<AccessClient, String> {
    let token = match token {
        Some(token) => token,
        None => {
            eprintln!(
                "(no --token or CARERECORD_TOKEN: using a development token for {}; data access accepts it only in development)",
                operator.user
            );
            dev_token(operator, scope, 900)?
        }
    };
    let header = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "--token has characters a header cannot carry".to_owned())?;
    Ok(DataAccessServiceClient::with_interceptor(
        connect("access", &endpoints.access)?,
        Bearer(header),
    )
    .max_decoding_message_size(64 << 20))
}

pub type AccessClient = DataAccessServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

fn client(
    endpoints: &Endpoints,
    operator: &Operator,
    token: Option<String>,
) -> Result<AccessClient, String> {
    client_with_scope(endpoints, operator, token, "user/*.rs")
}

fn show_read(response: &ReadPatientRecordResponse) {
    let summary = response.disclosure.clone().unwrap_or_default();
    println!(
        "patient {}: {} records returned, {} withheld",
        response.patient_id, summary.returned_count, summary.withheld_count
    );
    for rule in &summary.withheld_by_rule {
        println!("  withheld {} under {}", rule.count, rule.reason_code);
    }
    print_table(
        &["record_id", "type", "data classes", "effective"],
        response.records.iter().map(|r| {
            vec![
                r.record_id.clone(),
                r.resource_type.clone(),
                r.data_classes.join(","),
                timestamp(r.effective_time.as_ref()),
            ]
        }),
    );
    println!(
        "audit entry {} (index {})",
        response.audit_entry_id, response.audit_index
    );
}

pub async fn run(
    command: AccessCommand,
    token: Option<String>,
    endpoints: &Endpoints,
    operator: &Operator,
    out: Output,
) -> Result<(), String> {
    let mut client = client(endpoints, operator, token)?;
    let status = |s: tonic::Status| call_failed("access", &endpoints.access, &s);
    const READ: &str = "carerecord.access.v1.ReadPatientRecordResponse";
    match command {
        AccessCommand::Read {
            patient,
            purpose,
            resource_type,
        } => {
            let request = carerecord_contracts::access::v1::ReadPatientRecordRequest {
                patient: Some(patient.reference()?),
                purpose_of_use: purpose,
                resource_types: resource_type,
                page_size: 1000,
                ..Default::default()
            };
            let response = reply(client.read_patient_record(request), status).await?;
            out.message(&response, READ, show_read);
        }
        AccessCommand::BreakGlass { patient, reason } => {
            let request = BreakGlassReadPatientRecordRequest {
                patient: Some(patient.reference()?),
                reason,
                page_size: 1000,
                ..Default::default()
            };
            let response = reply(client.break_glass_read_patient_record(request), status).await?;
            out.message(
                &response,
                "carerecord.access.v1.BreakGlassReadPatientRecordResponse",
                |r| {
                    println!("BREAK-GLASS access recorded and flagged for review.");
                    show_read(&ReadPatientRecordResponse {
                        patient_id: r.patient_id.clone(),
                        resolved_from_merged_patient_id: r.resolved_from_merged_patient_id.clone(),
                        records: r.records.clone(),
                        disclosure: r.disclosure.clone(),
                        decision: r.decision.clone(),
                        audit_entry_id: r.audit_entry_id.clone(),
                        audit_index: r.audit_index,
                        next_page_token: r.next_page_token.clone(),
                    });
                },
            );
        }
        AccessCommand::Disclosures { patient } => {
            let request = ListDisclosuresRequest {
                patient: Some(patient.reference()?),
                page_size: 1000,
                ..Default::default()
            };
            let response = reply(client.list_disclosures(request), status).await?;
            out.list(
                &response.disclosures,
                "carerecord.access.v1.Disclosure",
                &[
                    "time",
                    "user",
                    "organisation",
                    "role",
                    "purpose",
                    "returned",
                    "withheld",
                ],
                |d| {
                    let who = d.requester.clone().unwrap_or_default();
                    vec![
                        timestamp(d.time.as_ref()),
                        who.user_id,
                        who.organisation_ods_code,
                        who.role_code,
                        d.purpose_of_use.clone(),
                        d.returned_count.to_string(),
                        d.withheld_count.to_string(),
                    ]
                },
            );
        }
        AccessCommand::Extract {
            project,
            purpose,
            patient,
            out: path,
        } => {
            let request = ExtractPseudonymisedRequest {
                project_id: project,
                purpose_of_use: purpose,
                cohort: Some(Cohort {
                    selection: Some(Selection::PatientList(PatientIdList {
                        patient_ids: patient,
                    })),
                }),
                ..Default::default()
            };
            let mut stream = reply(client.extract_pseudonymised(request), status).await?;
            let (mut sink, progress) = crate::record::export_sink(&path, "extracting")?;
            while let Some(message) = stream.message().await.map_err(status)? {
                match message.item {
                    Some(Item::Row(row)) => {
                        let line = serde_json::json!({
                            "pseudonym": row.pseudonym,
                            "resource_type": row.resource_type,
                            "resource": serde_json::from_slice::<serde_json::Value>(&row.payload).unwrap_or(serde_json::Value::Null),
                        });
                        writeln!(sink, "{line}").map_err(|e| e.to_string())?;
                        progress.inc(1);
                    }
                    Some(Item::Summary(summary)) => {
                        progress.finish_and_clear();
                        let counts = summary.cohort_counts.unwrap_or_default();
                        eprintln!(
                            "{} rows; {} patients included, {} excluded by the national data opt-out, {} not found; audit entry {}",
                            summary.rows,
                            counts.patients_included,
                            counts.patients_excluded_opt_out,
                            counts.patients_not_found,
                            summary.audit_entry_id
                        );
                    }
                    None => {}
                }
            }
            sink.flush().map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

pub async fn audit(
    command: AuditCommand,
    token: Option<String>,
    endpoints: &Endpoints,
    operator: &Operator,
) -> Result<(), String> {
    let AuditCommand::Verify { head } = command;
    // Reading the whole audit log is a privacy officer's (R0001) task: a development token says so.
    let officer = Operator {
        role: "R0001".into(),
        ..operator.clone()
    };
    let mut client = client(
        endpoints,
        if token.is_some() { operator } else { &officer },
        token,
    )?;
    let status = |s: tonic::Status| call_failed("access", &endpoints.access, &s);
    let tree_head = reply(
        client.get_signed_tree_head(GetSignedTreeHeadRequest { tree_size: 0 }),
        status,
    )
    .await?
    .tree_head
    .unwrap_or_default();
    let key = reply(
        client.get_audit_public_key(GetAuditPublicKeyRequest {
            key_id: tree_head.key_id.clone(),
        }),
        status,
    )
    .await?
    .key
    .unwrap_or_default();
    let public_key: [u8; 32] = key
        .public_key
        .as_slice()
        .try_into()
        .map_err(|_| "the audit public key is not 32 bytes (Ed25519)".to_owned())?;

    let mut entries = Vec::new();
    let mut page_token = String::new();
    let progress =
        crate::record::progress_bar(tree_head.tree_size.max(0) as u64, "fetching the audit log");
    loop {
        let request = ListAuditEntriesRequest {
            start_index: 0,
            tree_size: tree_head.tree_size,
            page_size: 1000,
            page_token,
        };
        let page = reply(client.list_audit_entries(request), status).await?;
        progress.inc(page.entries.len() as u64);
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    progress.finish_and_clear();

    let trusted =
        match &head {
            Some(path) if path.exists() => {
                let bytes =
                    std::fs::read(path).map_err(|e| format!("--head {}: {e}", path.display()))?;
                Some(SignedTreeHead::decode(bytes.as_slice()).map_err(|e| {
                    format!("--head {}: not a saved tree head: {e}", path.display())
                })?)
            }
            _ => None,
        };
    // The server's current head must describe exactly these entries; an earlier saved head must be a prefix.
    let against_current =
        carerecord_access::audit::verify_entries(&entries, &public_key, Some(&tree_head));
    if !against_current.ok {
        return Err(format!(
            "audit log verification FAILED: {}",
            against_current.message
        ));
    }
    if let Some(trusted) = &trusted {
        let against_trusted =
            carerecord_access::audit::verify_entries(&entries, &public_key, Some(trusted));
        if !against_trusted.ok {
            return Err(format!(
                "audit log verification FAILED against the saved head: {}",
                against_trusted.message
            ));
        }
    }
    println!(
        "audit log verified: {} (key {})",
        against_current.message, key.key_id
    );
    if let Some(path) = head {
        std::fs::write(&path, tree_head.encode_to_vec())
            .map_err(|e| format!("--head {}: {e}", path.display()))?;
        println!(
            "saved the current tree head (size {}) to {}",
            tree_head.tree_size,
            path.display()
        );
    }
    Ok(())
}

pub fn token(command: TokenCommand, operator: &Operator) -> Result<(), String> {
    let TokenCommand::Mint { scope, ttl } = command;
    println!("{}", dev_token(operator, &scope, ttl)?);
    Ok(())
}
