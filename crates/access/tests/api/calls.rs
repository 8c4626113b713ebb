//! The RPCs of data access as [`TestApp`] methods, each with a bearer token.

use carerecord_contracts::access::v1 as api;
use tonic::Status;

use crate::support::{TestApp, authed, read};

/// Methods of [`TestApp`] calling an RPC with a bearer token, answering its response message.
macro_rules! authed_calls {
    ($($(#[$doc:meta])* $name:ident: $rpc:ident($request:ty) -> $response:ty;)*) => {
        impl TestApp {
            $($(#[$doc])*
            pub async fn $name(&self, request: $request, token: &str) -> Result<$response, Status> {
                let mut client = self.client.clone();
                let response = client.$rpc(authed(request, token)).await?;
                Ok(response.into_inner())
            })*
        }
    };
}

authed_calls! {
    /// ReadPatientRecord.
    read: read_patient_record(api::ReadPatientRecordRequest) -> api::ReadPatientRecordResponse;
    /// FindPatient.
    find: find_patient(api::FindPatientRequest) -> api::FindPatientResponse;
    /// BreakGlassReadPatientRecord.
    break_glass_read: break_glass_read_patient_record(api::BreakGlassReadPatientRecordRequest)
        -> api::BreakGlassReadPatientRecordResponse;
    /// ListDisclosures.
    disclosures: list_disclosures(api::ListDisclosuresRequest) -> api::ListDisclosuresResponse;
    /// ExtractPseudonymised: the stream of its rows and summary.
    extract: extract_pseudonymised(api::ExtractPseudonymisedRequest)
        -> tonic::Streaming<api::ExtractPseudonymisedResponse>;
    /// AggregateExtract: the stream of its groups and summary.
    aggregate: aggregate_extract(api::AggregateExtractRequest)
        -> tonic::Streaming<api::AggregateExtractResponse>;
    /// ListBreakGlassEvents.
    break_glass_events: list_break_glass_events(api::ListBreakGlassEventsRequest)
        -> api::ListBreakGlassEventsResponse;
    /// ReviewBreakGlassEvent.
    review: review_break_glass_event(api::ReviewBreakGlassEventRequest)
        -> api::ReviewBreakGlassEventResponse;
    /// ListAuditEntries.
    audit_entries: list_audit_entries(api::ListAuditEntriesRequest)
        -> api::ListAuditEntriesResponse;
    /// GetSignedTreeHead.
    signed_tree_head: get_signed_tree_head(api::GetSignedTreeHeadRequest)
        -> api::GetSignedTreeHeadResponse;
    /// GetAuditPublicKey.
    audit_public_key: get_audit_public_key(api::GetAuditPublicKeyRequest)
        -> api::GetAuditPublicKeyResponse;
    /// GetInclusionProof.
    inclusion_proof: get_inclusion_proof(api::GetInclusionProofRequest)
        -> api::GetInclusionProofResponse;
    /// GetConsistencyProof.
    consistency_proof: get_consistency_proof(api::GetConsistencyProofRequest)
        -> api::GetConsistencyProofResponse;
    /// VerifyAuditLog.
    verify_audit_log: verify_audit_log(api::VerifyAuditLogRequest) -> api::VerifyAuditLogResponse;
}

impl TestApp {
    /// ReadPatientRecord of `patient_id` for `purpose`, expected to be refused: the refusal.
    pub async fn refused_read(&self, patient_id: &str, purpose: &str, token: &str) -> Status {
        self.read(read(patient_id, purpose), token)
            .await
            .unwrap_err()
    }
}
