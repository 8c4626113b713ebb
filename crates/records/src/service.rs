//! gRPC handlers for `carerecord.records.v1.RecordHostingService`: validate, call the store,
//! map errors. The streaming RPCs live in [`crate::streams`].

use std::sync::Arc;

use carerecord_contracts::common::v1::Period;
use carerecord_contracts::records::v1::record_hosting_service_server::RecordHostingService;
use carerecord_contracts::records::v1::{
    CreateRecordRequest, CreateRecordResponse, ExportRecordsRequest, ExportRecordsResponse,
    GetRecordRequest, GetRecordResponse, ImportRecordsRequest, ImportRecordsResponse,
    ListRecordVersionsRequest, ListRecordVersionsResponse, ListRecordsRequest, ListRecordsResponse,
    Record, RecordOrder, RecordVersion, RecordView, RetractRecordRequest, RetractRecordResponse,
    UpdateRecordRequest, UpdateRecordResponse, WatchRecordChangesRequest,
    WatchRecordChangesResponse,
};
use carerecord_platform::db::{Database, now_micros};
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::PageTokens;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::RecordsConfig;
use crate::coalesce::{CreateWriter, LatestReader, create_writer, latest_reader};
use crate::domain::record::{
    self, FHIR_JSON, UpdatePaths, actor, apply_update, decode_data_classes, micros_timestamp,
    optional_time, required_uuid, retraction_reason, validate_new, validate_update,
};
use crate::error::Error;
use crate::store::{self, CreateOutcome, Filter, NewRecord, Param, Store, Version};
use crate::streams;
use crate::tokens::{QueryKey, Tokens};

/// Responses stay under 4 MiB: pages stop adding payloads beyond this many bytes.
pub const PAGE_PAYLOAD_BUDGET: usize = 3 << 20;

/// The records API.
#[derive(Debug, Clone)]
pub struct RecordsService {
    pub(crate) store: Store,
    writer: CreateWriter,
    reader: LatestReader,
    pub(crate) config: Arc<RecordsConfig>,
    pub(crate) tokens: Tokens,
    /// Cancelled at shutdown: ends open streams.
    pub(crate) shutdown: CancellationToken,
}

impl RecordsService {
    /// Must be called within a tokio runtime: it starts the create writer and the record reader.
    pub fn new(
        database: Database,
        config: Arc<RecordsConfig>,
        tokens: PageTokens,
        shutdown: CancellationToken,
    ) -> Self {
        let store = Store::new(database);
        RecordsService {
            writer: create_writer(store.clone()),
            reader: latest_reader(store.clone()),
            store,
            config,
            tokens: Tokens::new(tokens),
            shutdown,
        }
    }

    async fn create(&self, request: CreateRecordRequest) -> Result<Record, Error> {
        let mut violations = Violations::new();
        let request_id = required_uuid(&request.request_id, "request_id", &mut violations);
        let requester = actor(request.requester.as_ref(), "requester", &mut violations);
        let fields = match &request.record {
            Some(record) => validate_new(
                record,
                "record",
                &self.config.rules,
                now_micros(),
                &mut violations,
            ),
            None => {
                violations.add("record", "required");
                return Err(Error::Invalid(violations));
            }
        };
        Error::check(violations)?;
        match self
            .writer
            .call(NewRecord {
                request_id: Some(request_id.clone()),
                fields,
                requester,
            })
            .await?
        {
            CreateOutcome::Created(version) => Ok(record_message(*version)),
            CreateOutcome::Deduplicated { record_id } => {
                let first = self.store.get(&record_id, Some(1), true).await?;
                first.map(record_message).ok_or_else(|| {
                    Error::Internal(format!(
                        "request id {request_id} names missing record {record_id}"
                    ))
                })
            }
            CreateOutcome::RequestIdReused => Err(Error::RequestIdReused(request_id)),
        }
    }

    async fn get(&self, request: GetRecordRequest) -> Result<Record, Error> {
        let mut violations = Violations::new();
        let record_id = required_uuid(&request.record_id, "record_id", &mut violations);
        violations.check(
            request.version >= 0,
            "version",
            "must be 0 (the latest) or a version number",
        );
        let with_payload = with_payload(request.view, &mut violations);
        Error::check(violations)?;
        let found = if request.version > 0 {
            self.store
                .get(&record_id, Some(request.version), with_payload)
                .await?
        } else {
            // The latest version, read together with other calls' (see coalesce.rs).
            self.reader.call(record_id.clone()).await?.map(|mut v| {
                if !with_payload {
                    v.fields.payload = Vec::new();
                }
                v
            })
        };
        found.map(record_message).ok_or(Error::NotFound(record_id))
    }

    /// The latest version, checked for existence, etag and state in the contract's order.
    async fn writable_latest(&self, record_id: &str, etag: &str) -> Result<Version, Error> {
        let latest = self
            .store
            .get(record_id, None, true)
            .await?
            .ok_or_else(|| Error::NotFound(record_id.to_owned()))?;
        if latest.etag() != etag {
            return Err(Error::EtagMismatch(record_id.to_owned()));
        }
        if latest.status == store::ENTERED_IN_ERROR {
            return Err(Error::Retracted(record_id.to_owned()));
        }
        Ok(latest)
    }

    async fn append(&self, latest: &Version, next: Version) -> Result<Record, Error> {
        match self.store.append_version(latest.version, next).await? {
            Some(written) => Ok(record_message(written)),
            None => Err(Error::EtagMismatch(latest.record_id.clone())),
        }
    }

    async fn update(&self, request: UpdateRecordRequest) -> Result<Record, Error> {
        let mut violations = Violations::new();
        let Some(record) = request.record else {
            violations.add("record", "required");
            return Err(Error::Invalid(violations));
        };
        let record_id = required_uuid(&record.record_id, "record.record_id", &mut violations);
        violations.check(
            !request.etag.is_empty(),
            "etag",
            "required: the etag of the latest version, as read",
        );
        let requester = actor(request.requester.as_ref(), "requester", &mut violations);
        let mask = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let paths = UpdatePaths::from_mask(&mask, &mut violations);
        let values = validate_update(&record, paths, &self.config.rules, &mut violations);
        Error::check(violations)?;

        let latest = self.writable_latest(&record_id, &request.etag).await?;
        let fields = apply_update(&latest.fields, &record, values, &self.config.rules)
            .map_err(Error::Invalid)?;
        let next = Version {
            fields,
            change_type: store::UPDATED,
            requester,
            ..latest.clone()
        };
        self.append(&latest, next).await
    }

    async fn retract(&self, request: RetractRecordRequest) -> Result<Record, Error> {
        let mut violations = Violations::new();
        let record_id = required_uuid(&request.record_id, "record_id", &mut violations);
        violations.check(
            !request.etag.is_empty(),
            "etag",
            "required: the etag of the latest version, as read",
        );
        retraction_reason(&request.reason, &mut violations);
        let requester = actor(request.requester.as_ref(), "requester", &mut violations);
        Error::check(violations)?;

        let latest = self.writable_latest(&record_id, &request.etag).await?;
        let next = Version {
            change_type: store::RETRACTED,
            status: store::ENTERED_IN_ERROR,
            retraction_reason: request.reason,
            requester,
            ..latest.clone()
        };
        self.append(&latest, next).await
    }

    async fn list_versions(
        &self,
        request: ListRecordVersionsRequest,
    ) -> Result<ListRecordVersionsResponse, Error> {
        let mut violations = Violations::new();
        let record_id = required_uuid(&request.record_id, "record_id", &mut violations);
        let limit = page_size(request.page_size, &mut violations);
        let with_payload = with_payload(request.view, &mut violations);
        Error::check(violations)?;
        let mut query = QueryKey::new("versions");
        query.text(&record_id);
        // Position: the newest version listed by this listing, and the next version to list.
        let (newest, next) = if request.page_token.is_empty() {
            let latest = self
                .store
                .get(&record_id, None, false)
                .await?
                .ok_or_else(|| Error::NotFound(record_id.clone()))?;
            (latest.version, latest.version)
        } else {
            let position = self
                .tokens
                .verify(&query, &request.page_token, 2, "page_token")?;
            (position[0], position[1])
        };
        let rows = self
            .store
            .versions(&record_id, next, limit + 1, with_payload)
            .await?;
        let (rows, more) = fit_page(rows, limit);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => self.tokens.issue(&query, &[newest, last.version - 1]),
            _ => String::new(),
        };
        let versions = rows
            .into_iter()
            .map(|v| {
                let change_type = v.change_type as i32;
                let requester = Some((&v.requester).into());
                RecordVersion {
                    record: Some(record_message(v)),
                    change_type,
                    requester,
                }
            })
            .collect();
        Ok(ListRecordVersionsResponse {
            versions,
            next_page_token,
        })
    }

    async fn list(&self, request: ListRecordsRequest) -> Result<ListRecordsResponse, Error> {
        let mut violations = Violations::new();
        let patient_id = required_uuid(&request.patient_id, "patient_id", &mut violations);
        record::check_type_filter(
            &request.resource_types,
            "resource_types",
            50,
            &mut violations,
        );
        let wanted = labels(&request.data_classes, "data_classes", &mut violations);
        let excluded = labels(
            &request.excluded_data_classes,
            "excluded_data_classes",
            &mut violations,
        );
        let (effective_from, effective_to) = period(
            request.effective_time.as_ref(),
            "effective_time",
            &mut violations,
        );
        let updated_since = optional_time(
            request.updated_since.as_ref(),
            "updated_since",
            &mut violations,
        );
        let by_effective_time = match RecordOrder::try_from(request.order) {
            Ok(RecordOrder::Unspecified | RecordOrder::Creation) => false,
            Ok(RecordOrder::EffectiveTimeDescending) => true,
            Err(_) => {
                violations.add("order", "unknown order");
                false
            }
        };
        let limit = page_size(request.page_size, &mut violations);
        let with_payload = with_payload(request.view, &mut violations);
        Error::check(violations)?;

        let mut query = QueryKey::new("list");
        query
            .text(&patient_id)
            .set(&request.resource_types)
            .set(&wanted)
            .set(&excluded)
            .optional(effective_from)
            .optional(effective_to)
            .optional(updated_since)
            .int(i64::from(request.include_retracted))
            .int(i64::from(by_effective_time));
        // Position: the snapshot, then the keyset after the last record listed: for creation
        // order its creation sequence; for effective time order a state (0 start, 1 after a
        // record with effective_time, 2 after one without), that time and the creation sequence.
        let position = if request.page_token.is_empty() {
            vec![self.store.head().await?, 0, 0, 0]
        } else {
            self.tokens
                .verify(&query, &request.page_token, 4, "page_token")?
        };
        let snapshot = position[0];
        let filter = Filter {
            snapshot,
            patient_ids: vec![patient_id],
            resource_types: request.resource_types.clone(),
            data_classes: wanted,
            excluded_data_classes: excluded,
            effective_from,
            effective_to,
            updated_from: updated_since,
            updated_to: None,
            include_retracted: request.include_retracted,
        };
        let mut sql = store::select(with_payload);
        filter.push_conditions(&mut sql);
        if by_effective_time {
            match position[1] {
                1 => {
                    sql.push(" AND ((effective_time IS NOT NULL AND (effective_time < ")
                        .bind(Param::Int(position[2]))
                        .push(" OR (effective_time = ")
                        .bind(Param::Int(position[2]))
                        .push(" AND creation_seq < ")
                        .bind(Param::Int(position[3]))
                        .push("))) OR effective_time IS NULL)");
                }
                2 => {
                    sql.push(" AND effective_time IS NULL AND creation_seq < ")
                        .bind(Param::Int(position[3]));
                }
                _ => {}
            }
            sql.push(" ORDER BY (CASE WHEN effective_time IS NULL THEN 1 ELSE 0 END), effective_time DESC, creation_seq DESC");
        } else {
            sql.push(" AND creation_seq > ")
                .bind(Param::Int(position[3]))
                .push(" ORDER BY creation_seq");
        }
        sql.push(" LIMIT ").bind(Param::Int(limit + 1));
        let (rows, more) = fit_page(self.store.fetch(&sql).await?, limit);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => {
                let keyset = match last.fields.effective_time {
                    Some(t) => [1, t, last.creation_seq],
                    None => [2, 0, last.creation_seq],
                };
                self.tokens
                    .issue(&query, &[snapshot, keyset[0], keyset[1], keyset[2]])
            }
            _ => String::new(),
        };
        Ok(ListRecordsResponse {
            records: rows.into_iter().map(record_message).collect(),
            next_page_token,
            watch_cursor: self.tokens.feed_cursor(snapshot),
        })
    }
}

/// A Record message of a stored version.
pub fn record_message(v: Version) -> Record {
    let etag = v.etag();
    let f = v.fields;
    Record {
        record_id: v.record_id,
        patient_id: f.patient_id,
        resource_type: f.resource_type,
        content_type: FHIR_JSON.to_owned(),
        payload: f.payload,
        content_hash: f.content_hash,
        payload_size: v.payload_size,
        data_classes: decode_data_classes(&f.data_classes),
        authoring_organisation_ods_code: f.authoring_org,
        author: f.author,
        source_system: f.source_system,
        effective_time: f.effective_time.map(micros_timestamp),
        recorded_time: Some(micros_timestamp(v.recorded_time)),
        status: v.status as i32,
        retraction_reason: v.retraction_reason,
        version: v.version,
        etag,
        create_time: Some(micros_timestamp(v.create_time)),
        update_time: Some(micros_timestamp(v.update_time)),
    }
}

/// Whether a view includes payloads; an unknown view is a violation on `view`.
pub fn with_payload(view: i32, violations: &mut Violations) -> bool {
    match RecordView::try_from(view) {
        Ok(RecordView::Unspecified | RecordView::Full) => true,
        Ok(RecordView::Metadata) => false,
        Err(_) => {
            violations.add("view", "unknown view");
            true
        }
    }
}

/// Page size: 0 means 50, at most 1000.
fn page_size(requested: i32, violations: &mut Violations) -> i64 {
    violations.check(requested >= 0, "page_size", "must not be negative");
    match requested {
        ..=0 => 50,
        n => i64::from(n.min(1000)),
    }
}

/// The first `limit` rows that fit the response budget, and whether more remain.
fn fit_page(mut rows: Vec<Version>, limit: i64) -> (Vec<Version>, bool) {
    let mut more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let mut bytes = 0;
    if let Some(fit) = rows.iter().position(|v| {
        bytes += v.fields.payload.len();
        bytes > PAGE_PAYLOAD_BUDGET
    }) {
        let keep = fit.max(1);
        more |= keep < rows.len();
        rows.truncate(keep);
    }
    (rows, more)
}

/// Validates data class labels used as filters.
pub fn labels(values: &[String], field: &str, violations: &mut Violations) -> Vec<String> {
    record::data_classes(values, field, violations);
    values.to_vec()
}

/// The bounds of a Period; start must be before end when both are set.
pub fn period(
    period: Option<&Period>,
    field: &str,
    violations: &mut Violations,
) -> (Option<i64>, Option<i64>) {
    let Some(period) = period else {
        return (None, None);
    };
    let start = optional_time(period.start.as_ref(), &format!("{field}.start"), violations);
    let end = optional_time(period.end.as_ref(), &format!("{field}.end"), violations);
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        violations.add(field, "start must be before end");
    }
    (start, end)
}

#[tonic::async_trait]
impl RecordHostingService for RecordsService {
    async fn create_record(
        &self,
        request: Request<CreateRecordRequest>,
    ) -> Result<Response<CreateRecordResponse>, Status> {
        let record = self.create(request.into_inner()).await?;
        Ok(Response::new(CreateRecordResponse {
            record: Some(record),
        }))
    }

    async fn get_record(
        &self,
        request: Request<GetRecordRequest>,
    ) -> Result<Response<GetRecordResponse>, Status> {
        let record = self.get(request.into_inner()).await?;
        Ok(Response::new(GetRecordResponse {
            record: Some(record),
        }))
    }

    async fn update_record(
        &self,
        request: Request<UpdateRecordRequest>,
    ) -> Result<Response<UpdateRecordResponse>, Status> {
        let record = self.update(request.into_inner()).await?;
        Ok(Response::new(UpdateRecordResponse {
            record: Some(record),
        }))
    }

    async fn retract_record(
        &self,
        request: Request<RetractRecordRequest>,
    ) -> Result<Response<RetractRecordResponse>, Status> {
        let record = self.retract(request.into_inner()).await?;
        Ok(Response::new(RetractRecordResponse {
            record: Some(record),
        }))
    }

    async fn list_record_versions(
        &self,
        request: Request<ListRecordVersionsRequest>,
    ) -> Result<Response<ListRecordVersionsResponse>, Status> {
        Ok(Response::new(
            self.list_versions(request.into_inner()).await?,
        ))
    }

    async fn list_records(
        &self,
        request: Request<ListRecordsRequest>,
    ) -> Result<Response<ListRecordsResponse>, Status> {
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    async fn export_records(
        &self,
        request: Request<ExportRecordsRequest>,
    ) -> Result<Response<streams::ResponseStream<ExportRecordsResponse>>, Status> {
        Ok(Response::new(
            streams::export(self, request.into_inner()).await?,
        ))
    }

    async fn watch_record_changes(
        &self,
        request: Request<WatchRecordChangesRequest>,
    ) -> Result<Response<streams::ResponseStream<WatchRecordChangesResponse>>, Status> {
        Ok(Response::new(
            streams::watch(self, request.into_inner()).await?,
        ))
    }

    async fn import_records(
        &self,
        request: Request<Streaming<ImportRecordsRequest>>,
    ) -> Result<Response<ImportRecordsResponse>, Status> {
        Ok(Response::new(
            streams::import(self, request.into_inner()).await?,
        ))
    }
}
