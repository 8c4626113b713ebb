//! gRPC handlers for `carerecord.identity.v1.PatientIdentityService`: validate, call the
//! domain and the store, map errors.

use std::pin::Pin;
use std::sync::Arc;

use carerecord_contracts::common::v1::{ChangeType, Date, Identifier, Requester};
use carerecord_contracts::identity::v1::patient_identity_service_server::PatientIdentityService;
use carerecord_contracts::identity::v1::{
    batch_create_patients_result, match_patients_request, search_patients_request, *,
};
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::PageTokens;
use prost::Message;
use tokio::sync::Notify;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::Settings;
use crate::domain::features::Features;
use crate::domain::model::{Classification, Level};
use crate::domain::validate::{self, NHS_NUMBER_SYSTEM, Parts};
use crate::domain::{compare, normalize, phonetic};
use crate::error::{Error, IDENTIFIER, MATCH_PARAMETERS};
use crate::matching;
use crate::store::{self, NewPatient, SearchArg, Store, Stored};
use carerecord_platform::nhs_number as nhs;

const MAX_BATCH: usize = 1000;
const MAX_REASON: usize = 1000;
const FEED_QUERY: &[u8] = b"carerecord.identity.v1/feed";

/// The identity API.
#[derive(Debug, Clone)]
pub struct IdentityService {
    store: Store,
    settings: Arc<Settings>,
    tokens: PageTokens,
    /// Woken after every committed write, so change-feed streams deliver without waiting a poll.
    notify: Arc<Notify>,
    /// Cancelled when the server shuts down: open feed streams end with UNAVAILABLE.
    shutdown: CancellationToken,
    matcher: Arc<matching::Matcher>,
}

impl IdentityService {
    pub(crate) fn new(
        store: Store,
        settings: Settings,
        tokens: PageTokens,
        shutdown: CancellationToken,
    ) -> Self {
        let settings = Arc::new(settings);
        IdentityService {
            matcher: Arc::new(matching::Matcher::new(store.clone(), settings.clone())),
            store,
            settings,
            tokens,
            notify: Arc::new(Notify::new()),
            shutdown,
        }
    }
}

fn parse_uuid(raw: &str, field: &str, v: &mut Violations) -> String {
    let raw = raw.trim();
    if raw.is_empty() {
        v.add(field, "is required");
        return String::new();
    }
    match uuid::Uuid::try_parse(raw) {
        Ok(id) if raw.len() == 36 => id.hyphenated().to_string(),
        _ => {
            v.add(
                field,
                "must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
            );
            String::new()
        }
    }
}

fn check_requester(requester: Option<&Requester>, field: &str, v: &mut Violations) {
    match requester {
        None => v.add(field, "is required"),
        Some(r) if r.user_id.trim().is_empty() => v.add(format!("{field}.user_id"), "is required"),
        Some(_) => {}
    }
}

fn check_reason(reason: &str, required: bool, v: &mut Violations) {
    if required && reason.trim().is_empty() {
        v.add("reason", "is required");
    }
    if reason.chars().count() > MAX_REASON {
        v.add("reason", format!("must be at most {MAX_REASON} characters"));
    }
}

fn body_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Validates one create item; `prefix` is empty for CreatePatient and the item path otherwise
/// is still relative to the item, as the contract asks.
fn new_patient(request: &CreatePatientRequest, v: &mut Violations) -> Option<NewPatient> {
    let request_id = parse_uuid(&request.request_id, "request_id", v);
    let Some(patient) = &request.patient else {
        v.add("patient", "is required");
        return None;
    };
    let mut normalised = patient.clone();
    validate::patient(&mut normalised, Parts::ALL, "patient", v);
    v.is_empty().then(|| NewPatient {
        request_id,
        body_hash: body_hash(&patient.encode_to_vec()),
        patient: writable(normalised),
    })
}

/// Only the writable fields of a patient (output-only fields are ignored on input).
fn writable(p: Patient) -> Patient {
    Patient {
        nhs_number: p.nhs_number,
        identifiers: p.identifiers,
        names: p.names,
        birth_date: p.birth_date,
        gender: p.gender,
        addresses: p.addresses,
        telecoms: p.telecoms,
        deceased_date: p.deceased_date,
        ..Patient::default()
    }
}

fn date_int(d: &Date) -> i64 {
    i64::from(d.year) * 10_000 + i64::from(d.month) * 100 + i64::from(d.day)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchPatientChangesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PatientIdentityService for IdentityService {
    async fn create_patient(
        &self,
        request: Request<CreatePatientRequest>,
    ) -> Result<Response<CreatePatientResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::new();
        check_requester(request.requester.as_ref(), "requester", &mut v);
        let item = new_patient(&request, &mut v);
        let (Some(item), true) = (item, v.is_empty()) else {
            return Err(Error::Invalid(v).into());
        };
        let requester = request.requester.unwrap_or_default();
        let mut results = self.store.create(vec![Ok(item)], &requester).await?;
        let patient = results
            .pop()
            .unwrap_or_else(|| Err(Error::Corrupt("no result".into())))?;
        self.notify.notify_waiters();
        Ok(Response::new(CreatePatientResponse {
            patient: Some(patient),
        }))
    }

    async fn batch_create_patients(
        &self,
        request: Request<BatchCreatePatientsRequest>,
    ) -> Result<Response<BatchCreatePatientsResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::new();
        if request.requests.is_empty() || request.requests.len() > MAX_BATCH {
            v.add("requests", format!("must hold 1 to {MAX_BATCH} items"));
        }
        check_requester(request.requester.as_ref(), "requester", &mut v);
        let mut seen = std::collections::HashMap::new();
        for (i, item) in request.requests.iter().enumerate() {
            let id = item.request_id.trim().to_lowercase();
            if id.is_empty() {
                continue;
            }
            if let Some(first) = seen.insert(id, i) {
                v.add(
                    format!("requests[{i}].request_id"),
                    format!("repeats the request_id of requests[{first}]"),
                );
            }
        }
        v.into_result()?;
        let requester = request.requester.unwrap_or_default();
        let items: Vec<Result<NewPatient, Error>> = request
            .requests
            .iter()
            .map(|item| {
                let mut v = Violations::new();
                if let Some(r) = &item.requester
                    && *r != Requester::default()
                    && *r != requester
                {
                    v.add("requester", "must be unset or equal to the batch requester");
                }
                let new = new_patient(item, &mut v);
                match new {
                    Some(n) if v.is_empty() => Ok(n),
                    _ => Err(Error::Invalid(v)),
                }
            })
            .collect();
        let results = self.store.create(items, &requester).await?;
        self.notify.notify_waiters();
        let mut response = BatchCreatePatientsResponse::default();
        for (i, result) in results.into_iter().enumerate() {
            let outcome = match result {
                Ok(p) => {
                    response.succeeded_count += 1;
                    batch_create_patients_result::Outcome::Patient(p)
                }
                Err(e @ (Error::Database(_) | Error::Corrupt(_))) => return Err(e.into()),
                Err(e) => {
                    response.failed_count += 1;
                    batch_create_patients_result::Outcome::Error(e.to_batch_item())
                }
            };
            response.results.push(BatchCreatePatientsResult {
                position: i as i32,
                outcome: Some(outcome),
            });
        }
        Ok(Response::new(response))
    }

    async fn get_patient(
        &self,
        request: Request<GetPatientRequest>,
    ) -> Result<Response<GetPatientResponse>, Status> {
        let mut v = Violations::new();
        let id = parse_uuid(&request.get_ref().patient_id, "patient_id", &mut v);
        v.into_result()?;
        let stored = self
            .store
            .get(&id)
            .await?
            .ok_or_else(|| Error::patient_not_found(&id))?;
        Ok(Response::new(GetPatientResponse {
            patient: Some(stored.patient),
        }))
    }

    async fn update_patient(
        &self,
        request: Request<UpdatePatientRequest>,
    ) -> Result<Response<UpdatePatientResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::new();
        let input = request.patient.clone().unwrap_or_default();
        if request.patient.is_none() {
            v.add("patient", "is required");
        }
        let id = parse_uuid(&input.patient_id, "patient.patient_id", &mut v);
        if request.etag.trim().is_empty() {
            v.add("etag", "is required");
        }
        let mut paths: Vec<String> = Vec::new();
        match &request.update_mask {
            None => v.add("update_mask", "is required"),
            Some(mask) if mask.paths.is_empty() => {
                v.add("update_mask", "must name at least one field")
            }
            Some(mask) => {
                const ALLOWED: [&str; 8] = [
                    "nhs_number",
                    "identifiers",
                    "names",
                    "birth_date",
                    "gender",
                    "addresses",
                    "telecoms",
                    "deceased_date",
                ];
                for (i, path) in mask.paths.iter().enumerate() {
                    if path == "*" {
                        paths.extend(ALLOWED.iter().map(|s| (*s).to_owned()));
                    } else if ALLOWED.contains(&path.as_str()) {
                        paths.push(path.clone());
                    } else {
                        v.add(
                            format!("update_mask.paths[{i}]"),
                            format!(
                                "{path:?} is unknown or not updatable; allowed: {}, or *",
                                ALLOWED.join(", ")
                            ),
                        );
                    }
                }
            }
        }
        check_requester(request.requester.as_ref(), "requester", &mut v);
        check_reason(&request.reason, false, &mut v);
        v.into_result()?;
        let current = self
            .store
            .get(&id)
            .await?
            .ok_or_else(|| Error::patient_not_found(&id))?;
        if current.patient.etag != request.etag {
            return Err(Error::EtagMismatch {
                patient_id: id,
                current_version: current.patient.version,
            }
            .into());
        }
        if current.is_merged() {
            return Err(Error::PatientMerged(vec![(
                id,
                current.patient.merged_into_patient_id.clone(),
            )])
            .into());
        }
        let mut new = current.patient.clone();
        for path in &paths {
            match path.as_str() {
                "nhs_number" => new.nhs_number = input.nhs_number.clone(),
                "identifiers" => new.identifiers = input.identifiers.clone(),
                "names" => new.names = input.names.clone(),
                "birth_date" => new.birth_date = input.birth_date,
                "gender" => new.gender = input.gender,
                "addresses" => new.addresses = input.addresses.clone(),
                "telecoms" => new.telecoms = input.telecoms.clone(),
                "deceased_date" => new.deceased_date = input.deceased_date,
                _ => {}
            }
        }
        let mut v = Violations::new();
        validate::patient(&mut new, Parts::ALL, "patient", &mut v);
        v.into_result()?;
        let changed = store::changed_fields(&current.patient, &new);
        if changed.is_empty() {
            return Ok(Response::new(UpdatePatientResponse {
                patient: Some(current.patient),
            }));
        }
        store::stamp(
            &mut new,
            current.patient.version + 1,
            carerecord_platform::db::now_micros(),
        );
        self.store
            .update(
                &current,
                &new,
                &changed,
                request.requester.as_ref().unwrap_or(&Requester::default()),
                request.reason.trim(),
            )
            .await?;
        self.notify.notify_waiters();
        Ok(Response::new(UpdatePatientResponse { patient: Some(new) }))
    }

    async fn list_patient_versions(
        &self,
        request: Request<ListPatientVersionsRequest>,
    ) -> Result<Response<ListPatientVersionsResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::new();
        let id = parse_uuid(&request.patient_id, "patient_id", &mut v);
        if request.page_size < 0 {
            v.add("page_size", "must not be negative");
        }
        let query = format!("versions:{id}");
        let mut after = 0i64;
        if !request.page_token.is_empty() {
            match self.tokens.verify(query.as_bytes(), &request.page_token) {
                Ok(pos) if pos.len() == 8 => {
                    after = i64::from_be_bytes(pos.try_into().unwrap_or_default());
                }
                _ => v.add(
                    "page_token",
                    "is malformed, altered, or was issued for another patient_id",
                ),
            }
        }
        v.into_result()?;
        if self.store.get(&id).await?.is_none() {
            return Err(Error::patient_not_found(&id).into());
        }
        let size = match request.page_size {
            0 => 50,
            n => n.min(1000),
        } as i64;
        let mut rows = self.store.versions(&id, after, size + 1).await?;
        let next_page_token = if rows.len() as i64 > size {
            rows.truncate(size as usize);
            let last = rows.last().map_or(after, |r| r.patient.version);
            self.tokens.issue(query.as_bytes(), &last.to_be_bytes())
        } else {
            String::new()
        };
        let versions = rows
            .into_iter()
            .map(|r| PatientVersion {
                version: r.patient.version,
                change_type: r.change_type as i32,
                changed_fields: Some(prost_types::FieldMask {
                    paths: r.changed_fields,
                }),
                requester: Some(r.requester),
                reason: r.reason,
                related_patient_id: r.related_patient_id,
                change_time: Some(store::timestamp(r.change_time)),
                patient: Some(r.patient),
            })
            .collect();
        Ok(Response::new(ListPatientVersionsResponse {
            versions,
            next_page_token,
        }))
    }

    async fn resolve_identifier(
        &self,
        request: Request<ResolveIdentifierRequest>,
    ) -> Result<Response<ResolveIdentifierResponse>, Status> {
        let identifier = request.into_inner().identifier;
        let mut v = Violations::new();
        let Identifier { system, value } = identifier.unwrap_or_default();
        let system = system.trim().to_owned();
        let mut value = value.trim().to_owned();
        if system.is_empty() {
            v.add("identifier.system", "is required");
        }
        if value.is_empty() {
            v.add("identifier.value", "is required");
        } else if system == NHS_NUMBER_SYSTEM {
            match nhs::normalise(&value) {
                Ok(n) => value = n,
                Err(e) => v.add("identifier.value", e.description()),
            }
        }
        v.into_result()?;
        let holder = self
            .store
            .holder(&system, &value)
            .await?
            .ok_or_else(|| Error::NotFound {
                resource_type: IDENTIFIER,
                name: format!("{system}|{value}"),
            })?;
        let mut current = holder;
        let mut passed = Vec::new();
        while current.is_merged() {
            passed.push(current.patient.patient_id.clone());
            if passed.len() > 1000 {
                return Err(Error::Corrupt("merge chain too long".into()).into());
            }
            let next = current.patient.merged_into_patient_id.clone();
            current = self
                .store
                .get(&next)
                .await?
                .ok_or_else(|| Error::Corrupt(format!("merge target {next} missing")))?;
        }
        Ok(Response::new(ResolveIdentifierResponse {
            patient_id: current.patient.patient_id.clone(),
            followed_merge: !passed.is_empty(),
            merged_patient_ids: passed,
            patient: Some(current.patient),
        }))
    }

    async fn search_patients(
        &self,
        request: Request<SearchPatientsRequest>,
    ) -> Result<Response<SearchPatientsResponse>, Status> {
        let request = request.into_inner();
        let fuzzy = request.mode == SearchMode::Fuzzy as i32;
        let mut v = Violations::new();
        if SearchMode::try_from(request.mode).is_err() {
            v.add("mode", "unknown search mode");
        }
        let family = search_term(&request.family_name, "family_name", fuzzy, true, &mut v);
        let given = search_term(&request.given_name, "given_name", fuzzy, false, &mut v);
        let (low, high, exact_date) = match &request.birth {
            None => {
                v.add(
                    "birth_date",
                    "a birth_date or a birth_date_range is required",
                );
                (0, 0, None)
            }
            Some(search_patients_request::Birth::BirthDate(d)) => {
                if validate::check_date(d, "birth_date", &mut v) {
                    (date_int(d), date_int(d), Some(*d))
                } else {
                    (0, 0, None)
                }
            }
            Some(search_patients_request::Birth::BirthDateRange(r)) => {
                if r.start.is_none() && r.end.is_none() {
                    v.add("birth_date_range", "needs at least one bound");
                }
                let ok_start = r
                    .start
                    .as_ref()
                    .is_none_or(|d| validate::check_date(d, "birth_date_range.start", &mut v));
                let ok_end = r
                    .end
                    .as_ref()
                    .is_none_or(|d| validate::check_date(d, "birth_date_range.end", &mut v));
                let low = r.start.as_ref().map_or(1, date_int);
                let high = r.end.as_ref().map_or(99_991_231, date_int);
                if ok_start && ok_end && low > high {
                    v.add("birth_date_range", "start is after end");
                }
                (low, high, None)
            }
        };
        if carerecord_contracts::common::v1::AdministrativeGender::try_from(request.gender).is_err()
        {
            v.add("gender", "unknown administrative gender");
        }
        if request.max_results < 0 {
            v.add("max_results", "must not be negative");
        }
        v.into_result()?;
        let applied = match request.max_results {
            0 => self.settings.search_default_results,
            n => n.min(self.settings.search_max_results),
        };
        let postcode = normalize::postcode_key(&request.postcode);
        let (Some(family), given) = (family, given) else {
            return Err(Error::invalid("family_name", "is required").into());
        };
        let criteria = SearchCriteria {
            family,
            given,
            low,
            high,
            gender: request.gender,
            postcode,
        };
        // Candidate ids by SQL, then exact filtering and fuzzy scoring on stored features.
        let mut args = Vec::new();
        let mut push = |a: SearchArg| {
            args.push(a);
            format!("${}", args.len())
        };
        let condition = if fuzzy {
            let mut dates = vec![low];
            if let Some(d) = exact_date
                && d.day <= 12
                && d.day != d.month
            {
                dates.push(date_int(&Date {
                    year: d.year,
                    month: d.day,
                    day: d.month,
                }));
            }
            if exact_date.is_some() {
                let list: Vec<String> =
                    dates.into_iter().map(|d| push(SearchArg::Int(d))).collect();
                format!("n.birth_date IN ({})", list.join(","))
            } else {
                let a = push(SearchArg::Int(low));
                let b = push(SearchArg::Int(high));
                let c1 = push(SearchArg::Text(phonetic::nysiis(&criteria.family.text)));
                let f = push(SearchArg::Text(criteria.family.text.clone()));
                let transposed = criteria
                    .given
                    .as_ref()
                    .map(|g| {
                        format!(
                            " OR n.family_code = {}",
                            push(SearchArg::Text(phonetic::nysiis(&g.text)))
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "n.birth_date BETWEEN {a} AND {b} AND (n.family_code = {c1} OR n.family = {f}{transposed})"
                )
            }
        } else {
            let mut parts = vec![term_condition("n.family", &criteria.family, &mut push)];
            if let Some(g) = &criteria.given {
                parts.push(term_condition("n.given", g, &mut push));
            }
            let a = push(SearchArg::Int(low));
            let b = push(SearchArg::Int(high));
            parts.push(format!("n.birth_date BETWEEN {a} AND {b}"));
            parts.join(" AND ")
        };
        let ids = self.store.name_search(&condition, args, 5000).await?;
        let stored = self.store.get_many(&ids).await?;
        let mut scored: Vec<(f64, Patient)> = stored
            .into_iter()
            .filter(|s| !s.is_merged())
            .filter_map(|s| {
                let score = criteria.score(&s, fuzzy)?;
                (score >= self.settings.search_min_score || !fuzzy).then_some((score, s.patient))
            })
            .collect();
        scored.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.1.patient_id.cmp(&b.1.patient_id))
        });
        let more = scored.len() > applied as usize;
        scored.truncate(applied as usize);
        Ok(Response::new(SearchPatientsResponse {
            results: scored
                .into_iter()
                .map(|(score, patient)| SearchPatientsResult {
                    patient: Some(patient),
                    score,
                })
                .collect(),
            more_results_available: more,
            max_results_applied: applied,
        }))
    }

    async fn match_patients(
        &self,
        request: Request<MatchPatientsRequest>,
    ) -> Result<Response<MatchPatientsResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::new();
        if request.max_candidates < 0 {
            v.add("max_candidates", "must not be negative");
        }
        let probe = match &request.probe {
            None => {
                v.add("probe", "demographics or patient_id is required");
                None
            }
            Some(match_patients_request::Probe::PatientId(id)) => {
                let id = parse_uuid(id, "patient_id", &mut v);
                Some(matching::Probe::Patient(id))
            }
            Some(match_patients_request::Probe::Demographics(p)) => {
                matching::check_probe(p, &mut v);
                Some(matching::Probe::Demographics(Features::of(p)))
            }
        };
        v.into_result()?;
        let Some(probe) = probe else {
            return Err(Error::invalid("probe", "is required").into());
        };
        let max = match request.max_candidates {
            0 => 10,
            n => n.min(100),
        } as usize;
        let response = self
            .matcher
            .find(probe, max, request.include_non_matches)
            .await?;
        Ok(Response::new(response))
    }

    async fn get_match_parameters(
        &self,
        request: Request<GetMatchParametersRequest>,
    ) -> Result<Response<GetMatchParametersResponse>, Status> {
        let version = request.get_ref().parameters_version;
        if version < 0 {
            return Err(Error::invalid("parameters_version", "must not be negative").into());
        }
        let params = self
            .store
            .parameters((version > 0).then_some(version))
            .await?
            .ok_or_else(|| Error::NotFound {
                resource_type: MATCH_PARAMETERS,
                name: if version == 0 {
                    "current".to_owned()
                } else {
                    version.to_string()
                },
            })?;
        Ok(Response::new(GetMatchParametersResponse {
            parameters: Some(params),
        }))
    }

    async fn estimate_match_parameters(
        &self,
        request: Request<EstimateMatchParametersRequest>,
    ) -> Result<Response<EstimateMatchParametersResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::new();
        check_requester(request.requester.as_ref(), "requester", &mut v);
        for (field, value) in [
            ("max_random_pairs", request.max_random_pairs),
            ("max_blocked_pairs", request.max_blocked_pairs),
            ("max_iterations", i64::from(request.max_iterations)),
            ("random_seed", request.random_seed),
        ] {
            if value < 0 {
                v.add(field, "must not be negative");
            }
        }
        if !(0.0..1.0).contains(&request.convergence_threshold) {
            v.add("convergence_threshold", "must be in [0, 1)");
        }
        v.into_result()?;
        let response = self.matcher.estimate(request).await?;
        Ok(Response::new(response))
    }

    async fn merge_patients(
        &self,
        request: Request<MergePatientsRequest>,
    ) -> Result<Response<MergePatientsResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::new();
        let request_id = parse_uuid(&request.request_id, "request_id", &mut v);
        let source_id = parse_uuid(&request.source_patient_id, "source_patient_id", &mut v);
        let target_id = parse_uuid(&request.target_patient_id, "target_patient_id", &mut v);
        if !source_id.is_empty() && source_id == target_id {
            v.add(
                "target_patient_id",
                "must differ from source_patient_id (a patient cannot be merged into itself)",
            );
        }
        check_reason(&request.reason, true, &mut v);
        check_requester(request.requester.as_ref(), "requester", &mut v);
        v.into_result()?;
        let hash = body_hash(
            format!(
                "{source_id}\n{target_id}\n{}\n{}\n{}",
                request.reason, request.source_etag, request.target_etag
            )
            .as_bytes(),
        );
        let mut write = self.store.begin_write().await?;
        if let Some((first_hash, patient_id, version, related, related_version)) =
            self.store.request(write.conn(), &request_id).await?
        {
            if first_hash != hash {
                return Err(Error::RequestIdReused { patient_id }.into());
            }
            drop(write);
            let source = self.store.version(&patient_id, version).await?;
            let target = self.store.version(&related, related_version).await?;
            return Ok(Response::new(MergePatientsResponse {
                source_patient: source,
                target_patient: target,
            }));
        }
        let source = write.load(&source_id).await?;
        let target = write.load(&target_id).await?;
        let (source, target) = match (source, target) {
            (Some(s), Some(t)) => (s, t),
            (s, t) => {
                let mut missing = Vec::new();
                if s.is_none() {
                    missing.push(source_id);
                }
                if t.is_none() {
                    missing.push(target_id);
                }
                return Err(Error::PatientsNotFound(missing).into());
            }
        };
        let merged: Vec<(String, String)> = [&source, &target]
            .iter()
            .filter(|s| s.is_merged())
            .map(|s| {
                (
                    s.patient.patient_id.clone(),
                    s.patient.merged_into_patient_id.clone(),
                )
            })
            .collect();
        if !merged.is_empty() {
            return Err(Error::PatientMerged(merged).into());
        }
        for (given, stored) in [
            (&request.source_etag, &source),
            (&request.target_etag, &target),
        ] {
            if !given.is_empty() && *given != stored.patient.etag {
                return Err(Error::EtagMismatch {
                    patient_id: stored.patient.patient_id.clone(),
                    current_version: stored.patient.version,
                }
                .into());
            }
        }
        let now = carerecord_platform::db::now_micros();
        let mut new_source = source.patient.clone();
        new_source.state = PatientState::Merged as i32;
        new_source.merged_into_patient_id = target_id.clone();
        store::stamp(&mut new_source, source.patient.version + 1, now);
        let mut new_target = target.patient.clone();
        new_target.merged_from_patient_ids.push(source_id.clone());
        store::stamp(&mut new_target, target.patient.version + 1, now);
        let requester = request.requester.unwrap_or_default();
        self.store
            .write_pair(
                write,
                ChangeType::Merged,
                (&source, &new_source),
                (&target, &new_target),
                &requester,
                request.reason.trim(),
                Some((&request_id, &hash)),
            )
            .await?;
        self.notify.notify_waiters();
        tracing::info!(source = %source_id, target = %target_id, "patients merged");
        Ok(Response::new(MergePatientsResponse {
            source_patient: Some(new_source),
            target_patient: Some(new_target),
        }))
    }

    async fn unmerge_patient(
        &self,
        request: Request<UnmergePatientRequest>,
    ) -> Result<Response<UnmergePatientResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::new();
        let id = parse_uuid(&request.patient_id, "patient_id", &mut v);
        if request.etag.trim().is_empty() {
            v.add("etag", "is required");
        }
        check_reason(&request.reason, true, &mut v);
        check_requester(request.requester.as_ref(), "requester", &mut v);
        v.into_result()?;
        let mut write = self.store.begin_write().await?;
        let duplicate = write
            .load(&id)
            .await?
            .ok_or_else(|| Error::patient_not_found(&id))?;
        if !duplicate.is_merged() {
            return Err(Error::PatientNotMerged(id).into());
        }
        if duplicate.patient.etag != request.etag {
            return Err(Error::EtagMismatch {
                patient_id: id,
                current_version: duplicate.patient.version,
            }
            .into());
        }
        let former_id = duplicate.patient.merged_into_patient_id.clone();
        let former: Stored = write
            .load(&former_id)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("merge target {former_id} missing")))?;
        let now = carerecord_platform::db::now_micros();
        let mut restored = duplicate.patient.clone();
        restored.state = PatientState::Active as i32;
        restored.merged_into_patient_id.clear();
        store::stamp(&mut restored, duplicate.patient.version + 1, now);
        let mut new_former = former.patient.clone();
        new_former.merged_from_patient_ids.retain(|m| *m != id);
        store::stamp(&mut new_former, former.patient.version + 1, now);
        let requester = request.requester.unwrap_or_default();
        self.store
            .write_pair(
                write,
                ChangeType::Unmerged,
                (&duplicate, &restored),
                (&former, &new_former),
                &requester,
                request.reason.trim(),
                None,
            )
            .await?;
        self.notify.notify_waiters();
        tracing::info!(patient = %id, former_target = %former_id, "patient unmerged");
        Ok(Response::new(UnmergePatientResponse {
            patient: Some(restored),
            former_target_patient: Some(new_former),
        }))
    }

    async fn watch_patient_changes(
        &self,
        request: Request<WatchPatientChangesRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let cursor = request.into_inner().after_cursor;
        let mut after = 0i64;
        if !cursor.is_empty() {
            match self.tokens.verify(FEED_QUERY, &cursor) {
                Ok(pos) if pos.len() == 8 => {
                    after = i64::from_be_bytes(pos.try_into().unwrap_or_default())
                }
                _ => {
                    return Err(Error::invalid(
                        "after_cursor",
                        "is malformed or was not issued by this index",
                    )
                    .into());
                }
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let store = self.store.clone();
        let notify = self.notify.clone();
        let shutdown = self.shutdown.clone();
        let tokens = self.tokens.clone();
        let poll = self.settings.watch_poll_interval;
        tokio::spawn(async move {
            const PAGE: i64 = 500;
            loop {
                let notified = notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if shutdown.is_cancelled() {
                    let _ = tx
                        .send(Err(carerecord_platform::errors::unavailable(
                            "the change feed (server shutting down)",
                        )))
                        .await;
                    return;
                }
                let rows = match store.feed(after, PAGE).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let full = rows.len() as i64 == PAGE;
                for row in rows {
                    after = row.seq;
                    let event = WatchPatientChangesResponse {
                        sequence: row.seq,
                        cursor: tokens.issue(FEED_QUERY, &row.seq.to_be_bytes()),
                        change_type: row.change_type as i32,
                        patient_id: row.patient.patient_id.clone(),
                        related_patient_id: row.related_patient_id,
                        version: row.patient.version,
                        change_time: Some(store::timestamp(row.change_time)),
                        patient: Some(row.patient),
                    };
                    if tx.send(Ok(event)).await.is_err() {
                        return; // the client went away
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    () = &mut notified => {}
                    () = tokio::time::sleep(poll) => {}
                    () = tx.closed() => return,
                    () = shutdown.cancelled() => {}
                }
            }
        });
        Ok(Response::new(
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)) as WatchStream,
        ))
    }
}

/// A normalised search term, possibly a prefix (`smi*`).
#[derive(Debug, Clone)]
struct Term {
    text: String,
    prefix: bool,
}

fn search_term(
    raw: &str,
    field: &str,
    fuzzy: bool,
    required: bool,
    v: &mut Violations,
) -> Option<Term> {
    let raw = raw.trim();
    let stars = raw.matches('*').count();
    let prefix = stars > 0;
    if stars > 0 {
        if fuzzy {
            v.add(field, "wildcards are not allowed in SEARCH_MODE_FUZZY");
        } else if stars > 1
            || !raw.ends_with('*')
            || normalize::text(raw.trim_end_matches('*')).chars().count() < 2
        {
            v.add(
                field,
                "a wildcard must be a final * preceded by at least two characters",
            );
        }
    }
    let text = normalize::text(&raw.replace('*', ""));
    if text.is_empty() {
        if required {
            v.add(field, "is required (empty after normalisation)");
        }
        return None;
    }
    Some(Term { text, prefix })
}

fn term_condition(column: &str, term: &Term, push: &mut impl FnMut(SearchArg) -> String) -> String {
    if term.prefix {
        let a = push(SearchArg::Text(term.text.clone()));
        let b = push(SearchArg::Text(format!("{}\u{10FFFF}", term.text)));
        format!("{column} >= {a} AND {column} < {b}")
    } else {
        format!("{column} = {}", push(SearchArg::Text(term.text.clone())))
    }
}

struct SearchCriteria {
    family: Term,
    given: Option<Term>,
    low: i64,
    high: i64,
    gender: i32,
    postcode: Option<String>,
}

impl SearchCriteria {
    fn term_matches(term: &Term, value: &str) -> bool {
        if term.prefix {
            value.starts_with(&term.text)
        } else {
            value == term.text
        }
    }

    /// Score of a stored patient: 1.0 for an exact match, a fuzzy score in fuzzy mode, `None`
    /// when it does not qualify.
    fn score(&self, s: &Stored, fuzzy: bool) -> Option<f64> {
        let f = &s.features;
        let birth = i64::from(f.birth_date);
        let date_ok = birth > 0 && birth >= self.low && birth <= self.high;
        let gender_ok = self.gender == 0 || s.patient.gender == self.gender;
        let postcode_ok = self
            .postcode
            .as_ref()
            .is_none_or(|p| f.postcodes.contains(p));
        let names_ok = f.names.iter().any(|n| {
            Self::term_matches(&self.family, &n.family)
                && self
                    .given
                    .as_ref()
                    .is_none_or(|g| Self::term_matches(g, &n.given))
        });
        if date_ok && gender_ok && postcode_ok && names_ok {
            return Some(1.0);
        }
        if !fuzzy {
            return None;
        }
        let sim = |a: &str, b: &str| -> f64 {
            if a == b {
                1.0
            } else if !b.is_empty() && phonetic::nysiis(a) == phonetic::nysiis(b) {
                compare::jaro_winkler(a, b).max(0.9)
            } else {
                compare::jaro_winkler(a, b)
            }
        };
        let name = f
            .names
            .iter()
            .map(|n| {
                let straight = match &self.given {
                    Some(g) => (sim(&self.family.text, &n.family) + sim(&g.text, &n.given)) / 2.0,
                    None => sim(&self.family.text, &n.family),
                };
                let transposed = match &self.given {
                    Some(g) => {
                        0.95 * (sim(&self.family.text, &n.given) + sim(&g.text, &n.family)) / 2.0
                    }
                    None => 0.0,
                };
                straight.max(transposed)
            })
            .fold(0.0, f64::max);
        let date = if date_ok { 1.0 } else { 0.9 };
        let gender = if gender_ok { 1.0 } else { 0.9 };
        let postcode = match &self.postcode {
            None => 1.0,
            Some(_) if postcode_ok => 1.0,
            Some(p) => {
                let outward = normalize::outward_code(p);
                if outward.is_some()
                    && f.postcodes
                        .iter()
                        .any(|c| normalize::outward_code(c) == outward)
                {
                    0.95
                } else {
                    0.85
                }
            }
        };
        Some(name * date * gender * postcode)
    }
}

pub(crate) fn level_to_proto(level: Level) -> ComparisonLevel {
    match level {
        Level::Exact => ComparisonLevel::Exact,
        Level::Partial => ComparisonLevel::Partial,
        Level::Disagree => ComparisonLevel::Disagree,
        Level::Missing => ComparisonLevel::Missing,
    }
}

pub(crate) fn classification_to_proto(c: Classification) -> MatchClassification {
    match c {
        Classification::Match => MatchClassification::Match,
        Classification::Possible => MatchClassification::Possible,
        Classification::NonMatch => MatchClassification::NonMatch,
    }
}
