//! The audit log: heads, keys, proofs, offline verification and tamper detection.

use carerecord_access::domain::merkle;
use carerecord_access::domain::tree_head;
use carerecord_contracts::access::v1 as api;
use carerecord_platform::testing::{TestDatabase, resource_info, violations};
use sqlx::Connection;
use tonic::Code;

use crate::support::*;

fn hash(bytes: &[u8]) -> merkle::Hash {
    bytes.try_into().unwrap()
}

async fn fill(app: &mut TestApp, reads: usize) {
    let p = app.fakes.patient_with_an_observation();
    let clinician = token(&Claims::clinician("user/*.rs"));
    for _ in 0..reads {
        app.read(read(&p, "TREAT"), &clinician).await.unwrap();
    }
}

async fn all_entries(app: &mut TestApp) -> Vec<api::AuditEntry> {
    let auditor = token(&Claims::system("system/AuditEvent.rs"));
    let mut entries = Vec::new();
    let mut request = api::ListAuditEntriesRequest {
        page_size: 3,
        ..Default::default()
    };
    loop {
        let page = app.audit_entries(request.clone(), &auditor).await.unwrap();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn heads_proofs_and_offline_verification_agree() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        fill(&mut app, 6).await;
        let anyone = token(&Claims::clinician("openid"));
        let head6 = app
            .signed_tree_head(api::GetSignedTreeHeadRequest { tree_size: 0 }, &anyone)
            .await
            .unwrap()
            .tree_head
            .unwrap();
        assert_eq!(head6.tree_size, 6);
        let key = app
            .audit_public_key(api::GetAuditPublicKeyRequest::default(), &anyone)
            .await
            .unwrap()
            .key
            .unwrap();
        assert_eq!(key.key_id, head6.key_id);
        assert_eq!(key.algorithm, "Ed25519");
        let public_key: [u8; 32] = key.public_key.clone().try_into().unwrap();
        tree_head::verify_head(&head6, &public_key).unwrap();

        fill(&mut app, 5).await;
        let entries = all_entries(&mut app).await;
        // 11 reads, plus the ListAuditEntries pages appended while listing (each after its page).
        assert!(entries.len() >= 11);
        let report = carerecord_access::audit::verify_entries(&entries, &public_key, Some(&head6));
        assert!(report.ok, "{}", report.message);

        // Inclusion of entry 3 in the latest tree, and consistency of the 6-entry head with it.
        let inclusion = app
            .inclusion_proof(
                api::GetInclusionProofRequest {
                    leaf_index: 3,
                    tree_size: 0,
                },
                &anyone,
            )
            .await
            .unwrap();
        let head = inclusion.tree_head.unwrap();
        tree_head::verify_head(&head, &public_key).unwrap();
        let path: Vec<merkle::Hash> = inclusion.audit_path.iter().map(|h| hash(h)).collect();
        merkle::verify_inclusion(
            3,
            head.tree_size as u64,
            &merkle::leaf_hash(&entries[3].leaf_data),
            &path,
            &hash(&head.root_hash),
        )
        .unwrap();
        let consistency = app
            .consistency_proof(
                api::GetConsistencyProofRequest {
                    first_tree_size: 6,
                    second_tree_size: 0,
                },
                &anyone,
            )
            .await
            .unwrap();
        let second = consistency.second_tree_head.unwrap();
        let proof: Vec<merkle::Hash> = consistency.proof.iter().map(|h| hash(h)).collect();
        merkle::verify_consistency(
            6,
            second.tree_size as u64,
            &hash(&head6.root_hash),
            &hash(&second.root_hash),
            &proof,
        )
        .unwrap();

        // Bad sizes.
        let status = app
            .signed_tree_head(api::GetSignedTreeHeadRequest { tree_size: 10_000 }, &anyone)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(error_info(&status).reason, "TREE_SIZE_OUT_OF_RANGE");
        let status = app
            .consistency_proof(
                api::GetConsistencyProofRequest {
                    first_tree_size: 0,
                    second_tree_size: 0,
                },
                &anyone,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let status = app
            .audit_public_key(
                api::GetAuditPublicKeyRequest {
                    key_id: "ab".repeat(32),
                },
                &anyone,
            )
            .await
            .unwrap_err();
        assert_eq!(error_info(&status).reason, "KEY_NOT_FOUND");

        // Only auditors list entries.
        let status = app
            .audit_entries(
                api::ListAuditEntriesRequest::default(),
                &token(&Claims::clinician("user/*.rs")),
            )
            .await
            .unwrap_err();
        assert_eq!(error_info(&status).reason, "ROLE_NOT_PERMITTED");
    }
}

#[tokio::test]
async fn a_tampered_entry_is_detected() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        fill(&mut app, 4).await;
        let officer = token(&Claims::privacy_officer());
        let clean = app
            .verify_audit_log(api::VerifyAuditLogRequest::default(), &officer)
            .await
            .unwrap();
        assert!(clean.ok, "{}", clean.message);
        assert_eq!(clean.tree_size, 4);
        let trusted = clean.tree_head.unwrap();
        // Hand out a head, as a monitor would keep it.
        app.client
            .get_signed_tree_head(authed(
                api::GetSignedTreeHeadRequest { tree_size: 0 },
                &officer,
            ))
            .await
            .unwrap();

        // Rewrite entry 1's leaf in the database: a different purpose of use.
        let mut conn = sqlx::AnyConnection::connect(&app.db_url).await.unwrap();
        let row: (Vec<u8>,) = sqlx::query_as("SELECT leaf_data FROM audit_entries WHERE idx = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let mut leaf = <api::AuditLeaf as prost::Message>::decode(row.0.as_slice()).unwrap();
        leaf.purpose_of_use = "PATRQT".into();
        let forged = prost::Message::encode_to_vec(&leaf);
        sqlx::query("UPDATE audit_entries SET leaf_data = $1 WHERE idx = 1")
            .bind(forged.clone())
            .execute(&mut conn)
            .await
            .unwrap();
        let report = app
            .verify_audit_log(api::VerifyAuditLogRequest::default(), &officer)
            .await
            .unwrap();
        assert!(!report.ok);
        assert_eq!(report.first_bad_index, Some(1));
        assert!(report.message.contains("entry 1"), "{}", report.message);

        // A careful forger also rewrites the stored hash: the heads handed out still expose it.
        sqlx::query("UPDATE audit_entries SET leaf_hash = $1 WHERE idx = 1")
            .bind(merkle::leaf_hash(&forged).to_vec())
            .execute(&mut conn)
            .await
            .unwrap();
        let report = app
            .verify_audit_log(
                api::VerifyAuditLogRequest {
                    trusted_tree_head: Some(trusted.clone()),
                },
                &officer,
            )
            .await
            .unwrap();
        assert!(!report.ok);
        assert!(report.message.contains("altered"), "{}", report.message);

        // And offline, from the listed entries and the trusted head alone.
        let key: [u8; 32] = app
            .audit_public_key(api::GetAuditPublicKeyRequest::default(), &officer)
            .await
            .unwrap()
            .key
            .unwrap()
            .public_key
            .try_into()
            .unwrap();
        let entries = all_entries(&mut app).await;
        let offline = carerecord_access::audit::verify_entries(&entries, &key, Some(&trusted));
        assert!(!offline.ok, "{}", offline.message);

        // A malformed trusted head is a bad request.
        let mut malformed = trusted;
        malformed.signature.truncate(10);
        let status = app
            .verify_audit_log(
                api::VerifyAuditLogRequest {
                    trusted_tree_head: Some(malformed),
                },
                &officer,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}

#[tokio::test]
async fn bad_audit_requests_are_precise() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        fill(&mut app, 2).await;
        let officer = token(&Claims::privacy_officer());
        let list = |request: api::ListAuditEntriesRequest| {
            let request = authed(request, &officer);
            let mut client = app.client.clone();
            async move { client.list_audit_entries(request).await }
        };
        let status = list(api::ListAuditEntriesRequest {
            start_index: -1,
            page_size: -5,
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert_eq!(violations(&status), ["start_index", "page_size"]);
        let status = list(api::ListAuditEntriesRequest {
            tree_size: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange);
        let status = list(api::ListAuditEntriesRequest {
            page_token: "forged".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert_eq!(error_info(&status).reason, "INVALID_PAGE_TOKEN");
        let status = app
            .inclusion_proof(
                api::GetInclusionProofRequest {
                    leaf_index: 2,
                    tree_size: 2,
                },
                &officer,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let status = app
            .review(
                api::ReviewBreakGlassEventRequest {
                    event_id: uuid(),
                    etag: "x".into(),
                    outcome: api::BreakGlassReviewOutcome::Appropriate as i32,
                    notes: String::new(),
                },
                &officer,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(error_info(&status).reason, "BREAK_GLASS_EVENT_NOT_FOUND");
        assert_eq!(resource_info(&status).resource_type, "BreakGlassEvent");
        let status = app
            .review(
                api::ReviewBreakGlassEventRequest {
                    event_id: "nope".into(),
                    ..Default::default()
                },
                &officer,
            )
            .await
            .unwrap_err();
        assert_eq!(violations(&status), ["event_id", "etag", "outcome"]);
        // No token at all on an unaudited RPC.
        let status = app
            .client
            .get_signed_tree_head(tonic::Request::new(api::GetSignedTreeHeadRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
}
