use carerecord_contracts::access::v1::VerifyAuditLogRequest;
use carerecord_e2e::{Overrides, Platform, authed, by_id, read_request, token};

#[tokio::test]
async fn a_tampered_audit_entry_is_detected_by_verification() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let (patient_id, _) = platform.register_patient("Florence", "Nightingale").await;
        platform.add_record(&patient_id, &[]).await;
        let clinician = token("R8000", "user/*.rs");
        let mut access = platform.access_client().await;
        for _ in 0..3 {
            let request = read_request(by_id(&patient_id), "TREAT");
            access
                .read_patient_record(authed(request, &clinician))
                .await
                .expect("read");
        }
        let officer = token("R0001", "user/*.rs");
        let clean = access
            .verify_audit_log(authed(VerifyAuditLogRequest::default(), &officer))
            .await
            .expect("verify")
            .into_inner();
        assert!(clean.ok, "{:?}: {}", platform.backend, clean.message);

        // Someone with database access rewrites who read the record in entry 1.
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&platform.access_database_url)
            .await
            .expect("access database");
        let (leaf,): (Vec<u8>,) =
            sqlx::query_as("SELECT leaf_data FROM audit_entries WHERE idx = 1")
                .fetch_one(&pool)
                .await
                .expect("entry 1");
        let mut forged = leaf.clone();
        let at = forged
            .windows(b"R8000".len())
            .position(|w| w == b"R8000")
            .expect("the role is in the leaf");
        forged[at..at + 5].copy_from_slice(b"R8999");
        sqlx::query("UPDATE audit_entries SET leaf_data = $1 WHERE idx = 1")
            .bind(forged)
            .execute(&pool)
            .await
            .expect("tamper");

        let tampered = access
            .verify_audit_log(authed(VerifyAuditLogRequest::default(), &officer))
            .await
            .expect("verify")
            .into_inner();
        assert!(
            !tampered.ok,
            "{:?}: tampering went unnoticed",
            platform.backend
        );
        assert_eq!(tampered.first_bad_index, Some(1), "{}", tampered.message);
    }
}
