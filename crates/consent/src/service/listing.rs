//! Paging through a patient's directives (newest first) and a directive's versions (newest first).
//! A page token is bound to its query, so it cannot be replayed with other filters.

use carerecord_contracts::consent::v1 as pb;
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::{Position, QueryKey, REFUSED};

use super::{ConsentService, parse};
use crate::domain::lifecycle;
use crate::error::Error;
use crate::store::directives::position_after;

impl ConsentService {
    pub(super) async fn list_directives(
        &self,
        req: pb::ListConsentDirectivesRequest,
    ) -> Result<pb::ListConsentDirectivesResponse, Error> {
        let (patient_id, size, statuses) = parse(|v| {
            let patient_id = v.required_id("patient_id", &req.patient_id);
            let size = v.page_size(req.page_size);
            let mut statuses: Vec<_> = req
                .statuses
                .iter()
                .enumerate()
                .filter_map(|(i, s)| lifecycle::parse_status(*s, &format!("statuses[{i}]"), v))
                .collect();
            statuses.sort_unstable();
            statuses.dedup();
            Some((patient_id?, size, statuses))
        })?;
        let mut query = QueryKey::new("directives");
        query.text(patient_id.as_str()).int(statuses.len() as i64);
        for status in &statuses {
            query.int(*status as i64);
        }
        let after = self.resume(&query, &req.page_token, |position| {
            Some((position.read_int()?, position.read_text()?))
        })?;
        let mut directives = self
            .store
            .list(patient_id.as_str(), &statuses, after, size.fetch_limit())
            .await?;
        let mut next_page_token = String::new();
        if directives.len() > size.get() {
            directives.truncate(size.get());
            if let Some(last) = directives.last() {
                let (create_time, directive_id) = position_after(last);
                next_page_token = self
                    .tokens
                    .issue_at(&query, Position::new().int(create_time).text(directive_id));
            }
        }
        Ok(pb::ListConsentDirectivesResponse {
            directives,
            next_page_token,
        })
    }

    pub(super) async fn list_versions(
        &self,
        req: pb::ListConsentDirectiveVersionsRequest,
    ) -> Result<pb::ListConsentDirectiveVersionsResponse, Error> {
        let (id, size) = parse(|v| {
            let id = v.required_id("directive_id", &req.directive_id);
            let size = v.page_size(req.page_size);
            Some((id?, size))
        })?;
        let mut query = QueryKey::new("versions");
        query.text(id.as_str());
        let before = self.resume(&query, &req.page_token, Position::read_int)?;
        let mut versions = self
            .store
            .versions(id.as_str(), before, size.fetch_limit())
            .await?;
        if versions.is_empty() && before.is_none() {
            return Err(Error::NotFound(id.into_string()));
        }
        let mut next_page_token = String::new();
        if versions.len() > size.get() {
            versions.truncate(size.get());
            if let Some(last) = versions.last() {
                next_page_token = self
                    .tokens
                    .issue_at(&query, Position::new().int(last.version));
            }
        }
        Ok(pb::ListConsentDirectiveVersionsResponse {
            versions,
            next_page_token,
        })
    }

    /// Where a page of `query` resumes (`None` for the first page), read from the token's position
    /// by `read`; INVALID_ARGUMENT on `page_token` when the token is forged, belongs to another
    /// query, or does not hold what `read` expects.
    fn resume<T>(
        &self,
        query: &QueryKey,
        token: &str,
        read: impl FnOnce(&mut Position) -> Option<T>,
    ) -> Result<Option<T>, Error> {
        let mut v = Violations::new();
        let Some(mut position) = v.page_position("page_token", &self.tokens, query, token) else {
            v.into_result()?;
            return Ok(None);
        };
        match read(&mut position).filter(|_| position.is_done()) {
            Some(value) => Ok(Some(value)),
            None => {
                v.add("page_token", REFUSED);
                Err(v.into())
            }
        }
    }
}
