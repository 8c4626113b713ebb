use std::time::Duration;

use carerecord_platform::testing::{
    ServiceProcess, TestDatabase, assert_serves_health_and_reflection,
};

#[tokio::test]
async fn binary_migrates_serves_health_and_reflection_and_stops_on_sigterm() {
    for db in TestDatabase::each_backend().await {
        let process = ServiceProcess::start(
            env!("CARGO_BIN_EXE_carerecord-access"),
            &[("DATABASE_URL", &db.url), ("CARERECORD_DEV_TOKENS", "true")],
        )
        .await;
        assert_serves_health_and_reflection(
            &process.endpoint(),
            "carerecord.access.v1.DataAccessService",
        )
        .await;
        assert!(
            process.terminate(Duration::from_secs(30)).await,
            "access did not exit cleanly on SIGTERM ({:?})",
            db.backend
        );
    }
}
