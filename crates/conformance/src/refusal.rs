//! Refusals: how the contract says a call must fail, checked one call at a time or as tables.
//!
//! A [`Refusal`] names a status code and the error details that must come with it; [`refused`]
//! checks one call, and [`refuse_each!`] / [`refuse_all`] send every request of a table of
//! `(what, request, refusal)` rows, naming the row that was not refused as it says.

use std::fmt;
use std::future::Future;

use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::harness::{
    TestResult, describe, ensure, err, has_bad_request, has_precondition, has_reason,
    has_reason_in, has_resource, has_violation, has_violation_under,
};

/// The field a validation rule's violation must name: exactly that field, or it or a field
/// under it (where the contract does not say how deep the path goes).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    Is(&'static str),
    Under(&'static str),
}

impl Field {
    /// The field's path as the contract writes it.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Field::Is(path) | Field::Under(path) => path,
        }
    }

    /// INVALID_ARGUMENT naming this field.
    pub(crate) fn refusal(self) -> Refusal {
        match self {
            Field::Is(path) => Refusal::invalid(path),
            Field::Under(path) => Refusal::invalid_under(path),
        }
    }
}

/// One error detail a refusal must carry.
#[derive(Debug, Clone)]
enum Detail {
    Field(String),
    FieldUnder(String),
    /// A violation of any one of these fields.
    FieldAmong(Vec<String>),
    /// Violations of exactly these fields, each at least once, and of no other.
    FieldsExactly(Vec<String>),
    /// A google.rpc.BadRequest with at least one violation.
    BadRequest,
    /// A google.rpc.BadRequest, whatever it holds.
    AnyBadRequest,
    Reason(Option<String>, String),
    Resource(String, String),
    Precondition(String, Option<String>),
}

/// How the contract says a call must be refused: a status code and the error details that come
/// with it, checked in the order they were added.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    code: Code,
    details: Vec<Detail>,
}

impl Refusal {
    /// A refusal with `code` and no particular details.
    pub(crate) fn new(code: Code) -> Self {
        Refusal {
            code,
            details: Vec::new(),
        }
    }

    /// INVALID_ARGUMENT with a field violation of exactly `field`.
    pub(crate) fn invalid(field: &str) -> Self {
        Self::new(Code::InvalidArgument).field(field)
    }

    /// INVALID_ARGUMENT with a field violation of `prefix` or a field under it.
    pub(crate) fn invalid_under(prefix: &str) -> Self {
        Self::new(Code::InvalidArgument).under(prefix)
    }

    /// INVALID_ARGUMENT with field violations of exactly `fields` and no other.
    pub(crate) fn invalid_exactly(fields: &[&str]) -> Self {
        Self::new(Code::InvalidArgument).only(fields)
    }

    /// INVALID_ARGUMENT with a google.rpc.BadRequest of any field.
    pub(crate) fn invalid_request() -> Self {
        Self::new(Code::InvalidArgument).bad_request()
    }

    /// NOT_FOUND with a google.rpc.ResourceInfo naming the resource.
    pub(crate) fn not_found(resource_type: &str, name: &str) -> Self {
        Self::new(Code::NotFound).resource(resource_type, name)
    }

    /// Also a field violation of exactly `field`.
    pub(crate) fn field(mut self, field: &str) -> Self {
        self.details.push(Detail::Field(field.to_owned()));
        self
    }

    /// Also a field violation of `prefix` or a field under it.
    pub(crate) fn under(mut self, prefix: &str) -> Self {
        self.details.push(Detail::FieldUnder(prefix.to_owned()));
        self
    }

    /// Also a field violation of one of `fields`, where the contract does not say which (for
    /// example "exactly one of etag and expected_version").
    pub(crate) fn field_among(mut self, fields: &[&str]) -> Self {
        self.details.push(Detail::FieldAmong(
            fields.iter().map(|f| (*f).to_owned()).collect(),
        ));
        self
    }

    /// Also field violations of exactly `fields` (each at least once) and of no other field.
    pub(crate) fn only(mut self, fields: &[&str]) -> Self {
        let mut fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        fields.sort();
        fields.dedup();
        self.details.push(Detail::FieldsExactly(fields));
        self
    }

    /// Also a google.rpc.BadRequest with at least one violation.
    pub(crate) fn bad_request(mut self) -> Self {
        self.details.push(Detail::BadRequest);
        self
    }

    /// Also a google.rpc.BadRequest, even an empty one.
    pub(crate) fn any_bad_request(mut self) -> Self {
        self.details.push(Detail::AnyBadRequest);
        self
    }

    /// Also a google.rpc.ErrorInfo with `reason`, in any domain.
    pub(crate) fn reason(mut self, reason: &str) -> Self {
        self.details.push(Detail::Reason(None, reason.to_owned()));
        self
    }

    /// Also a google.rpc.ErrorInfo with `reason` in `domain`.
    pub(crate) fn reason_in(mut self, domain: &str, reason: &str) -> Self {
        self.details
            .push(Detail::Reason(Some(domain.to_owned()), reason.to_owned()));
        self
    }

    /// Also a google.rpc.ResourceInfo naming the resource.
    pub(crate) fn resource(mut self, resource_type: &str, name: &str) -> Self {
        self.details
            .push(Detail::Resource(resource_type.to_owned(), name.to_owned()));
        self
    }

    /// Also a google.rpc.PreconditionFailure violation of `kind` (on `subject`, if given).
    pub(crate) fn precondition(mut self, kind: &str, subject: Option<&str>) -> Self {
        self.details.push(Detail::Precondition(
            kind.to_owned(),
            subject.map(str::to_owned),
        ));
        self
    }

    /// The ErrorInfo reason this refusal requires, if it requires one.
    pub(crate) fn required_reason(&self) -> Option<&str> {
        self.details.iter().find_map(|detail| match detail {
            Detail::Reason(_, reason) => Some(reason.as_str()),
            _ => None,
        })
    }

    fn check(&self, status: &Status) -> TestResult {
        for detail in &self.details {
            match detail {
                Detail::Field(field) => has_violation(status, field).map(|_| ())?,
                Detail::FieldUnder(prefix) => has_violation_under(status, prefix)?,
                Detail::FieldAmong(fields) => ensure!(
                    status.get_details_bad_request().is_some_and(|br| br
                        .field_violations
                        .iter()
                        .any(|v| fields.contains(&v.field))),
                    "expected a field violation for one of {fields:?}, got {}",
                    describe(status)
                ),
                Detail::FieldsExactly(fields) => {
                    let mut named: Vec<String> = status
                        .get_details_bad_request()
                        .map(|br| br.field_violations.into_iter().map(|v| v.field).collect())
                        .unwrap_or_default();
                    named.sort();
                    named.dedup();
                    ensure!(
                        named == *fields,
                        "expected field violations of exactly {fields:?}, got {}",
                        describe(status)
                    );
                }
                Detail::BadRequest => has_bad_request(status)?,
                Detail::AnyBadRequest => ensure!(
                    status.get_details_bad_request().is_some(),
                    "expected google.rpc.BadRequest, got {}",
                    describe(status)
                ),
                Detail::Reason(None, reason) => has_reason(status, reason).map(|_| ())?,
                Detail::Reason(Some(domain), reason) => {
                    has_reason_in(status, domain, reason).map(|_| ())?
                }
                Detail::Resource(kind, name) => has_resource(status, kind, name)?,
                Detail::Precondition(kind, subject) => {
                    has_precondition(status, kind, subject.as_deref())?
                }
            }
        }
        Ok(())
    }
}

/// Requires a call to be refused as `expected`; returns the status for further checks.
pub(crate) fn refused<T>(
    result: Result<T, Status>,
    expected: &Refusal,
    call: &str,
) -> TestResult<Status> {
    let status = err(result, expected.code, call)?;
    expected.check(&status)?;
    Ok(status)
}

/// Sends every request of a table with `client.$method` and requires each to be refused as its
/// row says; failures name the call as `<Rpc>(<what>)`, the RPC named after the method. For calls
/// that need more than the request, see [`refuse_all`].
macro_rules! refuse_each {
    ($client:expr, $method:ident, $table:expr $(,)?) => {
        $crate::refusal::refuse_all(
            &$client,
            &$crate::refusal::rpc_name(stringify!($method)),
            |mut c, r| async move { c.$method(r).await },
            $table,
        )
    };
}
pub(crate) use refuse_each;

/// The RPC a generated client method calls: `list_record_versions` -> `ListRecordVersions`.
pub(crate) fn rpc_name(method: &str) -> String {
    method
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Sends every request of a table with `send` (on a clone of `client`) and requires each to be
/// refused as its row says; failures name the call as `<call>(<what>)`.
pub(crate) async fn refuse_all<C, W, R, T, F, Fut>(
    client: &C,
    call: &str,
    send: F,
    table: Vec<(W, R, Refusal)>,
) -> TestResult
where
    C: Clone,
    W: fmt::Display,
    F: Fn(C, R) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    for (what, request, expected) in table {
        let result = send(client.clone(), request).await;
        refused(result, &expected, &format!("{call}({what})"))?;
    }
    Ok(())
}

/// The rows a change listing (ListPatientChanges, ListDecisionChanges) must refuse, as
/// `(what, after_cursor, page_size, refusal)`; `head` is a cursor the service issued, `forged` one
/// it did not.
pub(crate) fn change_listing_refusals(
    head: &str,
    forged: &str,
) -> Vec<(String, String, i32, Refusal)> {
    let mut rows: Vec<_> = [forged, "not a cursor"]
        .into_iter()
        .map(|cursor| {
            (
                format!("after_cursor {cursor:?}"),
                cursor.to_owned(),
                0,
                Refusal::invalid("after_cursor"),
            )
        })
        .collect();
    rows.push((
        "page_size -1".into(),
        head.to_owned(),
        -1,
        Refusal::invalid("page_size"),
    ));
    rows
}

/// A copy of `base` changed by `change`: a table row differing from a valid request in one way.
pub(crate) fn altered<R: Clone>(base: &R, change: impl FnOnce(&mut R)) -> R {
    let mut request = base.clone();
    change(&mut request);
    request
}

/// One row per update mask, each request refused as `refusal` says; failures name the mask.
pub(crate) fn masks_refused<R>(
    masks: &[&[&str]],
    request: impl Fn(&[&str]) -> R,
    refusal: impl Fn() -> Refusal,
) -> Vec<(String, R, Refusal)> {
    masks
        .iter()
        .map(|paths| (format!("update_mask {paths:?}"), request(paths), refusal()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tonic_types::{ErrorDetails, StatusExt};

    use super::*;
    use crate::harness::Fail;

    /// INVALID_ARGUMENT naming `patient.names[0]`, with ErrorInfo INVALID_REQUEST of `domain`.
    fn invalid_names(domain: &str) -> Result<(), Status> {
        let mut details = ErrorDetails::with_error_info("INVALID_REQUEST", domain, HashMap::new());
        details.add_bad_request_violation("patient.names[0]", "a name needs a family name");
        Err(Status::with_error_details(
            Code::InvalidArgument,
            "invalid",
            details,
        ))
    }

    fn failure(result: TestResult<Status>) -> String {
        match result {
            Err(Fail::Failed(message)) => message,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_refusal_checks_the_code_then_each_detail() {
        let expected = Refusal::invalid_under("patient.names").reason_in("kit", "INVALID_REQUEST");
        assert!(refused(invalid_names("kit"), &expected, "Call").is_ok());
        let exact = Refusal::invalid("patient.names[0]")
            .bad_request()
            .any_bad_request();
        assert!(refused(invalid_names("kit"), &exact, "Call").is_ok());

        let message = failure(refused(Ok::<(), Status>(()), &expected, "Call(ok)"));
        assert_eq!(message, "Call(ok): expected InvalidArgument, got OK");
        let not_found = Refusal::not_found("Patient", "p1");
        let message = failure(refused(invalid_names("kit"), &not_found, "Call(code)"));
        assert!(message.starts_with("Call(code): expected NotFound, got InvalidArgument"));
        let message = failure(refused(invalid_names("other"), &expected, "Call"));
        assert!(message.starts_with("ErrorInfo domain must be kit"));
        let message = failure(refused(
            invalid_names("kit"),
            &Refusal::invalid("patient.names"),
            "Call",
        ));
        assert!(message.starts_with("expected a field violation for `patient.names`"));
        let among = Refusal::invalid_request().field_among(&["patient", "patient.names[0]"]);
        assert!(refused(invalid_names("kit"), &among, "Call").is_ok());
        let message = failure(refused(
            invalid_names("kit"),
            &Refusal::invalid_request().field_among(&["etag", "expected_version"]),
            "Call",
        ));
        assert!(message.starts_with("expected a field violation for one of"));
        assert!(
            refused(
                invalid_names("kit"),
                &Refusal::invalid_exactly(&["patient.names[0]"]),
                "Call"
            )
            .is_ok()
        );
        let message = failure(refused(
            invalid_names("kit"),
            &Refusal::invalid_exactly(&["patient.names[0]", "patient.names[1]"]),
            "Call",
        ));
        assert!(message.starts_with("expected field violations of exactly"));
        let precondition = Refusal::new(Code::InvalidArgument).precondition("STATUS", None);
        let message = failure(refused(invalid_names("kit"), &precondition, "Call"));
        assert!(message.starts_with("expected google.rpc.PreconditionFailure type STATUS"));
    }

    #[test]
    fn rpcs_are_named_after_client_methods() {
        assert_eq!(rpc_name("list_record_versions"), "ListRecordVersions");
        assert_eq!(rpc_name("decide"), "Decide");
    }

    #[tokio::test]
    async fn a_table_names_the_row_that_was_not_refused() {
        let table = vec![
            ("bad", 1, Refusal::invalid("patient.names[0]")),
            ("good", 2, Refusal::invalid("patient.names[0]")),
        ];
        let send = |_: (), row: i32| async move {
            if row == 1 {
                invalid_names("kit")
            } else {
                Ok(())
            }
        };
        let result = refuse_all(&(), "Call", send, table).await;
        assert_eq!(
            result,
            Err(Fail::Failed(
                "Call(good): expected InvalidArgument, got OK".into()
            ))
        );
    }
}
