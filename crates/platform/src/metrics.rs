//! RED metrics (rate, errors, duration) for every RPC a service serves.
//!
//! One histogram, `rpc.server.call.duration` (seconds), with the OpenTelemetry RPC attributes
//! `rpc.system`, `rpc.service`, `rpc.method` and `rpc.grpc.status_code`: its count per status is the
//! rate and the errors, its buckets the duration. The status of a gRPC call usually travels in the
//! trailers, so the response body is wrapped and the call is recorded when the trailers pass (or
//! as CANCELLED if the client goes away first).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body as HttpBody, Frame, SizeHint};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use tonic::body::Body;

/// Wraps a server's services so every call is measured.
#[derive(Clone)]
pub struct RedMetricsLayer {
    duration: Histogram<f64>,
}

impl RedMetricsLayer {
    pub fn new(meter: &Meter) -> Self {
        let duration = meter
            .f64_histogram("rpc.server.call.duration")
            .with_unit("s")
            .with_description("Duration of gRPC calls served, by service, method and status code")
            .with_boundaries(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .build();
        RedMetricsLayer { duration }
    }
}

impl<S> tower::Layer<S> for RedMetricsLayer {
    type Service = RedMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RedMetrics {
            inner,
            duration: self.duration.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RedMetrics<S> {
    inner: S,
    duration: Histogram<f64>,
}

/// Records one call when dropped, unless already recorded.
struct CallRecorder {
    duration: Histogram<f64>,
    attributes: Vec<KeyValue>,
    start: Instant,
    recorded: bool,
}

impl CallRecorder {
    fn record(&mut self, status_code: i64) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let mut attributes = std::mem::take(&mut self.attributes);
        attributes.push(KeyValue::new("rpc.grpc.status_code", status_code));
        self.duration
            .record(self.start.elapsed().as_secs_f64(), &attributes);
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        // The response ended without trailers: the client cancelled or the connection broke.
        self.record(tonic::Code::Cancelled as i64);
    }
}

fn status_code(headers: &http::HeaderMap) -> Option<i64> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// `/carerecord.identity.v1.PatientIdentityService/GetPatient` → (service, method).
fn rpc_names(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_owned();
    let method = parts.next().unwrap_or_default().to_owned();
    (service, method)
}

impl<S, B> tower::Service<http::Request<B>> for RedMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (service, method) = rpc_names(request.uri().path());
        let mut recorder = CallRecorder {
            duration: self.duration.clone(),
            attributes: vec![
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service),
                KeyValue::new("rpc.method", method),
            ],
            start: Instant::now(),
            recorded: false,
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            // A trailers-only response (most errors) carries the status in its headers.
            if let Some(code) = status_code(response.headers()) {
                recorder.record(code);
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            Ok(http::Response::from_parts(
                parts,
                Body::new(MeteredBody {
                    inner: body,
                    recorder,
                }),
            ))
        })
    }
}

struct MeteredBody {
    inner: Body,
    recorder: CallRecorder,
}

impl HttpBody for MeteredBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_code) {
                    self.recorder.record(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.recorder.record(tonic::Code::Internal as i64),
            Poll::Ready(None) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_names_split_the_path() {
        assert_eq!(
            rpc_names("/carerecord.identity.v1.PatientIdentityService/GetPatient"),
            (
                "carerecord.identity.v1.PatientIdentityService".to_owned(),
                "GetPatient".to_owned()
            )
        );
        assert_eq!(rpc_names("/"), (String::new(), String::new()));
    }
}
