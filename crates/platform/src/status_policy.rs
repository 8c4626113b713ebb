//! What every error a service sends looks like on the wire, whatever produced it.
//!
//! Two rules apply to every response, in a layer around every service:
//! - A request the server could not decode is the client's fault, not the server's: tonic reports
//!   malformed protobuf as INTERNAL and an over-long message as OUT_OF_RANGE, without details. They
//!   become INVALID_ARGUMENT (ErrorInfo reason `MALFORMED_REQUEST`) and RESOURCE_EXHAUSTED (reason
//!   `MESSAGE_TOO_LARGE`), in the domain of the package called.
//! - A status is small: its message and every string in its details are cut to a bound, so that a long
//!   input echoed into an error can never push the trailers past what clients accept (16 KiB in
//!   common clients, which then report RESOURCE_EXHAUSTED of their own).
//!
//! Services' own errors already follow both rules; this is the net under them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, PreconditionViolation, StatusExt};

/// The longest status message sent, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// The longest string inside a status's details, in bytes.
pub const MAX_DETAIL_BYTES: usize = 256;
/// The most bytes of field or precondition violations one status carries; violations past it are
/// dropped (the first ones say what to fix first).
pub const MAX_VIOLATION_BYTES: usize = 4096;
/// The size of encoded details above which a status is cut down.
const DETAILS_BUDGET: usize = 6 * 1024;

/// `text` cut to at most `max` bytes at a character boundary, marked with an ellipsis when cut.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The status a client should see for `status`, if it is not already that: decoding failures
/// reclassified as the client's, and everything bounded. `path` is the request's
/// `/package.Service/Method`.
pub fn client_facing(status: &Status, path: &str) -> Option<Status> {
    let domain = package_of(path);
    let message = status.message();
    if status.code() == Code::Internal && message.starts_with("failed to decode Protobuf message") {
        let mut details = ErrorDetails::new();
        details.set_bad_request(vec![FieldViolation::new(
            "",
            "the request is not a valid protobuf encoding of the method's request message",
        )]);
        details.set_error_info("MALFORMED_REQUEST", domain, []);
        return Some(Status::with_error_details(
            Code::InvalidArgument,
            "the request could not be decoded: it is not a valid protobuf message for this method",
            details,
        ));
    }
    if status.code() == Code::OutOfRange
        && message.starts_with("Error, decoded message length too large")
    {
        let mut details = ErrorDetails::new();
        details.set_error_info("MESSAGE_TOO_LARGE", domain, []);
        return Some(Status::with_error_details(
            Code::ResourceExhausted,
            bounded(
                &format!("the request message is larger than this server accepts ({message})"),
                MAX_MESSAGE_BYTES,
            ),
            details,
        ));
    }
    let oversized = message.len() > MAX_MESSAGE_BYTES || status.details().len() > DETAILS_BUDGET;
    oversized.then(|| bounded_status(status))
}

/// `status` with its message and details cut to the bounds.
fn bounded_status(status: &Status) -> Status {
    let old = status.get_error_details();
    let cut = |s: &str| bounded(s, MAX_DETAIL_BYTES);
    let mut details = ErrorDetails::new();
    if let Some(info) = old.error_info() {
        let metadata: std::collections::HashMap<String, String> = info
            .metadata
            .iter()
            .map(|(k, v)| (cut(k), cut(v)))
            .collect();
        details.set_error_info(cut(&info.reason), cut(&info.domain), metadata);
    }
    if let Some(bad) = old.bad_request() {
        let mut budget = Budget::default();
        details.set_bad_request(
            bad.field_violations
                .iter()
                .map(|v| FieldViolation::new(cut(&v.field), cut(&v.description)))
                .take_while(|v| budget.take(v.field.len() + v.description.len()))
                .collect::<Vec<_>>(),
        );
    }
    if let Some(info) = old.resource_info() {
        details.set_resource_info(
            cut(&info.resource_type),
            cut(&info.resource_name),
            cut(&info.owner),
            cut(&info.description),
        );
    }
    if let Some(failure) = old.precondition_failure() {
        let mut budget = Budget::default();
        details.set_precondition_failure(
            failure
                .violations
                .iter()
                .map(|v| {
                    PreconditionViolation::new(cut(&v.r#type), cut(&v.subject), cut(&v.description))
                })
                .take_while(|v| budget.take(v.r#type.len() + v.subject.len() + v.description.len()))
                .collect::<Vec<_>>(),
        );
    }
    if let Some(retry) = old.retry_info() {
        details.set_retry_info(retry.retry_delay);
    }
    if let Some(localized) = old.localized_message() {
        details.set_localized_message(
            cut(&localized.locale),
            bounded(&localized.message, MAX_MESSAGE_BYTES),
        );
    }
    Status::with_error_details(
        status.code(),
        bounded(status.message(), MAX_MESSAGE_BYTES),
        details,
    )
}

/// Bytes of violations still to spend.
#[derive(Default)]
struct Budget(usize);

impl Budget {
    /// Whether a violation of `bytes` (plus its framing) still fits; the first always does.
    fn take(&mut self, bytes: usize) -> bool {
        let fits = self.0 == 0 || self.0 + bytes + 8 <= MAX_VIOLATION_BYTES;
        self.0 += bytes + 8;
        fits
    }
}

/// `carerecord.identity.v1` of `/carerecord.identity.v1.PatientIdentityService/GetPatient`.
fn package_of(path: &str) -> String {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match service.rsplit_once('.') {
        Some((package, _)) => package.to_owned(),
        None => crate::errors::DOMAIN.to_owned(),
    }
}

/// Rewrites the status in `headers` (trailers, or a trailers-only response's headers) if needed.
fn rewrite(headers: &mut http::HeaderMap, path: &str) {
    if !headers.contains_key("grpc-status") {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    if let Some(replacement) = client_facing(&status, path) {
        headers.remove("grpc-message");
        headers.remove("grpc-status-details-bin");
        if let Err(e) = replacement.add_header(headers) {
            tracing::warn!(error = %e, "cannot write a bounded status");
        }
    }
}

/// Applies [`client_facing`] to every response of the services it wraps.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusPolicyLayer;

impl<S> tower::Layer<S> for StatusPolicyLayer {
    type Service = StatusPolicy<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StatusPolicy { inner }
    }
}

#[derive(Debug, Clone)]
pub struct StatusPolicy<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for StatusPolicy<S>
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
        let path = request.uri().path().to_owned();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            let (mut parts, body) = response.into_parts();
            if parts.headers.contains_key("grpc-status") {
                // Trailers-only: most errors, including every decoding failure.
                rewrite(&mut parts.headers, &path);
                return Ok(http::Response::from_parts(parts, body));
            }
            Ok(http::Response::from_parts(
                parts,
                Body::new(PolicedBody { inner: body, path }),
            ))
        })
    }
}

/// A response body whose trailers get the same treatment (errors at the end of a stream).
struct PolicedBody {
    inner: Body,
    path: String,
}

impl HttpBody for PolicedBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                let mut trailers = frame.into_trailers().unwrap_or_default();
                rewrite(&mut trailers, &self.path);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            other => other,
        }
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

    const PATH: &str = "/carerecord.identity.v1.PatientIdentityService/ResolveIdentifier";

    #[test]
    fn undecodable_requests_are_the_clients_fault() {
        let status = Status::internal("failed to decode Protobuf message: invalid varint");
        let answer = client_facing(&status, PATH).unwrap();
        assert_eq!(answer.code(), Code::InvalidArgument);
        let info = answer.get_error_details().error_info().cloned().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("MALFORMED_REQUEST", "carerecord.identity.v1")
        );

        let status = Status::out_of_range(
            "Error, decoded message length too large: found 17000000 bytes, the limit is: 16777216 bytes",
        );
        let answer = client_facing(&status, PATH).unwrap();
        assert_eq!(answer.code(), Code::ResourceExhausted);
        assert_eq!(
            answer.get_error_details().error_info().unwrap().reason,
            "MESSAGE_TOO_LARGE"
        );

        // A server bug stays INTERNAL, and the service's own OUT_OF_RANGE is left alone.
        assert!(client_facing(&Status::internal("bug"), PATH).is_none());
        assert!(client_facing(&Status::out_of_range("tree size"), PATH).is_none());
    }

    #[test]
    fn long_values_are_cut_in_message_and_details() {
        let long = "9".repeat(10_000);
        let mut details = ErrorDetails::new();
        details.set_resource_info("Patient", long.clone(), "", long.clone());
        details.set_error_info(
            "NOT_FOUND",
            "carerecord",
            [("value".to_owned(), long.clone())],
        );
        details.set_bad_request(
            (0..1000)
                .map(|i| FieldViolation::new(format!("ids[{i}]"), long.clone()))
                .collect::<Vec<_>>(),
        );
        let status = Status::with_error_details(Code::NotFound, long.clone(), details);
        let answer = client_facing(&status, PATH).unwrap();
        assert_eq!(answer.code(), Code::NotFound);
        assert!(answer.message().len() <= MAX_MESSAGE_BYTES);
        assert!(
            answer.details().len() <= DETAILS_BUDGET,
            "{}",
            answer.details().len()
        );
        let details = answer.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "NOT_FOUND");
        let listed = details.bad_request().unwrap().field_violations.len();
        assert!((1..1000).contains(&listed), "{listed}");
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            "ids[0]"
        );
        assert!(details.resource_info().unwrap().resource_name.len() <= MAX_DETAIL_BYTES);

        let small = Status::with_error_details(Code::NotFound, "no patient", ErrorDetails::new());
        assert!(client_facing(&small, PATH).is_none());
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = "é".repeat(600);
        let cut = bounded(&text, 101);
        assert!(cut.len() <= 101 && cut.ends_with('…'));
        assert_eq!(bounded("short", 10), "short");
    }

    #[test]
    fn trailers_are_rewritten_in_place() {
        let mut headers = http::HeaderMap::new();
        Status::internal("failed to decode Protobuf message: buffer underflow")
            .add_header(&mut headers)
            .unwrap();
        rewrite(&mut headers, PATH);
        let status = Status::from_header_map(&headers).unwrap();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}
