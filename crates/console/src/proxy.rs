//! gRPC-Web from the browser, passed through to data access as gRPC: tonic-web translates each
//! gRPC-Web call (HTTP/1.1 or 2) into a gRPC call, which goes to data access unchanged apart from
//! its headers (only the caller's bearer token, the content type, `te`, `grpc-*` and trace context
//! are passed on: never cookies). Only `carerecord.access.v1.DataAccessService` is routed here;
//! data access authenticates, authorises and audits every call as it does any integrator's.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::transport::Channel;

/// The path prefix of every data access RPC.
pub const SERVICE_PATH: &str = "/carerecord.access.v1.DataAccessService/";

/// Headers passed on to data access.
fn passed_on(name: &http::HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "authorization" | "content-type" | "te" | "traceparent" | "tracestate"
    ) || name.starts_with("grpc-")
}

/// Forwards gRPC calls to data access over `channel`.
#[derive(Clone)]
pub struct Forward {
    channel: Channel,
}

impl Forward {
    pub fn new(channel: Channel) -> Self {
        Forward { channel }
    }
}

/// A gRPC answer with no message: the status in the headers (a trailers-only response).
fn status_only(code: tonic::Code, message: &str) -> http::Response<Body> {
    tonic::Status::new(code, message).into_http()
}

impl tower::Service<http::Request<Body>> for Forward {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let mut channel = self.channel.clone();
        Box::pin(async move {
            if !request.uri().path().starts_with(SERVICE_PATH) {
                return Ok(status_only(
                    tonic::Code::Unimplemented,
                    "not a data access call",
                ));
            }
            let (parts, body) = request.into_parts();
            let mut forwarded = http::Request::new(body);
            *forwarded.method_mut() = parts.method;
            *forwarded.uri_mut() = parts.uri;
            *forwarded.version_mut() = http::Version::HTTP_2;
            for (name, value) in &parts.headers {
                if passed_on(name) {
                    forwarded.headers_mut().append(name, value.clone());
                }
            }
            let ready = futures::future::poll_fn(|cx| {
                tower::Service::<http::Request<Body>>::poll_ready(&mut channel, cx)
            })
            .await;
            let answer = match ready {
                Ok(()) => tower::Service::call(&mut channel, forwarded).await,
                Err(e) => Err(e),
            };
            Ok(answer.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "data access cannot be reached");
                status_only(tonic::Code::Unavailable, "data access cannot be reached")
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_call_headers_are_passed_on() {
        for name in [
            "authorization",
            "content-type",
            "te",
            "grpc-timeout",
            "traceparent",
        ] {
            assert!(passed_on(&http::HeaderName::from_static(name)), "{name}");
        }
        for name in ["cookie", "origin", "host", "connection", "x-forwarded-for"] {
            assert!(!passed_on(&http::HeaderName::from_static(name)), "{name}");
        }
    }
}
