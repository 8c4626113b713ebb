//! One row of `record_versions`: its columns, as read back and as written.

use carerecord_platform::sql::{DecodeRow, ReadRow};
use sqlx::{Any, QueryBuilder};

use super::copy::Columns;
use crate::domain::record::{Actor, FHIR_JSON, RecordFields};
use crate::domain::terms::Terms;

/// `change_type` values, as in `carerecord.common.v1.ChangeType`.
pub const CREATED: i64 = 1;
pub const UPDATED: i64 = 2;
pub const RETRACTED: i64 = 3;
/// `status` values, as in `carerecord.records.v1.RecordStatus`.
pub const CURRENT: i64 = 1;
pub const ENTERED_IN_ERROR: i64 = 2;

/// `record_versions` columns as read back, with the payload or an empty blob in its place, and
/// then `$terms`: nothing, or the clinical terms.
macro_rules! version_columns {
    ($payload:literal, $terms:expr) => {
        concat!(
            "record_id, version, seq, creation_seq, change_type, patient_id, resource_type, status, ",
            "retraction_reason, content_type, ",
            $payload,
            " AS payload, content_hash, payload_size, data_classes, authoring_org, author, source_system, ",
            "effective_time, recorded_time, create_time, update_time, requester_user_id, requester_org, ",
            "requester_role, requester_display",
            $terms
        )
    };
}

/// How many columns `version_columns!` reads before the terms.
const COLUMNS_BEFORE_TERMS: usize = 25;

/// The columns a write fills, in the order of [`put_version`].
macro_rules! insert_columns {
    () => {
        "record_id, version, seq, creation_seq, change_type, patient_id, resource_type, status, \
         retraction_reason, content_type, payload, content_hash, payload_size, data_classes, authoring_org, author, \
         source_system, effective_time, recorded_time, create_time, update_time, requester_user_id, requester_org, \
         requester_role, requester_display, codes, categories, fhir_status"
    };
}
pub(super) use insert_columns;

/// How many values [`put_version`] puts.
pub const INSERT_WIDTH: usize = 28;

/// `SELECT <columns> FROM record_versions`, to be completed with conditions. Reads leave the
/// clinical terms out: only filters and writes use them.
pub fn select(with_payload: bool) -> QueryBuilder<Any> {
    QueryBuilder::new(if with_payload {
        concat!(
            "SELECT ",
            version_columns!("payload", ""),
            " FROM record_versions"
        )
    } else {
        concat!(
            "SELECT ",
            version_columns!("substr(payload, 1, 0)", ""),
            " FROM record_versions"
        )
    })
}

/// The feed head, as a scalar subquery: every occurrence in one statement reads the same value.
macro_rules! feed_head {
    () => {
        "(SELECT seq FROM feed_head WHERE id = 1)"
    };
}

/// [`feed_head!`] for statements built at run time.
pub const FEED_HEAD: &str = feed_head!();

/// [`select`] with the feed head as a column `snapshot`, for a listing as of the head at the
/// statement's start (decode rows as [`AtHead`]).
pub fn select_at_head(with_payload: bool) -> QueryBuilder<Any> {
    QueryBuilder::new(if with_payload {
        concat!(
            "SELECT ",
            version_columns!("payload", concat!(", ", feed_head!(), " AS snapshot")),
            " FROM record_versions"
        )
    } else {
        concat!(
            "SELECT ",
            version_columns!(
                "substr(payload, 1, 0)",
                concat!(", ", feed_head!(), " AS snapshot")
            ),
            " FROM record_versions"
        )
    })
}

/// A row of [`select_at_head`]: a version and the feed head the statement read it at.
pub struct AtHead {
    pub snapshot: i64,
    pub version: Version,
}

impl DecodeRow for AtHead {
    fn decode_row<R: ReadRow>(row: &R) -> Result<AtHead, sqlx::Error> {
        Ok(AtHead {
            snapshot: row.int("snapshot")?,
            version: Version::decode_row(row)?,
        })
    }
}

/// [`select`] with payloads and the clinical terms, for a write that carries them on.
pub fn select_with_terms() -> QueryBuilder<Any> {
    QueryBuilder::new(concat!(
        "SELECT ",
        version_columns!("payload", ", codes, categories, fhir_status"),
        " FROM record_versions"
    ))
}

/// One stored version of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub record_id: String,
    pub version: i64,
    pub seq: i64,
    pub creation_seq: i64,
    pub change_type: i64,
    pub status: i64,
    pub retraction_reason: String,
    /// Empty when read in the metadata view; `payload_size` and `fields.content_hash` stay set.
    pub fields: RecordFields,
    pub payload_size: i64,
    pub recorded_time: i64,
    pub create_time: i64,
    pub update_time: i64,
    pub requester: Actor,
}

impl Version {
    pub fn etag(&self) -> String {
        format!("v{}-{}", self.version, self.seq)
    }

    /// A copy in the metadata view, without copying the payload.
    pub fn without_payload(&self) -> Version {
        let f = &self.fields;
        Version {
            fields: RecordFields {
                patient_id: f.patient_id.clone(),
                resource_type: f.resource_type.clone(),
                payload: Vec::new(),
                content_hash: f.content_hash.clone(),
                data_classes: f.data_classes.clone(),
                authoring_org: f.authoring_org.clone(),
                author: f.author.clone(),
                source_system: f.source_system.clone(),
                effective_time: f.effective_time,
                recorded_time: f.recorded_time,
                terms: f.terms.clone(),
            },
            record_id: self.record_id.clone(),
            retraction_reason: self.retraction_reason.clone(),
            requester: self.requester.clone(),
            ..*self
        }
    }
}

impl DecodeRow for Version {
    /// A row selected with [`select`] or [`select_with_terms`].
    fn decode_row<R: ReadRow>(row: &R) -> Result<Version, sqlx::Error> {
        let recorded_time = row.int("recorded_time")?;
        // NULL only before the start-up backfill has reached the version.
        let term = |i: usize| -> Result<String, sqlx::Error> {
            if row.width() >= COLUMNS_BEFORE_TERMS + 3 {
                Ok(row
                    .opt_text_at(COLUMNS_BEFORE_TERMS + i)?
                    .unwrap_or_default())
            } else {
                Ok(String::new())
            }
        };
        Ok(Version {
            record_id: row.text("record_id")?,
            version: row.int("version")?,
            seq: row.int("seq")?,
            creation_seq: row.int("creation_seq")?,
            change_type: row.int("change_type")?,
            status: row.int("status")?,
            retraction_reason: row.text("retraction_reason")?,
            fields: RecordFields {
                patient_id: row.text("patient_id")?,
                resource_type: row.text("resource_type")?,
                payload: row.bytes("payload")?,
                content_hash: row.text("content_hash")?,
                data_classes: row.text("data_classes")?,
                authoring_org: row.text("authoring_org")?,
                author: row.text("author")?,
                source_system: row.text("source_system")?,
                effective_time: row.opt_int("effective_time")?,
                recorded_time: Some(recorded_time),
                terms: Terms {
                    codes: term(0)?,
                    categories: term(1)?,
                    status: term(2)?,
                },
            },
            payload_size: row.int("payload_size")?,
            recorded_time,
            create_time: row.int("create_time")?,
            update_time: row.int("update_time")?,
            requester: Actor {
                user_id: row.text("requester_user_id")?,
                organisation_ods_code: row.text("requester_org")?,
                role_code: row.text("requester_role")?,
                display_name: row.text("requester_display")?,
            },
        })
    }
}

/// Puts the columns of one version in `insert_columns!()` order, as bind parameters or a COPY row.
pub(super) fn put_version<C: Columns>(columns: &mut C, v: &Version) {
    let (f, r) = (&v.fields, &v.requester);
    columns
        .text(&v.record_id)
        .int(v.version)
        .int(v.seq)
        .int(v.creation_seq)
        .int(v.change_type)
        .text(&f.patient_id)
        .text(&f.resource_type)
        .int(v.status)
        .text(&v.retraction_reason)
        .text(FHIR_JSON)
        .bytes(&f.payload)
        .text(&f.content_hash)
        .int(v.payload_size)
        .text(&f.data_classes)
        .text(&f.authoring_org)
        .text(&f.author)
        .text(&f.source_system)
        .optional_int(f.effective_time)
        .int(v.recorded_time)
        .int(v.create_time)
        .int(v.update_time)
        .text(&r.user_id)
        .text(&r.organisation_ods_code)
        .text(&r.role_code)
        .text(&r.display_name)
        .text(&f.terms.codes)
        .text(&f.terms.categories)
        .text(&f.terms.status);
}
