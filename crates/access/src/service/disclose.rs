//! A record of record hosting as the front door discloses it.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::records::v1 as records;

/// The media type of every disclosed payload.
pub const CONTENT_TYPE: &str = "application/fhir+json; fhirVersion=4.0";

/// `record` as disclosed, with `agent` (who wrote this version) as its provenance.
pub fn disclosed(
    record: records::Record,
    agent: Option<common::Requester>,
) -> api::DisclosedRecord {
    let status = match records::RecordStatus::try_from(record.status) {
        Ok(records::RecordStatus::EnteredInError) => api::RecordStatus::EnteredInError,
        _ => api::RecordStatus::Current,
    };
    api::DisclosedRecord {
        provenance: Some(api::Provenance {
            agent,
            source_system: record.source_system,
            recorded_time: record.update_time,
        }),
        record_id: record.record_id,
        version: record.version,
        resource_type: record.resource_type,
        content_type: CONTENT_TYPE.into(),
        payload: record.payload,
        data_classes: record.data_classes,
        effective_time: record.effective_time,
        last_updated: record.update_time,
        source_organisation_ods_code: record.authoring_organisation_ods_code,
        etag: record.etag,
        status: status as i32,
        retraction_reason: record.retraction_reason,
    }
}

/// The audit reference of a disclosed (or written) record.
pub fn record_ref(record: &api::DisclosedRecord) -> api::RecordRef {
    api::RecordRef {
        record_id: record.record_id.clone(),
        version: record.version,
    }
}
