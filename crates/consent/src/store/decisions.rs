//! What decisions read of a patient: the ACTIVE directives' compiled rules and the latest national
//! data opt-out check.

use std::collections::HashMap;

use carerecord_platform::db::Backend;
use sqlx::Row;

use super::Store;
use crate::domain::decide::CompiledDirective;
use crate::domain::optout::RecordedCheck;
use crate::error::Error;

/// What decisions need of one patient.
#[derive(Debug, Default)]
pub struct PatientState {
    pub directives: Vec<CompiledDirective>,
    /// The latest opt-out check; `None` when nothing is recorded.
    pub opt_out: Option<RecordedCheck>,
}

impl Store {
    /// The ACTIVE directives and latest opt-out check of one patient, in one statement (one
    /// snapshot). The opt-out row reads as a directive with an empty id: its version column holds
    /// opted_out and its last column the check time.
    pub async fn patient_state(&self, patient_id: &str) -> Result<PatientState, Error> {
        let rows = sqlx::query(
            "SELECT directive_id, version, rules, CAST(0 AS BIGINT) FROM consent_directives \
             WHERE patient_id = $1 AND status = 2 \
             UNION ALL \
             SELECT '', opted_out, NULL, check_time FROM national_data_opt_outs WHERE patient_id = $1",
        )
        .bind(patient_id)
        .fetch_all(&self.db.pool)
        .await?;
        let mut state = PatientState::default();
        let mut cache = self.rules.lock();
        for row in rows {
            let directive_id: String = row.try_get(0)?;
            if directive_id.is_empty() {
                state.opt_out = Some(RecordedCheck {
                    opted_out: row.try_get::<i64, _>(1)? != 0,
                    check_time: row.try_get(3)?,
                });
                continue;
            }
            let rules = cache.compiled(row.try_get(2)?)?;
            state
                .directives
                .push(CompiledDirective::new(directive_id, row.try_get(1)?, rules));
        }
        drop(cache);
        sort_directives(&mut state.directives);
        Ok(state)
    }

    /// The states of several patients in one statement. BatchDecide reads its patients in chunks,
    /// concurrently: each patient's state comes from one statement that started after the call did,
    /// so every write acknowledged before the call is seen (the contract asks no snapshot across
    /// patients).
    pub async fn patient_states(
        &self,
        patient_ids: &[String],
    ) -> Result<HashMap<String, PatientState>, Error> {
        // The ids are validated UUIDs; they travel as one parameter, split by the database.
        let (ids, sql) = match self.db.backend {
            Backend::Postgres => (
                patient_ids.join(","),
                "SELECT patient_id, directive_id, version, rules, CAST(0 AS BIGINT) \
                 FROM consent_directives \
                 WHERE status = 2 AND patient_id = ANY(string_to_array($1, ',')) \
                 UNION ALL \
                 SELECT patient_id, '', opted_out, NULL, check_time FROM national_data_opt_outs \
                 WHERE patient_id = ANY(string_to_array($1, ','))",
            ),
            Backend::Sqlite => (
                format!("[\"{}\"]", patient_ids.join("\",\"")),
                "SELECT patient_id, directive_id, version, rules, CAST(0 AS BIGINT) \
                 FROM consent_directives \
                 WHERE status = 2 AND patient_id IN (SELECT value FROM json_each($1)) \
                 UNION ALL \
                 SELECT patient_id, '', opted_out, NULL, check_time FROM national_data_opt_outs \
                 WHERE patient_id IN (SELECT value FROM json_each($1))",
            ),
        };
        let rows = sqlx::query(sql).bind(ids).fetch_all(&self.db.pool).await?;
        let mut states: HashMap<String, PatientState> = HashMap::new();
        let mut cache = self.rules.lock();
        for row in rows {
            let patient_id: String = row.try_get(0)?;
            let state = states.entry(patient_id).or_default();
            let directive_id: String = row.try_get(1)?;
            if directive_id.is_empty() {
                state.opt_out = Some(RecordedCheck {
                    opted_out: row.try_get::<i64, _>(2)? != 0,
                    check_time: row.try_get(4)?,
                });
            } else {
                let version: i64 = row.try_get(2)?;
                let rules = cache.compiled(row.try_get(3)?)?;
                state
                    .directives
                    .push(CompiledDirective::new(directive_id, version, rules));
            }
        }
        drop(cache);
        for state in states.values_mut() {
            sort_directives(&mut state.directives);
        }
        Ok(states)
    }
}

/// Directive order does not change outcomes, but a fixed order keeps explanations deterministic.
fn sort_directives(directives: &mut [CompiledDirective]) {
    directives.sort_by(|a, b| a.directive_id.cmp(&b.directive_id));
}
