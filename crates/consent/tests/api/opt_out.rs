//! The national data opt-out: get and set.

use carerecord_contracts::consent::v1::*;
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
    on_each_backend(async |c: &mut Client| {
        let patient = new_id();
        let never = get_opt_out(c, &patient).await.unwrap();
        assert_eq!(
            never,
            NationalDataOptOut {
                patient_id: patient.clone(),
                ..Default::default()
            }
        );

        // Opting back in when never opted out writes nothing.
        let unchanged = set_opt_out(c, set(&patient, false, "")).await.unwrap();
        assert_eq!(unchanged.version, 0);
        let err = set_opt_out(c, set(&patient, true, "some-etag"))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::Aborted,
            "any etag is stale for a never-recorded patient"
        );

        let out = set_opt_out(c, set(&patient, true, "")).await.unwrap();
        assert!(out.opted_out);
        assert_eq!(out.version, 1);
        assert_eq!(out.updated_by, Some(requester()));
        assert!(out.update_time.is_some() && !out.etag.is_empty());

        let retry = set_opt_out(c, set(&patient, true, "")).await.unwrap();
        assert_eq!(retry, out, "a blind retry is harmless");
        let err = set_opt_out(c, set(&patient, false, "stale"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Aborted);
        let back = set_opt_out(c, set(&patient, false, &out.etag))
            .await
            .unwrap();
        assert!(!back.opted_out);
        assert_eq!(back.version, 2);
        let read = get_opt_out(c, &patient.to_uppercase()).await.unwrap();
        assert_eq!(read, back);

        let err = set_opt_out(
            c,
            SetNationalDataOptOutRequest {
                patient_id: "p1".into(),
                opted_out: true,
                etag: String::new(),
                requester: None,
            },
        )
        .await
        .unwrap_err();
        assert_invalid(&err, &["patient_id", "requester"]);
        let err = get_opt_out(c, "").await.unwrap_err();
        assert_invalid(&err, &["patient_id"]);
    })
    .await;
}
