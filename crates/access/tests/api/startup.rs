#[tokio::test]
async fn binary_migrates_serves_health_and_reflection_and_stops_on_sigterm() {
    carerecord_platform::testing::assert_binary_lifecycle(
        env!("CARGO_BIN_EXE_carerecord-access"),
        "carerecord.access.v1.DataAccessService",
        &[("CARERECORD_DEV_TOKENS", "true")],
    )
    .await;
}
