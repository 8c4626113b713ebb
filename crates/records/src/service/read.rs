//! GetRecord and ListRecordVersions: a record, and its history.

use carerecord_contracts::records::v1::{
    GetRecordRequest, ListRecordVersionsRequest, ListRecordVersionsResponse, Record,
};
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::QueryKey;

use super::messages::{record_message, version_message};
use super::paging::{fit_page, issue, resume};
use super::request::with_payload;
use super::state::RecordsService;
use crate::domain::ids::required_id;
use crate::error::Error;

impl RecordsService {
    pub(super) async fn get(&self, request: GetRecordRequest) -> Result<Record, Error> {
        let mut violations = Violations::new();
        let record_id = required_id(&request.record_id, "record_id", &mut violations);
        violations.check(
            request.version >= 0,
            "version",
            "must be 0 (the latest) or a version number",
        );
        let with_payload = with_payload(request.view, &mut violations);
        violations.into_result()?;
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

    pub(super) async fn list_versions(
        &self,
        request: ListRecordVersionsRequest,
    ) -> Result<ListRecordVersionsResponse, Error> {
        let mut violations = Violations::new();
        let record_id = required_id(&request.record_id, "record_id", &mut violations);
        let page_size = violations.page_size(request.page_size);
        let with_payload = with_payload(request.view, &mut violations);
        violations.into_result()?;
        let mut query = QueryKey::new("versions");
        query.text(&record_id);
        // Position: the newest version listed by this listing, and the next version to list.
        let [newest, next] = match resume(&self.tokens, &query, &request.page_token, "page_token")?
        {
            Some(position) => position,
            None => {
                let latest = self
                    .store
                    .get(&record_id, None, false)
                    .await?
                    .ok_or_else(|| Error::NotFound(record_id.clone()))?;
                [latest.version, latest.version]
            }
        };
        let rows = self
            .store
            .versions(&record_id, next, page_size.fetch_limit(), with_payload)
            .await?;
        let (rows, more) = fit_page(rows, page_size.get());
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => issue(&self.tokens, &query, &[newest, last.version - 1]),
            _ => String::new(),
        };
        Ok(ListRecordVersionsResponse {
            versions: rows.into_iter().map(version_message).collect(),
            next_page_token,
        })
    }
}
