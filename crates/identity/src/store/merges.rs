//! Merges and unmerges: two patients rewritten, and two versions appended, in one transaction.

use carerecord_contracts::common::v1::{ChangeType, Requester};
use carerecord_contracts::identity::v1::Patient;
use carerecord_platform::db::now_micros;

use super::feed::NewVersion;
use super::requests::{self, RecordedRequest};
use super::{Store, Stored, Write};
use crate::domain::patient::changed_fields;
use crate::error::Error;
use carerecord_platform::sql::insert_rows;

/// A merge or an unmerge to write: the two patients as loaded with their next versions, first
/// then second, who asked and why, and for a merge its request id and body hash.
pub struct PairWrite<'a> {
    pub change_type: ChangeType,
    pub first: (&'a Stored, &'a Patient),
    pub second: (&'a Stored, &'a Patient),
    pub requester: &'a Requester,
    pub reason: &'a str,
    pub request: Option<(&'a str, &'a str)>,
}

impl Store {
    /// Writes a merge or an unmerge: the two patients' new rows and their two versions, and the
    /// request id when there is one, in the transaction `write` (which loaded them).
    pub async fn write_pair(&self, mut write: Write, pair: PairWrite<'_>) -> Result<(), Error> {
        let PairWrite {
            change_type,
            first: (old_first, first),
            second: (old_second, second),
            requester,
            reason,
            request,
        } = pair;
        let conn = &mut *write.tx;
        // Merges and unmerges change no demographics: features stay as they were.
        self.rewrite(conn, old_first, first, &old_first.features)
            .await?;
        self.rewrite(conn, old_second, second, &old_second.features)
            .await?;
        let now = now_micros();
        if let Some((request_id, body_hash)) = request {
            let recorded = RecordedRequest {
                body_hash: body_hash.to_owned(),
                patient_id: first.patient_id.clone(),
                version: first.version,
                related_id: second.patient_id.clone(),
                related_version: second.version,
            };
            insert_rows(
                conn,
                requests::INSERT,
                vec![requests::row(request_id, recorded, now)],
            )
            .await?;
        }
        let fields_first = changed_fields(&old_first.patient, first);
        let fields_second = changed_fields(&old_second.patient, second);
        let versions = [
            (first, &fields_first, &second.patient_id),
            (second, &fields_second, &first.patient_id),
        ]
        .into_iter()
        .map(|(patient, changed_fields, related)| NewVersion {
            patient,
            change_type,
            changed_fields,
            requester,
            reason,
            related,
            time: now,
        })
        .collect();
        self.append_versions(conn, versions).await?;
        write.tx.commit().await?;
        Ok(())
    }
}
