//! ListRecords: a patient's records as of a snapshot, filtered, in pages.

use carerecord_contracts::records::v1::{ListRecordsRequest, ListRecordsResponse, RecordOrder};
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::{QueryKey, REFUSED};
use carerecord_platform::request::PageSize;

use super::cursor::feed_cursor;
use super::messages::record_message;
use super::paging::{fit_page, issue, resume};
use super::request::{labels, period, with_payload};
use super::state::RecordsService;
use crate::domain::ids::required_id;
use crate::domain::record::{check_type_filter, optional_time};
use crate::domain::terms::{coding_needles, statuses};
use crate::error::Error;
use crate::store::{Filter, ListOrder, Listed};

/// A ListRecords request, parsed.
struct Listing {
    /// Every condition but the snapshot, which comes from the page token or the feed head.
    filter: Filter,
    order: ListOrder,
    page_size: PageSize,
    with_payload: bool,
    /// What the page tokens of this listing are bound to.
    query: QueryKey,
}

impl Listing {
    fn parse(request: &ListRecordsRequest) -> Result<Listing, Violations> {
        let mut violations = Violations::new();
        let patient_id = required_id(&request.patient_id, "patient_id", &mut violations);
        check_type_filter(
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
        let updated_before = optional_time(
            request.updated_before.as_ref(),
            "updated_before",
            &mut violations,
        );
        if let (Some(since), Some(before)) = (updated_since, updated_before)
            && since >= before
        {
            violations.add("updated_before", "must be after updated_since");
        }
        let code_needles = coding_needles(&request.codes, "codes", &mut violations);
        let category_needles = coding_needles(&request.categories, "categories", &mut violations);
        let statuses = statuses(&request.statuses, "statuses", &mut violations);
        let order = match RecordOrder::try_from(request.order) {
            Ok(RecordOrder::Unspecified | RecordOrder::Creation) => ListOrder::Creation,
            Ok(RecordOrder::EffectiveTimeDescending) => ListOrder::EffectiveTimeDescending,
            Err(_) => {
                violations.add("order", "unknown order");
                ListOrder::Creation
            }
        };
        let page_size = violations.page_size(request.page_size);
        let with_payload = with_payload(request.view, &mut violations);
        violations.into_result()?;

        let mut query = QueryKey::new("list");
        query
            .text(&patient_id)
            .set(&request.resource_types)
            .set(&wanted)
            .set(&excluded)
            .optional(effective_from)
            .optional(effective_to)
            .optional(updated_since)
            .flag(request.include_retracted)
            .flag(order == ListOrder::EffectiveTimeDescending);
        // Named, and only when set, so that tokens of listings without them stay as they were.
        for (name, values) in [
            ("codes", &code_needles),
            ("categories", &category_needles),
            ("statuses", &statuses),
        ] {
            if !values.is_empty() {
                query.text(name).set(values);
            }
        }
        if updated_before.is_some() {
            query.text("updated_before").optional(updated_before);
        }
        let filter = Filter {
            snapshot: 0,
            patient_ids: vec![patient_id],
            resource_types: request.resource_types.clone(),
            data_classes: wanted,
            excluded_data_classes: excluded,
            effective_from,
            effective_to,
            updated_from: updated_since,
            updated_to: updated_before,
            include_retracted: request.include_retracted,
            code_needles,
            category_needles,
            statuses,
        };
        Ok(Listing {
            filter,
            order,
            page_size,
            with_payload,
            query,
        })
    }
}

impl RecordsService {
    pub(super) async fn list(
        &self,
        request: ListRecordsRequest,
    ) -> Result<ListRecordsResponse, Error> {
        let Listing {
            mut filter,
            order,
            page_size,
            with_payload,
            query,
        } = Listing::parse(&request)?;
        // Position: the snapshot, then the last record listed (see `listed_position`).
        let (snapshot, rows) =
            match resume(&self.tokens, &query, &request.page_token, "page_token")? {
                Some([snapshot, state, time, seq]) => {
                    let after = listed_from_position(state, time, seq, "page_token")?;
                    filter.snapshot = snapshot;
                    let rows = self
                        .store
                        .list(&filter, order, after, page_size.fetch_limit(), with_payload)
                        .await?;
                    (snapshot, rows)
                }
                // The first page: as of the feed head, read by the same statement.
                None => {
                    self.store
                        .list_first(&filter, order, page_size.fetch_limit(), with_payload)
                        .await?
                }
            };
        let (rows, more) = fit_page(rows, page_size.get());
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => {
                let [state, time, seq] = listed_position(Listed::from(last));
                issue(&self.tokens, &query, &[snapshot, state, time, seq])
            }
            _ => String::new(),
        };
        Ok(ListRecordsResponse {
            records: rows.into_iter().map(record_message).collect(),
            next_page_token,
            watch_cursor: feed_cursor(&self.tokens, snapshot),
        })
    }
}

/// The last record listed, in a page token: a state (1 after a record with an effective time, 2
/// after one without), that time, and the record's creation sequence.
fn listed_position(last: Listed) -> [i64; 3] {
    match last.effective_time {
        Some(time) => [1, time, last.creation_seq],
        None => [2, 0, last.creation_seq],
    }
}

/// The last record listed of a page token's position, none at the start (state 0).
fn listed_from_position(
    state: i64,
    time: i64,
    creation_seq: i64,
    field: &str,
) -> Result<Option<Listed>, Error> {
    let effective_time = match state {
        0 => return Ok(None),
        1 => Some(time),
        2 => None,
        _ => {
            return Err(Error::invalid(field, REFUSED));
        }
    };
    Ok(Some(Listed {
        effective_time,
        creation_seq,
    }))
}
