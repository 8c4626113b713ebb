//! The national data opt-out: get and set.

use carerecord_contracts::consent::v1::*;
use carerecord_platform::testing::TestDatabase;
use tonic::Code;

use crate::helpers::*;

fn set(patient_id: &str, opted_out: bool, etag: &str) -> SetNationalDataOptOutRequest {
    SetNationalDataOptOutRequest {
        patient_id: patient_id.into(),
        opted_out,
        etag: etag.into(),
        requester: Some(requester()),
    }
}

#[tokio::test]
async fn opt_out_is_versioned_and_compare_and_set() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        let c = &mut app.client;
        let patient = new_id();
        let never = c
            .get_national_data_opt_out(GetNationalDataOptOutRequest {
                patient_id: patient.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .national_data_opt_out
            .unwrap();
        assert_eq!(
            never,
            NationalDataOptOut {
                patient_id: patient.clone(),
                ..Default::default()
            }
        );

        // Opting back in when never opted out writes nothing.
        let unchanged = c
            .set_national_data_opt_out(set(&patient, false, ""))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(unchanged.national_data_opt_out.unwrap().version, 0);
        let err = c
            .set_national_data_opt_out(set(&patient, true, "some-etag"))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::Aborted,
            "any etag is stale for a never-recorded patient"
        );

        let out = c
            .set_national_data_opt_out(set(&patient, true, ""))
            .await
            .unwrap()
            .into_inner()
            .national_data_opt_out
            .unwrap();
        assert!(out.opted_out);
        assert_eq!(out.version, 1);
        assert_eq!(out.updated_by, Some(requester()));
        assert!(out.update_time.is_some() && !out.etag.is_empty());

        let retry = c
            .set_national_data_opt_out(set(&patient, true, ""))
            .await
            .unwrap()
            .into_inner()
            .national_data_opt_out
            .unwrap();
        assert_eq!(retry, out, "a blind retry is harmless");
        let err = c
            .set_national_data_opt_out(set(&patient, false, "stale"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Aborted);
        let back = c
            .set_national_data_opt_out(set(&patient, false, &out.etag))
            .await
            .unwrap()
            .into_inner()
            .national_data_opt_out
            .unwrap();
        assert!(!back.opted_out);
        assert_eq!(back.version, 2);
        let read = c
            .get_national_data_opt_out(GetNationalDataOptOutRequest {
                patient_id: patient.to_uppercase(),
            })
            .await
            .unwrap()
            .into_inner()
            .national_data_opt_out
            .unwrap();
        assert_eq!(read, back);

        let err = c
            .set_national_data_opt_out(SetNationalDataOptOutRequest {
                patient_id: "p1".into(),
                opted_out: true,
                etag: String::new(),
                requester: None,
            })
            .await
            .unwrap_err();
        assert_eq!(violations(&err), ["patient_id", "requester"]);
        let err = c
            .get_national_data_opt_out(GetNationalDataOptOutRequest {
                patient_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(violations(&err), ["patient_id"]);
    }
}
