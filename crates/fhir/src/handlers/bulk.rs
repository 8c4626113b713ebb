//! FHIR Bulk Data Access (v2) for research and planning projects: `GET /Group/{project}/$export`
//! starts a job that runs the front door's pseudonymised extract (so the national data opt-out and
//! every consent decision apply, and the extract is audited there) and writes one NDJSON file per
//! resource type; the client polls the status URL, then downloads the files.
//!
//! Files stream from the extract to disk and from disk to the client, so memory stays flat whatever
//! the size. A job belongs to the client that started it: status and files need a valid token
//! (checked by data access) of the same subject and client. Files are deleted on DELETE, or when
//! they have waited longer than `CARERECORD_FHIR_EXPORT_TTL`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carerecord_contracts::access::v1::cohort::Selection;
use carerecord_contracts::access::v1::extract_pseudonymised_response::Item;
use carerecord_contracts::access::v1::{
    Cohort, CohortFilter, ExtractPseudonymisedRequest, GetAuditPublicKeyRequest,
};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::{legal_basis, purpose};
use crate::Gateway;
use crate::config::FhirConfig;
use crate::error::{Error, Issue, fhir_json, operation_outcome};
use crate::query::{Query, alternatives};
use crate::table::is_clinical_type;

/// How often a client polling a running job is told to come back.
const RETRY_AFTER_SECONDS: u64 = 2;

#[derive(Debug, Clone)]
enum JobState {
    Running { rows: u64 },
    Done { manifest: Value },
    Failed { outcome: Value, status: StatusCode },
}

#[derive(Debug)]
struct Job {
    owner: String,
    state: JobState,
    finished: Option<Instant>,
    cancel: CancellationToken,
    dir: PathBuf,
}

/// The export jobs of this gateway process.
#[derive(Clone)]
pub struct Jobs {
    jobs: Arc<Mutex<HashMap<String, Job>>>,
    dir: PathBuf,
    ttl: Duration,
}

impl Jobs {
    /// Makes the export directory and starts the task that removes expired jobs until `stop`.
    pub fn start(config: &FhirConfig, stop: CancellationToken) -> std::io::Result<Jobs> {
        std::fs::create_dir_all(&config.export_dir)?;
        let jobs = Jobs {
            jobs: Arc::default(),
            dir: config.export_dir.clone(),
            ttl: config.export_ttl,
        };
        let sweeper = jobs.clone();
        tokio::spawn(async move {
            let every = (sweeper.ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(every) => sweeper.sweep(),
                }
            }
        });
        Ok(jobs)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sweep(&self) {
        let expired: Vec<(String, PathBuf)> = self
            .lock()
            .iter()
            .filter(|(_, job)| job.finished.is_some_and(|t| t.elapsed() > self.ttl))
            .map(|(id, job)| (id.clone(), job.dir.clone()))
            .collect();
        for (id, dir) in expired {
            self.lock().remove(&id);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(error = %e, "cannot remove an expired export's files");
            }
        }
    }

    fn set(&self, id: &str, state: JobState) {
        if let Some(job) = self.lock().get_mut(id) {
            if !matches!(state, JobState::Running { .. }) {
                job.finished = Some(Instant::now());
            }
            job.state = state;
        }
    }
}

/// Who a request comes from, by its token's `sub` and `client_id` claims. Only compared after data
/// access has accepted the same token.
fn owner(headers: &HeaderMap) -> String {
    let claims = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| t.split('.').nth(1))
        .and_then(|c| URL_SAFE_NO_PAD.decode(c.trim_end_matches('=')).ok())
        .and_then(|c| serde_json::from_slice::<Value>(&c).ok())
        .unwrap_or(Value::Null);
    format!(
        "{}|{}",
        claims["sub"].as_str().unwrap_or(""),
        claims["client_id"].as_str().unwrap_or("")
    )
}

/// The job `id`'s directory and state, if the caller owns it; the token is checked by data access.
async fn owned(
    gateway: &Gateway,
    headers: &HeaderMap,
    id: &str,
) -> Result<(PathBuf, JobState), Error> {
    gateway
        .access()
        .get_audit_public_key(gateway.call(headers, GetAuditPublicKeyRequest::default()))
        .await?;
    let caller = owner(headers);
    let jobs = gateway.exports.lock();
    match jobs.get(id) {
        Some(job) if job.owner == caller => Ok((job.dir.clone(), job.state.clone())),
        _ => Err(Error::NotFound(
            "no such export job (it may have expired)".into(),
        )),
    }
}

/// `GET /Group/{project}/$export` with `Prefer: respond-async`: 202 with `Content-Location`.
pub async fn kick_off(
    State(gateway): State<Gateway>,
    Path(project): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Error> {
    let respond_async = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == "respond-async"));
    if !respond_async {
        return Err(Error::invalid(
            "a Bulk Data export needs Prefer: respond-async",
            "Prefer",
        ));
    }
    let query = Query::parse(uri.query())?;
    if let Some(format) = query.one("_outputFormat")?
        && !matches!(
            format.value.as_str(),
            "application/fhir+ndjson" | "application/ndjson" | "ndjson"
        )
    {
        return Err(Error::invalid(
            "only NDJSON output is supported",
            "_outputFormat",
        ));
    }
    if query.one("_since")?.is_some() {
        return Err(Error::invalid(
            "_since is not supported: the extract selects by effective time, not by when records were written",
            "_since",
        ));
    }
    let types: Vec<String> = query
        .all("_type")
        .flat_map(|p| alternatives(&p.value))
        .collect();
    if let Some(bad) = types.iter().find(|t| !is_clinical_type(t)) {
        return Err(Error::invalid(
            format!(
                "{} is not an exportable resource type",
                carerecord_platform::status_policy::bounded(bad, 64)
            ),
            "_type",
        ));
    }
    let purpose = match headers.get(super::PURPOSE_HEADER) {
        Some(_) => purpose(&headers)?,
        None => "HRESCH".to_owned(),
    };
    let request = ExtractPseudonymisedRequest {
        project_id: project,
        purpose_of_use: purpose,
        legal_basis: legal_basis(&headers)?,
        cohort: Some(Cohort {
            selection: Some(Selection::Filter(CohortFilter {
                resource_types: types.clone(),
                effective_period: None,
            })),
        }),
        resource_types: types,
        ..ExtractPseudonymisedRequest::default()
    };
    // Start the extract now, so a refusal (scope, project, consent service down) is the kick-off's
    // answer rather than a failed job.
    let stream = gateway
        .access()
        .extract_pseudonymised(gateway.call(&headers, request))
        .await?
        .into_inner();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = gateway.exports.dir.join(&id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| Error::Upstream(tonic::Status::internal(format!("export directory: {e}"))))?;
    let cancel = CancellationToken::new();
    gateway.exports.lock().insert(
        id.clone(),
        Job {
            owner: owner(&headers),
            state: JobState::Running { rows: 0 },
            finished: None,
            cancel: cancel.clone(),
            dir: dir.clone(),
        },
    );
    let base = gateway.base_url(&headers);
    let request_url = format!("{base}{}", uri.path_and_query().map_or("", |p| p.as_str()));
    tokio::spawn(run(
        gateway.exports.clone(),
        id.clone(),
        stream,
        dir,
        cancel,
        base.clone(),
        request_url,
    ));
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("{base}/$export-status/{id}")) {
        response
            .headers_mut()
            .insert(header::CONTENT_LOCATION, location);
    }
    Ok(response)
}

/// Writes the extract's rows to one NDJSON file per type, then records the manifest.
async fn run(
    jobs: Jobs,
    id: String,
    mut stream: tonic::Streaming<carerecord_contracts::access::v1::ExtractPseudonymisedResponse>,
    dir: PathBuf,
    cancel: CancellationToken,
    base: String,
    request_url: String,
) {
    let transaction_time =
        carerecord_platform::time::rfc3339(carerecord_platform::db::now_micros());
    let mut files: HashMap<String, (tokio::io::BufWriter<tokio::fs::File>, u64)> = HashMap::new();
    let mut rows = 0u64;
    let failed = |status: StatusCode, text: String| JobState::Failed {
        outcome: operation_outcome(&[Issue::error("exception", text)]),
        status,
    };
    let outcome = loop {
        let message = tokio::select! {
            () = cancel.cancelled() => return,
            message = stream.message() => message,
        };
        match message {
            Ok(Some(response)) => match response.item {
                Some(Item::Row(row)) => {
                    let line = one_line(&row.payload);
                    let entry = match files.get_mut(&row.resource_type) {
                        Some(entry) => entry,
                        None => {
                            if !is_clinical_type(&row.resource_type) {
                                break failed(
                                    StatusCode::BAD_GATEWAY,
                                    "the extract sent an unknown resource type".into(),
                                );
                            }
                            let path = dir.join(format!("{}.ndjson", row.resource_type));
                            match tokio::fs::File::create(&path).await {
                                Ok(file) => files
                                    .entry(row.resource_type.clone())
                                    .or_insert((tokio::io::BufWriter::new(file), 0)),
                                Err(e) => {
                                    break failed(
                                        StatusCode::INTERNAL_SERVER_ERROR,
                                        format!("cannot write the export: {e}"),
                                    );
                                }
                            }
                        }
                    };
                    if let Err(e) = async {
                        entry.0.write_all(&line).await?;
                        entry.0.write_all(b"\n").await
                    }
                    .await
                    {
                        break failed(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("cannot write the export: {e}"),
                        );
                    }
                    entry.1 += 1;
                    rows += 1;
                    if rows.is_multiple_of(1000) {
                        jobs.set(&id, JobState::Running { rows });
                    }
                }
                Some(Item::Summary(_)) => {
                    let mut output = Vec::new();
                    let mut types: Vec<&String> = files.keys().collect();
                    types.sort();
                    for name in types {
                        let count = files[name].1;
                        output.push(json!({
                            "type": name,
                            "url": format!("{base}/$export-file/{id}/{name}.ndjson"),
                            "count": count,
                        }));
                    }
                    let mut flushed = true;
                    for (writer, _) in files.values_mut() {
                        flushed &= writer.flush().await.is_ok();
                    }
                    if !flushed {
                        break failed(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "cannot finish writing the export".into(),
                        );
                    }
                    break JobState::Done {
                        manifest: json!({
                            "transactionTime": transaction_time,
                            "request": request_url,
                            "requiresAccessToken": true,
                            "output": output,
                            "error": [],
                        }),
                    };
                }
                None => {}
            },
            Ok(None) => {
                break failed(
                    StatusCode::BAD_GATEWAY,
                    "the extract ended without its summary: it is incomplete; start a new export"
                        .into(),
                );
            }
            Err(status) => {
                let (http, issues, _) = crate::error::from_status(&status);
                break JobState::Failed {
                    outcome: operation_outcome(&issues),
                    status: http,
                };
            }
        }
    };
    jobs.set(&id, outcome);
}

/// A payload as one NDJSON line (stored payloads may be pretty-printed).
fn one_line(payload: &[u8]) -> Vec<u8> {
    if !payload.contains(&b'\n') && !payload.contains(&b'\r') {
        return payload.to_vec();
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(value) => value.to_string().into_bytes(),
        Err(_) => payload
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
            .collect(),
    }
}

/// `GET /$export-status/{job}`: 202 with progress while running, the manifest when done.
pub async fn status(
    State(gateway): State<Gateway>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let (_, state) = owned(&gateway, &headers, &job).await?;
    Ok(match state {
        JobState::Running { rows } => {
            let mut response = StatusCode::ACCEPTED.into_response();
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            if let Ok(progress) = HeaderValue::from_str(&format!("{rows} rows written")) {
                headers.insert("x-progress", progress);
            }
            response
        }
        JobState::Done { manifest } => {
            let mut response = (StatusCode::OK, manifest.to_string()).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        JobState::Failed { outcome, status } => fhir_json(status, &outcome),
    })
}

/// `DELETE /$export-status/{job}`: cancels the job and removes its files.
pub async fn cancel(
    State(gateway): State<Gateway>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let (dir, _) = owned(&gateway, &headers, &job).await?;
    if let Some(removed) = gateway.exports.lock().remove(&job) {
        removed.cancel.cancel();
    }
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
        tracing::warn!(error = %e, "cannot remove a cancelled export's files");
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET /$export-file/{job}/{file}`: one NDJSON output file, streamed from disk.
pub async fn file(
    State(gateway): State<Gateway>,
    Path((job, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let (dir, state) = owned(&gateway, &headers, &job).await?;
    let name_ok = file.strip_suffix(".ndjson").is_some_and(is_clinical_type);
    if !matches!(state, JobState::Done { .. }) || !name_ok {
        return Err(Error::NotFound("no such export file".into()));
    }
    let handle = tokio::fs::File::open(dir.join(&file))
        .await
        .map_err(|_| Error::NotFound("no such export file".into()))?;
    let chunks = futures::stream::unfold(handle, |mut handle| async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = vec![0u8; 64 * 1024];
        match handle.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(axum::body::Bytes::from(buffer)),
                    handle,
                ))
            }
            Err(e) => Some((Err(e), handle)),
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+ndjson"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines_never_break() {
        assert_eq!(one_line(br#"{"a":1}"#), br#"{"a":1}"#);
        assert_eq!(one_line(b"{\n  \"a\": 1\n}"), br#"{"a":1}"#);
    }

    #[test]
    fn owners_are_told_apart_by_subject_and_client() {
        let token = |claims: &str| {
            let mut headers = HeaderMap::new();
            let value = format!("Bearer e30.{}.sig", URL_SAFE_NO_PAD.encode(claims));
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert_eq!(owner(&token(r#"{"sub":"s","client_id":"c"}"#)), "s|c");
        assert_ne!(
            owner(&token(r#"{"sub":"s","client_id":"c"}"#)),
            owner(&token(r#"{"sub":"s","client_id":"d"}"#))
        );
    }
}
