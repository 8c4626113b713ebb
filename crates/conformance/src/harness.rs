//! The test harness: test cases, the context they run in, and the assertions they use.
//!
//! A test is an async function from a [`Ctx`] to `Result<(), Fail>`. Assertions return
//! `Fail::Failed` with a message saying what the contract promised and what the server did, so a
//! report reader can act on it without reading the kit's code.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Why a test did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// The server broke a promise of the contract.
    Failed(String),
    /// The test could not run here (for example a deployment setting it needs was not given).
    Skipped(String),
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Failed(m) => write!(f, "failed: {m}"),
            Fail::Skipped(m) => write!(f, "skipped: {m}"),
        }
    }
}

/// The result type of every test and assertion.
pub type TestResult<T = ()> = Result<T, Fail>;

/// Fails the current test with a formatted message.
macro_rules! fail {
    ($($arg:tt)*) => { return Err($crate::harness::Fail::Failed(format!($($arg)*))) };
}
pub(crate) use fail;

/// Fails the current test unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        {
            let holds: bool = $cond;
            if !holds {
                $crate::harness::fail!($($arg)*);
            }
        }
    };
}
pub(crate) use ensure;

/// Fails the current test unless the two values are equal, naming what was compared.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($arg:tt)*) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            $crate::harness::fail!("{}: expected {:?}, got {:?}", format!($($arg)*), r, l);
        }
    }};
}
pub(crate) use ensure_eq;

type BoxFuture = Pin<Box<dyn Future<Output = TestResult> + Send>>;

/// One test of the catalogue.
#[derive(Clone)]
pub struct Case {
    /// Stable identifier, for example `REC-CREATE-001`; never reused for another meaning.
    pub id: String,
    /// One line saying what the contract promises and this test checks.
    pub title: String,
    pub(crate) run: Arc<dyn Fn(Ctx) -> BoxFuture + Send + Sync>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .field("title", &self.title)
            .finish()
    }
}

impl Case {
    /// A case running `f`.
    pub(crate) fn new<F, Fut>(id: impl Into<String>, title: impl Into<String>, f: F) -> Self
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TestResult> + Send + 'static,
    {
        Case {
            id: id.into(),
            title: title.into(),
            run: Arc::new(move |ctx| Box::pin(f(ctx))),
        }
    }
}

/// Adds `authorization: Bearer <token>` to every call when a token was given.
#[derive(Clone)]
pub(crate) struct Auth(pub Option<MetadataValue<Ascii>>);

impl Interceptor for Auth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// What tests wrote to the system under test and could not remove (contracts have no delete).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// Kind of thing (for example `record`) -> identifiers created.
    pub created: BTreeMap<String, Vec<String>>,
    /// Patient identifiers the run invented; everything it wrote belongs to one of them.
    pub patients: Vec<String>,
}

/// Everything a test needs: a channel to the system under test, credentials and the ledger of
/// what it leaves behind.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) channel: Channel,
    pub(crate) auth: Auth,
    pub(crate) options: Arc<crate::Options>,
    leftovers: Arc<Mutex<Leftovers>>,
}

impl Ctx {
    pub(crate) fn new(channel: Channel, auth: Auth, options: Arc<crate::Options>) -> Self {
        Ctx {
            channel,
            auth,
            options,
            leftovers: Arc::default(),
        }
    }

    /// A fresh random patient id (lower-case UUID v4), recorded as left behind.
    pub(crate) fn new_patient(&self) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.lock().patients.push(id.clone());
        id
    }

    /// Records that the run created `id` of `kind` on the system under test.
    pub(crate) fn created(&self, kind: &str, id: &str) {
        let mut leftovers = self.lock();
        let ids = leftovers.created.entry(kind.to_owned()).or_default();
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_owned());
        }
    }

    /// A context for another module's endpoint of the same deployment (to seed test data),
    /// without a token: modules behind data access authenticate their callers otherwise.
    pub(crate) async fn for_endpoint(&self, endpoint: &str) -> TestResult<Ctx> {
        match crate::connect(endpoint, self.options.ca_certificate_pem.as_deref()).await {
            Ok(channel) => Ok(Ctx::new(channel, Auth(None), self.options.clone())),
            Err(e) => fail!("{e}"),
        }
    }

    /// Adds what a context for another endpoint left behind to this run's ledger.
    pub(crate) fn absorb(&self, other: &Ctx) {
        let theirs = other.leftovers();
        let mut ours = self.lock();
        for p in theirs.patients {
            if !ours.patients.contains(&p) {
                ours.patients.push(p);
            }
        }
        for (kind, ids) in theirs.created {
            let entry = ours.created.entry(kind).or_default();
            for id in ids {
                if !entry.contains(&id) {
                    entry.push(id);
                }
            }
        }
    }

    pub(crate) fn leftovers(&self) -> Leftovers {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Leftovers> {
        // A test that panicked while holding the lock cannot have left it inconsistent: every
        // update is a single push.
        self.leftovers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Unwraps a successful call, or fails naming the call and the status.
pub(crate) fn ok<T>(result: Result<tonic::Response<T>, Status>, call: &str) -> TestResult<T> {
    match result {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => fail!("{call}: expected OK, got {}", describe(&status)),
    }
}

/// Requires success of a call to an RPC the contract marks optional: UNIMPLEMENTED skips the case.
pub(crate) fn optional<T>(result: Result<tonic::Response<T>, Status>, call: &str) -> TestResult<T> {
    match result {
        Err(status) if status.code() == Code::Unimplemented => Err(Fail::Skipped(format!(
            "{call}: not implemented (optional in the contract)"
        ))),
        other => ok(other, call),
    }
}

/// Requires a call to fail with `code`; returns the status for further checks.
pub(crate) fn err<T>(result: Result<T, Status>, code: Code, call: &str) -> TestResult<Status> {
    match result {
        Ok(_) => fail!("{call}: expected {code:?}, got OK"),
        Err(status) if status.code() == code => Ok(status),
        Err(status) => fail!("{call}: expected {code:?}, got {}", describe(&status)),
    }
}

/// A status in one line: code, message and the details it carries.
pub(crate) fn describe(status: &Status) -> String {
    let details = status.get_error_details();
    let mut out = format!("{:?} {:?}", status.code(), status.message());
    if let Some(br) = details.bad_request() {
        let fields: Vec<_> = br
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        out.push_str(&format!(" BadRequest{fields:?}"));
    }
    if let Some(info) = details.error_info() {
        out.push_str(&format!(" ErrorInfo({}/{})", info.domain, info.reason));
    }
    if let Some(info) = details.resource_info() {
        out.push_str(&format!(
            " ResourceInfo({} {})",
            info.resource_type, info.resource_name
        ));
    }
    if let Some(pf) = details.precondition_failure() {
        let v: Vec<_> = pf
            .violations
            .iter()
            .map(|v| format!("{}:{}", v.r#type, v.subject))
            .collect();
        out.push_str(&format!(" PreconditionFailure{v:?}"));
    }
    out
}

fn details(status: &Status) -> ErrorDetails {
    status.get_error_details()
}

/// Requires a google.rpc.BadRequest with a violation of exactly `field`.
pub(crate) fn has_violation(status: &Status, field: &str) -> TestResult<String> {
    let Some(br) = details(status).bad_request().cloned() else {
        fail!(
            "expected google.rpc.BadRequest naming `{field}`, got {}",
            describe(status)
        );
    };
    match br.field_violations.iter().find(|v| v.field == field) {
        Some(v) => Ok(v.description.clone()),
        None => fail!(
            "expected a field violation for `{field}`, got {}",
            describe(status)
        ),
    }
}

/// Requires a google.rpc.BadRequest with a violation whose field is `prefix` or starts with
/// `prefix` followed by `.` or `[` (for limits on repeated fields, where the contract does not
/// say whether the path names the list or the element).
pub(crate) fn has_violation_under(status: &Status, prefix: &str) -> TestResult {
    let Some(br) = details(status).bad_request().cloned() else {
        fail!(
            "expected google.rpc.BadRequest naming `{prefix}`, got {}",
            describe(status)
        );
    };
    let matches = |f: &str| {
        f == prefix
            || f.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    ensure!(
        br.field_violations.iter().any(|v| matches(&v.field)),
        "expected a field violation under `{prefix}`, got {}",
        describe(status)
    );
    Ok(())
}

/// Requires a google.rpc.BadRequest with at least one violation, where the contract does not
/// name the field.
pub(crate) fn has_bad_request(status: &Status) -> TestResult {
    ensure!(
        details(status)
            .bad_request()
            .is_some_and(|br| !br.field_violations.is_empty()),
        "expected google.rpc.BadRequest, got {}",
        describe(status)
    );
    Ok(())
}

/// Requires a google.rpc.ErrorInfo with `reason`.
pub(crate) fn has_reason(status: &Status, reason: &str) -> TestResult<tonic_types::ErrorInfo> {
    match details(status).error_info() {
        Some(info) if info.reason == reason => Ok(info.clone()),
        _ => fail!(
            "expected google.rpc.ErrorInfo reason {reason}, got {}",
            describe(status)
        ),
    }
}

/// Requires a google.rpc.ErrorInfo with `reason` in `domain` (the module's, where its contract
/// names one).
pub(crate) fn has_reason_in(
    status: &Status,
    domain: &str,
    reason: &str,
) -> TestResult<tonic_types::ErrorInfo> {
    let info = has_reason(status, reason)?;
    if info.domain != domain {
        fail!(
            "ErrorInfo domain must be {domain}, got {:?} ({})",
            info.domain,
            describe(status)
        );
    }
    Ok(info)
}

/// Requires a google.rpc.ResourceInfo naming the resource.
pub(crate) fn has_resource(status: &Status, resource_type: &str, name: &str) -> TestResult {
    match details(status).resource_info() {
        Some(info) if info.resource_type == resource_type && info.resource_name == name => Ok(()),
        _ => fail!(
            "expected google.rpc.ResourceInfo({resource_type} {name}), got {}",
            describe(status)
        ),
    }
}

/// Requires a google.rpc.PreconditionFailure with a violation of `kind` (and `subject`, if given).
pub(crate) fn has_precondition(status: &Status, kind: &str, subject: Option<&str>) -> TestResult {
    let found = details(status).precondition_failure().is_some_and(|pf| {
        pf.violations
            .iter()
            .any(|v| v.r#type == kind && subject.is_none_or(|s| v.subject == s))
    });
    ensure!(
        found,
        "expected google.rpc.PreconditionFailure type {kind}{}, got {}",
        subject.map(|s| format!(" subject {s}")).unwrap_or_default(),
        describe(status)
    );
    Ok(())
}

/// Requires `id`, the `field` of something just created, to be written as the contracts write new
/// ids: a hyphenated UUID in lower case.
pub(crate) fn ensure_new_id(field: &str, id: &str) -> TestResult {
    ensure!(
        uuid::Uuid::parse_str(id).is_ok() && id.len() == 36 && id == id.to_lowercase(),
        "{field} must be a lower-case hyphenated UUID, got {id:?}"
    );
    Ok(())
}

/// Requires a response field the contract says is always set; `missing` says which was not.
pub(crate) fn present<T>(value: Option<T>, missing: &str) -> TestResult<T> {
    match value {
        Some(value) => Ok(value),
        None => fail!("{missing}"),
    }
}

/// Every item of a paged listing, and the first next_page_token it gave (empty when the first
/// page held everything). `fetch` gets a page (its items and its next_page_token) from the
/// previous page's token, starting with none. A page may hold at most `page_size` items where the
/// request set one; a listing still giving a next_page_token after `pages` pages never ends.
pub(crate) async fn page_through<T, F, Fut>(
    call: &str,
    page_size: i32,
    pages: usize,
    mut fetch: F,
) -> TestResult<(Vec<T>, String)>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = TestResult<(Vec<T>, String)>>,
{
    let mut all = Vec::new();
    let mut first_token = String::new();
    let mut token = String::new();
    for _ in 0..pages {
        let (items, next) = fetch(token).await?;
        ensure!(
            page_size <= 0 || items.len() <= page_size as usize,
            "{call}: a page of size {page_size} held {}",
            items.len()
        );
        all.extend(items);
        if next.is_empty() {
            return Ok((all, first_token));
        }
        if first_token.is_empty() {
            first_token = next.clone();
        }
        token = next;
    }
    fail!("{call}: still returning next_page_token after {pages} pages")
}

/// [`page_through`] the listing `base` sent with `client.$method`, whose pages hold their items
/// in `$items`.
macro_rules! every_page {
    ($client:expr, $method:ident, $call:expr, $items:ident, $pages:expr, $base:expr $(,)?) => {{
        let base = $base;
        $crate::harness::page_through($call, base.page_size, $pages, |page_token| {
            let (mut client, mut request) = ($client, base.clone());
            request.page_token = page_token;
            async move {
                let page = $crate::harness::ok(client.$method(request).await, $call)?;
                Ok((page.$items, page.next_page_token))
            }
        })
        .await
    }};
}
pub(crate) use every_page;
