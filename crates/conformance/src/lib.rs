//! The carerecord conformance kit: black-box tests, over gRPC, of everything a module's contract
//! (`proto/carerecord/<module>/v1`) promises, so that any supplier can certify that an
//! implementation of a module fits in place of ours.
//!
//! ```no_run
//! # async fn example() {
//! use carerecord_conformance::{run, Module, Options};
//! let report = run(Module::Records, "http://127.0.0.1:50052", Options::default()).await;
//! std::fs::write("conformance.md", report.to_markdown()).unwrap();
//! std::process::exit(if report.passed() { 0 } else { 1 });
//! # }
//! ```
//!
//! Tests create their own data with fresh random patient ids, so they can run against a live
//! system without colliding with its data or with another run; contracts have no delete, so the
//! report lists what a run left behind.
//!
//! Layout: `harness` (cases, the context they run in, assertions), `refusal` (how a call must
//! fail, checked one call at a time or row by row in tables), `report` (markdown and JUnit XML),
//! and a folder per module.
//! In each folder `mod.rs` holds the module's catalogue (every test's id and title, in run
//! order), `support.rs` what its tests share (the client, test data, calls that set a test up),
//! and one file per area of the contract holds the tests themselves.

mod access;
mod consent;
mod harness;
mod identity;
mod records;
mod refusal;
mod report;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

pub use harness::{Case, Fail, Leftovers};
pub use report::{CaseResult, Outcome, Report};

/// A module contract the kit can certify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Module {
    /// `carerecord.identity.v1.PatientIdentityService`.
    Identity,
    /// `carerecord.records.v1.RecordHostingService`.
    Records,
    /// `carerecord.consent.v1.ConsentService`.
    Consent,
    /// `carerecord.access.v1.DataAccessService`.
    Access,
}

impl Module {
    /// Every module, in catalogue order.
    pub const ALL: [Module; 4] = [
        Module::Identity,
        Module::Records,
        Module::Consent,
        Module::Access,
    ];

    /// The short name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Module::Identity => "identity",
            Module::Records => "records",
            Module::Consent => "consent",
            Module::Access => "access",
        }
    }

    /// The fully qualified gRPC service the module's contract defines.
    pub fn service(self) -> &'static str {
        match self {
            Module::Identity => "carerecord.identity.v1.PatientIdentityService",
            Module::Records => "carerecord.records.v1.RecordHostingService",
            Module::Consent => "carerecord.consent.v1.ConsentService",
            Module::Access => "carerecord.access.v1.DataAccessService",
        }
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Module {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Module::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("unknown module {s:?}: expected identity, records, consent or access")
            })
    }
}

/// How to run the kit.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bearer token sent as `authorization: Bearer <token>` on every call. Required by the access
    /// module (a token whose scopes cover every read, for example `system/*.rs` or `user/*.rs`);
    /// optional elsewhere.
    pub token: Option<String>,
    /// Access only: a second valid token of the same deployment whose scopes do NOT include
    /// `Patient.r` or any record read (for example `user/Encounter.c`); the PERMISSION_DENIED
    /// tests are skipped without it.
    pub unscoped_token: Option<String>,
    /// Access only: a valid token of a role that may list and verify the audit log and list and
    /// review the review queue (a privacy officer, with `user/AuditEvent.u` to review); without it
    /// `token` is tried, and those tests are skipped if it is refused.
    pub auditor_token: Option<String>,
    /// Access only: a token acting for one organisation whose scopes give `c` and `u` on
    /// Observation and no `c` on Condition (for example `system/Observation.cu`); the
    /// contribution and import tests are skipped without it.
    pub contributor_token: Option<String>,
    /// Access only: a token of another organisation than `contributor_token`'s, also with `u` on
    /// Observation (for example `user/Observation.cu`), for the RECORD_NOT_OWNED test.
    pub other_org_token: Option<String>,
    /// Access only: the deployment's identity endpoint; the kit registers test patients there.
    /// Tests of a patient's record are skipped without it (and, where they store records directly,
    /// without `records_endpoint`).
    pub identity_endpoint: Option<String>,
    /// Access only: the deployment's record hosting endpoint, to store the test patients' records
    /// and change them while a test follows them.
    pub records_endpoint: Option<String>,
    /// Access only: the deployment's consent endpoint, to record the test patients' directives (a
    /// refusal, a withheld data class).
    pub consent_endpoint: Option<String>,
    /// Access only: a registered project approved for HRESCH for this token's organisation and
    /// client; the extract and aggregate tests are skipped without it.
    pub project_id: Option<String>,
    /// PEM CA certificate(s) to trust for an `https://` endpoint (all endpoints).
    pub ca_certificate_pem: Option<Vec<u8>>,
    /// Only run tests whose id starts with one of these prefixes; empty runs every test.
    pub only: Vec<String>,
    /// Longest one test may run before it fails.
    pub test_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: None,
            unscoped_token: None,
            auditor_token: None,
            contributor_token: None,
            other_org_token: None,
            identity_endpoint: None,
            records_endpoint: None,
            consent_endpoint: None,
            project_id: None,
            ca_certificate_pem: None,
            only: Vec::new(),
            test_timeout: Duration::from_secs(60),
        }
    }
}

/// The catalogue of a module: every test's id and one-line explanation, in run order.
pub fn catalogue(module: Module) -> Vec<Case> {
    match module {
        Module::Identity => identity::cases(),
        Module::Records => records::cases(),
        Module::Consent => consent::cases(),
        Module::Access => access::cases(),
    }
}

/// Runs the kit for `module` against the server at `endpoint` (`http://host:port` or
/// `https://…`) and reports every test's outcome. Never panics on a misbehaving server: a
/// connection failure is reported as the run's setup error.
pub async fn run(module: Module, endpoint: &str, options: Options) -> Report {
    let started = Instant::now();
    let mut report = Report::new(module, endpoint);
    if module == Module::Access && options.token.is_none() {
        report.setup_error = Some(
            "the access module needs a bearer token of the deployment (--token), with scopes covering every read"
                .to_owned(),
        );
        return report;
    }
    let auth = match bearer(options.token.as_deref()) {
        Ok(auth) => auth,
        Err(message) => {
            report.setup_error = Some(message);
            return report;
        }
    };
    let channel = match connect(endpoint, options.ca_certificate_pem.as_deref()).await {
        Ok(channel) => channel,
        Err(message) => {
            report.setup_error = Some(message);
            return report;
        }
    };
    let options = Arc::new(options);
    let ctx = harness::Ctx::new(channel, auth, options.clone());
    for case in catalogue(module) {
        if !options.only.is_empty() && !options.only.iter().any(|p| case.id.starts_with(p)) {
            continue;
        }
        let case_started = Instant::now();
        let outcome = {
            // Each test runs in its own task so that a panic in the kit (a bug of ours) is
            // reported against that test instead of ending the run.
            let task = tokio::spawn((case.run)(ctx.clone()));
            match tokio::time::timeout(options.test_timeout, task).await {
                Ok(Ok(Ok(()))) => Outcome::Passed,
                Ok(Ok(Err(Fail::Failed(m)))) => Outcome::Failed(m),
                Ok(Ok(Err(Fail::Skipped(m)))) => Outcome::Skipped(m),
                Ok(Err(join)) => Outcome::Failed(format!("the test itself crashed: {join}")),
                Err(_) => {
                    Outcome::Failed(format!("did not finish within {:?}", options.test_timeout))
                }
            }
        };
        report.results.push(CaseResult {
            id: case.id.clone(),
            title: case.title.clone(),
            outcome,
            duration: case_started.elapsed(),
        });
    }
    report.leftovers = ctx.leftovers();
    report.duration = started.elapsed();
    report
}

pub(crate) fn bearer(token: Option<&str>) -> Result<harness::Auth, String> {
    match token {
        None => Ok(harness::Auth(None)),
        Some(token) => MetadataValue::try_from(format!("Bearer {token}"))
            .map(|v| harness::Auth(Some(v)))
            .map_err(|_| "the token contains characters not allowed in gRPC metadata".to_owned()),
    }
}

pub(crate) async fn connect(
    endpoint: &str,
    ca_pem: Option<&[u8]>,
) -> Result<tonic::transport::Channel, String> {
    let mut ep = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| format!("{endpoint:?} is not a valid endpoint URL: {e}"))?
        .connect_timeout(Duration::from_secs(10));
    if endpoint.starts_with("https://") {
        let Some(pem) = ca_pem else {
            return Err(format!(
                "{endpoint} uses TLS: give the CA certificate that signed the server's certificate"
            ));
        };
        ep = ep
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            .map_err(|e| format!("TLS configuration: {e}"))?;
    }
    ep.connect()
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_ids_are_unique_stable_and_explained() {
        let prefixes = [
            (Module::Identity, "ID-"),
            (Module::Records, "REC-"),
            (Module::Consent, "CON-"),
            (Module::Access, "ACC-"),
        ];
        let mut all = std::collections::BTreeSet::new();
        for (module, prefix) in prefixes {
            let cases = catalogue(module);
            assert!(!cases.is_empty(), "{module} has no tests");
            for case in &cases {
                assert!(
                    case.id.starts_with(prefix),
                    "{} is not a {module} id",
                    case.id
                );
                assert!(
                    case.id.split('-').count() == 3
                        && case
                            .id
                            .rsplit('-')
                            .next()
                            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit())),
                    "{} is not <MODULE>-<AREA>-<NUMBER>",
                    case.id
                );
                assert!(
                    !case.title.trim().is_empty(),
                    "{} has no explanation",
                    case.id
                );
                assert!(all.insert(case.id.clone()), "{} is used twice", case.id);
            }
        }
    }

    #[test]
    fn module_names_round_trip() {
        for m in Module::ALL {
            assert_eq!(m.name().parse::<Module>(), Ok(m));
            assert!(
                m.service()
                    .starts_with(&format!("carerecord.{}.v1.", m.name()))
            );
        }
        assert!("billing".parse::<Module>().is_err());
    }

    #[tokio::test]
    async fn the_access_kit_needs_a_token_and_bad_endpoints_are_reported() {
        let report = run(Module::Access, "http://127.0.0.1:9", Options::default()).await;
        assert!(report.setup_error.is_some_and(|e| e.contains("--token")));
        let report = run(Module::Records, "not a url", Options::default()).await;
        assert!(!report.passed() && report.setup_error.is_some());
        let report = run(Module::Records, "https://127.0.0.1:9", Options::default()).await;
        assert!(
            report
                .setup_error
                .is_some_and(|e| e.contains("CA certificate"))
        );
    }
}
