//! The review queue: break-glass events and accesses to restricted patients' records (each recorded
//! with the entry of its call), and their reviews.

use carerecord_contracts::common::v1::Requester;
use carerecord_platform::sql::{finish, push_in};
use sqlx::{Any, QueryBuilder, Row};

use super::{BreakGlassRow, EventFilter, Pending, Store};
use crate::error::Error;

/// The columns `event_from_row` reads, as a literal for `concat!`.
macro_rules! select_events {
    () => {
        "SELECT event_id, audit_index, time_micros, user_id, organisation_ods_code, role_code, \
     display_name, client_id, patient_id, reason, outcome, returned_count, withheld_count, version, etag, \
     review_outcome, review_notes, reviewer_user_id, reviewer_organisation_ods_code, reviewer_role_code, \
     reviewer_display_name, review_time_micros, review_entry_id, kind, action, restricted_patient \
     FROM break_glass_events"
    };
}

impl Store {
    pub async fn event(&self, event_id: &str) -> Result<Option<BreakGlassRow>, Error> {
        let row = sqlx::query(concat!(select_events!(), " WHERE event_id = $1"))
            .bind(event_id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<BreakGlassRow>, Error> {
        let mut sql = QueryBuilder::<Any>::new(select_events!());
        sql.push(" WHERE audit_index > ")
            .push_bind(filter.after_index)
            .push(" AND time_micros >= ")
            .push_bind(filter.start_micros.unwrap_or(i64::MIN))
            .push(" AND time_micros < ")
            .push_bind(filter.end_micros.unwrap_or(i64::MAX));
        match filter.review_filter {
            1 => {
                sql.push(" AND review_outcome = 0");
            }
            2 => {
                sql.push(" AND review_outcome <> 0");
            }
            _ => {}
        }
        if filter.kind != 0 {
            sql.push(" AND kind = ").push_bind(filter.kind);
        }
        if !filter.patient_ids.is_empty() {
            sql.push(" AND patient_id");
            push_in(&mut sql, filter.patient_ids.iter().cloned());
        }
        sql.push(" ORDER BY audit_index LIMIT ")
            .push_bind(filter.limit);
        let rows = finish(&mut sql)?.fetch_all(&self.db.pool).await?;
        rows.iter().map(event_from_row).collect()
    }
}

pub(super) async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    row: &BreakGlassRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO break_glass_events (event_id, audit_index, time_micros, user_id, organisation_ods_code, \
         role_code, display_name, client_id, patient_id, reason, outcome, returned_count, withheld_count, \
         version, etag, kind, action, restricted_patient) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(&row.event_id)
    .bind(row.audit_index)
    .bind(row.time_micros)
    .bind(&row.user_id)
    .bind(&row.organisation_ods_code)
    .bind(&row.role_code)
    .bind(&row.display_name)
    .bind(&row.client_id)
    .bind(&row.patient_id)
    .bind(&row.reason)
    .bind(row.outcome)
    .bind(row.returned_count)
    .bind(row.withheld_count)
    .bind(row.version)
    .bind(&row.etag)
    .bind(row.kind)
    .bind(row.action)
    .bind(row.restricted_patient)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records `pending`'s review on an event, if the event's etag is still `expected_etag`; false
/// when it is not (someone reviewed it meanwhile).
pub(super) async fn record_review(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    event_id: &str,
    expected_etag: &str,
    outcome: i64,
    notes: &str,
    reviewer: &Requester,
    pending: &Pending,
) -> Result<bool, sqlx::Error> {
    let etag = uuid::Uuid::new_v4().simple().to_string();
    let updated = sqlx::query(
        "UPDATE break_glass_events SET version = version + 1, etag = $1, review_outcome = $2, \
         review_notes = $3, reviewer_user_id = $4, reviewer_organisation_ods_code = $5, \
         reviewer_role_code = $6, reviewer_display_name = $7, review_time_micros = $8, \
         review_entry_id = $9 WHERE event_id = $10 AND etag = $11",
    )
    .bind(etag)
    .bind(outcome)
    .bind(notes)
    .bind(&reviewer.user_id)
    .bind(&reviewer.organisation_ods_code)
    .bind(&reviewer.role_code)
    .bind(&reviewer.display_name)
    .bind(pending.time_micros)
    .bind(&pending.entry_id)
    .bind(event_id)
    .bind(expected_etag)
    .execute(&mut **tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

fn event_from_row(row: &sqlx::any::AnyRow) -> Result<BreakGlassRow, Error> {
    Ok(BreakGlassRow {
        event_id: row.try_get(0)?,
        audit_index: row.try_get(1)?,
        time_micros: row.try_get(2)?,
        user_id: row.try_get(3)?,
        organisation_ods_code: row.try_get(4)?,
        role_code: row.try_get(5)?,
        display_name: row.try_get(6)?,
        client_id: row.try_get(7)?,
        patient_id: row.try_get(8)?,
        reason: row.try_get(9)?,
        outcome: row.try_get(10)?,
        returned_count: row.try_get(11)?,
        withheld_count: row.try_get(12)?,
        version: row.try_get(13)?,
        etag: row.try_get(14)?,
        review_outcome: row.try_get(15)?,
        review_notes: row.try_get(16)?,
        reviewer_user_id: row.try_get(17)?,
        reviewer_organisation_ods_code: row.try_get(18)?,
        reviewer_role_code: row.try_get(19)?,
        reviewer_display_name: row.try_get(20)?,
        review_time_micros: row.try_get(21)?,
        review_entry_id: row.try_get(22)?,
        kind: row.try_get(23)?,
        action: row.try_get(24)?,
        restricted_patient: row.try_get(25)?,
    })
}
