//! Patients: reads, creates (alone or in batches) and updates.

use std::collections::HashMap;

use carerecord_contracts::common::v1::{ChangeType, Requester};
use carerecord_contracts::identity::v1::{Patient, PatientConfidentiality, PatientState};
use carerecord_platform::db::now_micros;
use prost::Message;
use sqlx::{Any, AnyConnection, QueryBuilder};

use super::blocking::{self, Derived};
use super::feed::NewVersion;
use super::identifiers::{self, Key};
use super::requests::{self, RecordedRequest};
use super::{NewPatient, Store, Stored, decode_stored, load};
use crate::domain::features::Features;
use crate::domain::patient::{identifier_keys, micros, stamp};
use crate::error::Error;
use carerecord_platform::sql::{Value, finish, insert_rows, push_in};

const INSERT: &str = "INSERT INTO patients (patient_id, version, state, merged_into, data, features, create_time, update_time)";

/// Each item's outcome; `None` while undecided.
type Outcomes = Vec<Option<Result<Patient, Error>>>;

impl Store {
    pub async fn get(&self, patient_id: &str) -> Result<Option<Stored>, Error> {
        let mut conn = self.db.pool.acquire().await?;
        load(&mut conn, patient_id).await
    }

    /// Patients by id (any order; missing ids are skipped).
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Stored>, Error> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let mut builder =
                QueryBuilder::<Any>::new("SELECT data, features FROM patients WHERE patient_id");
            push_in(&mut builder, chunk.iter().cloned());
            for row in finish(&mut builder)?.fetch_all(&self.db.pool).await? {
                out.push(decode_stored(&row)?);
            }
        }
        Ok(out)
    }

    /// Creates patients, each as if alone (see BatchCreatePatients), committing the good ones in
    /// one transaction; on a race with a concurrent writer it falls back to one at a time.
    pub async fn create(
        &self,
        items: Vec<Result<NewPatient, Error>>,
        requester: &Requester,
    ) -> Result<Vec<Result<Patient, Error>>, Error> {
        for attempt in 0.. {
            match self.try_create(&items, requester).await {
                Err(e) if e.is_unique_violation() && attempt < 3 => {
                    if items.len() > 1 {
                        let mut out = Vec::with_capacity(items.len());
                        for item in items {
                            let one = Box::pin(self.create(vec![item], requester)).await?;
                            out.extend(one);
                        }
                        return Ok(out);
                    }
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    async fn try_create(
        &self,
        items: &[Result<NewPatient, Error>],
        requester: &Requester,
    ) -> Result<Vec<Result<Patient, Error>>, Error> {
        let mut outcomes: Outcomes = items
            .iter()
            .map(|i| i.as_ref().err().map(|e| Err(e.clone_shallow())))
            .collect();
        let mut conn = self.db.pool.acquire().await?;
        self.replay(&mut conn, items, &mut outcomes).await?;
        let now = now_micros();
        let accepted = accept(&mut conn, items, &mut outcomes, now).await?;
        drop(conn);
        if !accepted.is_empty() {
            self.insert_created(items, &accepted, requester, now)
                .await?;
        }
        for (i, patient) in accepted {
            outcomes[i] = Some(Ok(patient));
        }
        Ok(outcomes
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Corrupt("item without a result".into()))))
            .collect())
    }

    /// Decides the items whose request id was seen before: the first result again, or a refusal
    /// when the body differs.
    async fn replay(
        &self,
        conn: &mut AnyConnection,
        items: &[Result<NewPatient, Error>],
        outcomes: &mut Outcomes,
    ) -> Result<(), Error> {
        let ids: Vec<&str> = items
            .iter()
            .filter_map(|i| i.as_ref().ok().map(|n| n.request_id.as_str()))
            .collect();
        let seen = requests::recorded(conn, &ids).await?;
        for (i, item) in items.iter().enumerate() {
            if let Ok(item) = item
                && let Some((hash, patient_id)) = seen.get(&item.request_id)
            {
                outcomes[i] = Some(if *hash == item.body_hash {
                    match self.version(patient_id, 1).await? {
                        Some(p) => Ok(p),
                        None => Err(Error::Corrupt(format!("no version 1 of {patient_id}"))),
                    }
                } else {
                    Err(Error::RequestIdReused {
                        patient_id: patient_id.clone(),
                    })
                });
            }
        }
        Ok(())
    }

    /// Writes the accepted items, their identifiers, request ids, derived rows and first
    /// versions, in one transaction.
    async fn insert_created(
        &self,
        items: &[Result<NewPatient, Error>],
        accepted: &[(usize, Patient)],
        requester: &Requester,
        now: i64,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        let mut patients = Vec::with_capacity(accepted.len());
        let mut identifier_rows = Vec::new();
        let mut request_rows = Vec::with_capacity(accepted.len());
        let mut derived = Derived::default();
        for (i, patient) in accepted {
            let Ok(item) = &items[*i] else { continue };
            let features = Features::of(patient);
            let id = &patient.patient_id;
            patients.push(vec![
                Value::Text(id.clone()),
                Value::Int(1),
                Value::Int(PatientState::Active as i64),
                Value::OptText(None),
                Value::Blob(patient.encode_to_vec()),
                Value::Blob(features.encode_to_vec()),
                Value::Int(now),
                Value::Int(now),
            ]);
            identifier_rows.extend(identifiers::rows(patient));
            request_rows.push(requests::row(
                &item.request_id,
                RecordedRequest {
                    body_hash: item.body_hash.clone(),
                    patient_id: id.clone(),
                    version: 1,
                    related_id: String::new(),
                    related_version: 0,
                },
                now,
            ));
            derived.add(id, &features);
        }
        insert_rows(&mut tx, INSERT, patients).await?;
        identifiers::insert(&mut tx, identifier_rows).await?;
        insert_rows(&mut tx, requests::INSERT, request_rows).await?;
        derived.insert(&mut tx).await?;
        let versions = accepted
            .iter()
            .map(|(_, p)| NewVersion {
                patient: p,
                change_type: ChangeType::Created,
                changed_fields: &[],
                requester,
                reason: "",
                related: "",
                time: now,
            })
            .collect();
        self.append_versions(&mut tx, versions).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes `new` (already validated, with its new version stamped) over `old`, keeping
    /// identifiers, blocking keys and names in step. Fails with ETAG_MISMATCH if `old` is no
    /// longer current, and with ALREADY_EXISTS if a new identifier is held by another patient.
    pub async fn update(
        &self,
        old: &Stored,
        new: &Patient,
        changed_fields: &[String],
        requester: &Requester,
        reason: &str,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        let features = Features::of(new);
        self.rewrite(&mut tx, old, new, &features).await?;
        let time = new.update_time.as_ref().map_or_else(now_micros, micros);
        self.append_versions(
            &mut tx,
            vec![NewVersion {
                patient: new,
                change_type: ChangeType::Updated,
                changed_fields,
                requester,
                reason,
                related: "",
                time,
            }],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the stored row of `old` by `new` if `old` is still current.
    pub(super) async fn rewrite(
        &self,
        conn: &mut AnyConnection,
        old: &Stored,
        new: &Patient,
        features: &Features,
    ) -> Result<(), Error> {
        let id = &new.patient_id;
        let merged_into =
            (!new.merged_into_patient_id.is_empty()).then(|| new.merged_into_patient_id.clone());
        let done = sqlx::query(
            "UPDATE patients SET version = $1, state = $2, merged_into = $3, data = $4, features = $5, update_time = $6 \
             WHERE patient_id = $7 AND version = $8",
        )
        .bind(new.version)
        .bind(i64::from(new.state))
        .bind(merged_into)
        .bind(new.encode_to_vec())
        .bind(features.encode_to_vec())
        .bind(now_micros())
        .bind(id.clone())
        .bind(old.patient.version)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 0 {
            let current = load(conn, id).await?;
            return Err(Error::EtagMismatch {
                patient_id: id.clone(),
                current_version: current.map_or(0, |c| c.patient.version),
            });
        }
        identifiers::rereserve(conn, &old.patient, new).await?;
        blocking::rederive(conn, id, &old.features, features).await
    }
}

/// Gives each undecided item an id and its first version unless one of its identifiers is held:
/// by a stored patient, or by an earlier item of the batch.
async fn accept(
    conn: &mut AnyConnection,
    items: &[Result<NewPatient, Error>],
    outcomes: &mut Outcomes,
    now: i64,
) -> Result<Vec<(usize, Patient)>, Error> {
    let keys: Vec<Key> = items
        .iter()
        .zip(outcomes.iter())
        .filter(|(_, r)| r.is_none())
        .filter_map(|(i, _)| i.as_ref().ok())
        .flat_map(|n| identifier_keys(&n.patient))
        .collect();
    let stored = identifiers::holders(conn, &keys).await?;
    let mut in_batch = HashMap::new();
    let mut accepted = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (Ok(item), None) = (item, &outcomes[i]) else {
            continue;
        };
        let keys = identifier_keys(&item.patient);
        let mut conflicts = identifiers::conflicts(&keys, &stored);
        if conflicts.is_empty() {
            conflicts = identifiers::conflicts(&keys, &in_batch);
        }
        if !conflicts.is_empty() {
            outcomes[i] = Some(Err(Error::Conflicts(conflicts)));
            continue;
        }
        let mut patient = item.patient.clone();
        patient.patient_id = uuid::Uuid::now_v7().to_string();
        patient.state = PatientState::Active as i32;
        patient.merged_into_patient_id.clear();
        patient.merged_from_patient_ids.clear();
        patient.confidentiality = PatientConfidentiality::Unrestricted as i32;
        patient.confidentiality_change = None;
        stamp(&mut patient, 1, now);
        for k in keys {
            in_batch.insert(k, (patient.patient_id.clone(), None));
        }
        accepted.push((i, patient));
    }
    Ok(accepted)
}
