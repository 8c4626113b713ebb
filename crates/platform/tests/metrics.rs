//! RED metrics are recorded per RPC with its status code, including trailers-only errors.

use carerecord_platform::config::ServerConfig;
use carerecord_platform::env::Env;
use carerecord_platform::server::GrpcServer;
use carerecord_platform::testing::serve;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test]
async fn each_call_is_counted_by_method_and_status() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let config = ServerConfig::from_env(&Env::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let server = GrpcServer::bind(&config)
        .await
        .unwrap()
        .with_meter(&provider.meter("test"));
    let app = serve(server).await;

    let mut health = HealthClient::new(app.channel.clone());
    for _ in 0..3 {
        health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
    }
    let missing = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    provider.force_flush().unwrap();
    let mut counts: Vec<(String, i64, u64)> = Vec::new();
    for resource_metrics in exporter.get_finished_metrics().unwrap() {
        for scope in resource_metrics.scope_metrics() {
            for metric in scope
                .metrics()
                .filter(|m| m.name() == "rpc.server.call.duration")
            {
                let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
                    panic!("duration is an f64 histogram")
                };
                for point in histogram.data_points() {
                    let attribute = |key: &str| {
                        point
                            .attributes()
                            .find(|kv| kv.key.as_str() == key)
                            .map(|kv| kv.value.clone())
                    };
                    let method = attribute("rpc.method")
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    let code = match attribute("rpc.grpc.status_code") {
                        Some(opentelemetry::Value::I64(code)) => code,
                        other => panic!("status code attribute: {other:?}"),
                    };
                    counts.push((method, code, point.count()));
                }
            }
        }
    }
    assert!(counts.contains(&("Check".to_owned(), 0, 3)), "{counts:?}");
    assert!(
        counts.contains(&("Check".to_owned(), tonic::Code::NotFound as i64, 1)),
        "{counts:?}"
    );
}
