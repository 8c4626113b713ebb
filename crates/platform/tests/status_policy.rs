//! Statuses on the wire: undecodable and oversized requests are the client's fault, with details.

use carerecord_platform::config::ServerConfig;
use carerecord_platform::env::Env;
use carerecord_platform::server::GrpcServer;
use carerecord_platform::testing::{call_raw, error_info, serve};

const CHECK: &str = "/grpc.health.v1.Health/Check";

#[tokio::test]
async fn undecodable_and_oversized_requests_answer_the_clients_fault() {
    let env = Env::from_pairs([("CARERECORD_MAX_MESSAGE_BYTES", "64KiB")]);
    let config = ServerConfig::from_env(&env, "127.0.0.1:0".parse().unwrap()).unwrap();
    let app = serve(GrpcServer::bind(&config).await.unwrap()).await;
    let channel = app.channel.clone();

    // A field header followed by a varint that never ends.
    let status = call_raw(
        channel.clone(),
        CHECK,
        vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0xff],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let info = error_info(&status);
    assert_eq!(info.reason, "MALFORMED_REQUEST");
    assert_eq!(info.domain, "grpc.health.v1");

    // Health's own decoding limit is tonic's default of 4 MiB.
    let status = call_raw(channel.clone(), CHECK, vec![0; 5 << 20])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_info(&status).reason, "MESSAGE_TOO_LARGE");

    // A well-formed request is untouched: an empty Check is the server's overall health.
    let served = call_raw(channel, CHECK, Vec::new()).await.unwrap();
    assert_eq!(served, [0x08, 0x01], "SERVING");
}
