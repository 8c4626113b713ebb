//! What the benches share: PostgreSQL or nothing, two runtimes sized for 2 cores, the service on a
//! fresh database, a server and its clients.

use std::net::SocketAddr;
use std::sync::Arc;

use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_contracts::records::v1::record_hosting_service_server::{
    RecordHostingService, RecordHostingServiceServer,
};
use carerecord_platform::db::{Database, DatabaseConfig};
use carerecord_platform::env::Env;
use carerecord_platform::page_token::PageTokens;
use carerecord_platform::testing::TestDatabase;
use carerecord_records::{MIGRATIONS, RecordsConfig, RecordsService};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Server};

pub type Client = RecordHostingServiceClient<Channel>;

/// Connections the load is spread over.
pub const CONNECTIONS: usize = 4;
/// HTTP/2 stream window of server and clients: 4 MiB.
const WINDOW: u32 = 4 << 20;
/// The largest message either side decodes: 16 MiB.
const MAX_MESSAGE: usize = 16 << 20;

/// Whether TEST_DATABASE_URL names a database; the bench `name` says it is skipped when not.
pub fn have_postgres(name: &str) -> bool {
    match std::env::var("TEST_DATABASE_URL") {
        Err(_) => {
            println!("{name} bench: TEST_DATABASE_URL is not set; skipped (make bench sets it)")
        }
        Ok(url) if url.trim().is_empty() => {
            println!("{name} bench: TEST_DATABASE_URL is empty; skipped")
        }
        Ok(_) => return true,
    }
    false
}

/// The server's runtime (one worker) and the load generator's (current thread): two default
/// multi-thread runtimes would fight over the 2 cores shared with PostgreSQL.
pub fn runtimes() -> (Runtime, Runtime) {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let generator = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (server, generator)
}

/// The records service on a fresh PostgreSQL database, with its default configuration.
pub async fn service(shutdown: &CancellationToken) -> (Database, RecordsService) {
    let test_db = TestDatabase::postgres().await.expect("TEST_DATABASE_URL");
    let db = Database::connect(&DatabaseConfig::new(&test_db.url).unwrap(), &MIGRATIONS)
        .await
        .unwrap();
    let config = Arc::new(RecordsConfig::from_env(&Env::default()).unwrap());
    let service = RecordsService::new(
        db.clone(),
        config,
        PageTokens::new(b"records-bench-secret"),
        shutdown.clone(),
    );
    (db, service)
}

/// Serves `service` on a free local port until `shutdown`.
pub async fn serve<S: RecordHostingService>(service: S, shutdown: CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            // Windows of 64 KiB (the HTTP/2 default) cap a single import or export stream at
            // one window per round trip; streams of megabytes need larger ones.
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(2 * WINDOW)
            .add_service(
                RecordHostingServiceServer::new(service).max_decoding_message_size(MAX_MESSAGE),
            )
            // TCP_NODELAY on accepted connections: without it a response written after an await
            // (any handler that queries the database) waits for the client's delayed ACK, about
            // 40 ms (the platform's GrpcServer sets both, as here).
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown.cancelled_owned(),
            ),
    );
    addr
}

/// A client on each of [`CONNECTIONS`] connections to `addr`.
pub async fn clients(addr: SocketAddr) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .tcp_nodelay(true)
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(2 * WINDOW)
            .connect()
            .await
            .unwrap();
        clients
            .push(RecordHostingServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE));
    }
    clients
}
