//! Stored versions as the contract's messages.

use carerecord_contracts::records::v1::{Record, RecordChange, RecordVersion};
use carerecord_platform::page_token::PageTokens;

use super::cursor::feed_cursor;
use crate::domain::record::{FHIR_JSON, decode_data_classes, micros_timestamp};
use crate::store::Version;

/// A Record message of a stored version.
pub fn record_message(v: Version) -> Record {
    let etag = v.etag();
    let modified_by = Some((&v.requester).into());
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
        modified_by,
    }
}

/// A version in a record's history.
pub fn version_message(v: Version) -> RecordVersion {
    let change_type = v.change_type as i32;
    let requester = Some((&v.requester).into());
    RecordVersion {
        record: Some(record_message(v)),
        change_type,
        requester,
    }
}

/// The change a version wrote, with the cursor just after it.
pub fn change_message(tokens: &PageTokens, v: Version) -> RecordChange {
    RecordChange {
        sequence: v.seq,
        cursor: feed_cursor(tokens, v.seq),
        change_type: v.change_type as i32,
        record_id: v.record_id.clone(),
        patient_id: v.fields.patient_id.clone(),
        version: v.version,
        change_time: Some(micros_timestamp(v.update_time)),
        requester: Some((&v.requester).into()),
        record: Some(record_message(v)),
    }
}
