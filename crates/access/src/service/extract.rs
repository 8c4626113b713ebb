//! ExtractPseudonymised: a registered project's cohort, de-identified row by row.
//!
//! Everything that can refuse the call (project, scopes, the audit log, cohort resolution, consent)
//! runs before the response starts, so such failures are the call's status. The rows then stream
//! from record hosting through de-identification to the client over a bounded channel: a slow
//! client slows the export instead of growing memory.

use std::collections::HashMap;

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::records::v1 as records;
use carerecord_platform::errors::Violations;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

use super::cohort::{Admission, CohortArgs, Prepared, cohort_args};
use super::{AccessService, BoxStream};
use crate::domain::deid::{self, Subject};
use crate::error::Error;

impl AccessService {
    pub(super) async fn extract(
        &self,
        request: Request<api::ExtractPseudonymisedRequest>,
    ) -> Result<BoxStream<api::ExtractPseudonymisedResponse>, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let args = cohort_args!(&mut v, req);
        let Some(args) = args.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let mut leaf = self.cohort_leaf(&caller, &trace, api::AuditAction::Extract, &args);
        let prepared = match self.prepare(&caller, &args).await {
            Ok(p) => p,
            Err(e) => return Err(self.audited_failure(leaf, e, false).await),
        };
        leaf.cohort_counts = Some(prepared.counts);
        let (tx, rx) = mpsc::channel::<Result<api::ExtractPseudonymisedResponse, Status>>(64);
        let service = self.clone();
        tokio::spawn(async move {
            service.stream_extract(prepared, args, leaf, tx).await;
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn stream_extract(
        &self,
        prepared: Prepared,
        args: CohortArgs,
        mut leaf: api::AuditLeaf,
        tx: mpsc::Sender<Result<api::ExtractPseudonymisedResponse, Status>>,
    ) {
        let mut rows = 0i64;
        let mut withheld = 0i64;
        let pseudonymiser = prepared.project.pseudonymiser.clone();
        let patient_pseudonyms: HashMap<&str, String> = prepared
            .included_patients()
            .map(|id| (id, pseudonymiser.pseudonym(id)))
            .collect();
        let mut outcome: Result<(), Error> = Ok(());
        'batches: for owners in prepared.owner_batches() {
            let mut pending: Vec<api::PseudonymisedRow> = Vec::new();
            let request = prepared.export_request(owners, records::RecordView::Full);
            let exported = self
                .export(request, |record| {
                    let (survivor, ids) = match prepared.admit(&record, &args) {
                        Admission::Skipped => return Ok(()),
                        Admission::Withheld => {
                            withheld += 1;
                            return Ok(());
                        }
                        Admission::Admitted { survivor, ids, .. } => (survivor, ids),
                    };
                    let patient_pseudonym = &patient_pseudonyms[survivor];
                    let record_pseudonym = pseudonymiser.pseudonym(&record.record_id);
                    let subject = Subject {
                        pseudonymiser: &pseudonymiser,
                        patient_ids: ids,
                        patient_pseudonym,
                        record_pseudonym: &record_pseudonym,
                    };
                    // Record hosting only holds JSON objects; anything else is not disclosed.
                    let Ok(payload) = deid::deidentify(&record.payload, &subject) else {
                        withheld += 1;
                        return Ok(());
                    };
                    pending.push(api::PseudonymisedRow {
                        pseudonym: patient_pseudonym.clone(),
                        record_pseudonym,
                        resource_type: record.resource_type,
                        payload,
                        effective_time: record.effective_time,
                        data_classes: record.data_classes,
                    });
                    Ok(())
                })
                .await;
            if let Err(e) = exported {
                outcome = Err(e);
                break 'batches;
            }
            for row in pending {
                let message = api::ExtractPseudonymisedResponse {
                    item: Some(api::extract_pseudonymised_response::Item::Row(row)),
                };
                if tx.send(Ok(message)).await.is_err() {
                    outcome = Err(Error::Cancelled);
                    break 'batches;
                }
                rows += 1;
            }
        }
        leaf.row_count = rows;
        leaf.returned_count = rows;
        leaf.withheld_count = withheld;
        match outcome {
            Ok(()) => match self.audit(leaf, None, false).await {
                Ok(appended) => {
                    let summary = api::ExtractSummary {
                        cohort_counts: Some(prepared.counts),
                        rows,
                        records_withheld: withheld,
                        audit_entry_id: appended.entry_id,
                        audit_index: appended.index,
                    };
                    let _ = tx
                        .send(Ok(api::ExtractPseudonymisedResponse {
                            item: Some(api::extract_pseudonymised_response::Item::Summary(summary)),
                        }))
                        .await;
                }
                Err(unavailable) => {
                    let _ = tx.send(Err(unavailable.into())).await;
                }
            },
            Err(e) => {
                // The rows already sent stay counted in the FAILED entry.
                let mut failed = leaf;
                failed.row_count = rows;
                let error = self.audited_failure(failed, e, false).await;
                let _ = tx.send(Err(error.into())).await;
            }
        }
    }
}
