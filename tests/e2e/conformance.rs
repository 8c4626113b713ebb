//! Our own four services certified by the conformance kit, on every backend under test: each
//! module must pass its whole catalogue with nothing failed and nothing skipped (a skip would
//! hide an untested promise of the contract).

use carerecord_conformance::{Module, Options, Report, run};
use carerecord_e2e::{OTHER_PROJECT, Overrides, PROJECT, Platform, token, token_at};

fn options_for(module: Module, platform: &Platform) -> Options {
    let mut options = Options {
        test_timeout: std::time::Duration::from_secs(120),
        ..Options::default()
    };
    if module == Module::Access {
        // Reads everything; records and withdraws patients' consent directives at their request.
        options.token = Some(token("R8000", "user/*.rs user/Consent.cu"));
        options.unscoped_token = Some(token("R8000", "user/Encounter.c"));
        options.auditor_token = Some(token("R0001", "user/*.rs user/AuditEvent.u"));
        // A social care provider's system and a GP practice: organisations other than the
        // readers' (RR8), so that provenance from the token shows.
        options.contributor_token = Some(token_at(
            "8KIT1",
            "",
            "system/Observation.cu",
            "conformance-contributor",
        ));
        options.other_org_token = Some(token_at(
            "A8KIT",
            "R8000",
            "user/Observation.cu",
            "conformance-other-org",
        ));
        options.identity_endpoint = Some(platform.identity.clone());
        options.records_endpoint = Some(platform.records.clone());
        options.consent_endpoint = Some(platform.consent.clone());
        options.project_id = Some(PROJECT.to_owned());
    }
    options
}

fn endpoint(module: Module, platform: &Platform) -> &str {
    match module {
        Module::Identity => &platform.identity,
        Module::Records => &platform.records,
        Module::Consent => &platform.consent,
        Module::Access => &platform.access,
    }
}

/// Every failure and skip of a report, one per line, for the assertion message.
fn shortfalls(report: &Report) -> String {
    let mut out = report.summary();
    for result in &report.results {
        match &result.outcome {
            carerecord_conformance::Outcome::Passed => {}
            other => out.push_str(&format!("\n  {} {}: {other:?}", result.id, result.title)),
        }
    }
    out
}

/// The consent kit's decision table tests directive semantics and the national data opt-out, and
/// assumes no deployment platform rule applies (it skips rows one decides); so our consent runs
/// with only the opt-out's exemptions from its shipped policies. The other shipped rules have their
/// own tests in the consent crate.
fn statutory_policies_only() -> String {
    const MARKER: &str = "// The national data opt-out's exemptions";
    let shipped = carerecord_consent::policy::DEFAULT_POLICIES;
    let start = shipped
        .find(MARKER)
        .expect("the shipped policies keep the opt-out exemptions last, after this comment");
    let statutory = &shipped[start..];
    assert!(
        !statutory.contains("@kind(\"forbid\")")
            && !statutory.contains("@kind(\"override\")")
            && !statutory.contains("@kind(\"default\")"),
        "only opt-out exemptions may follow {MARKER:?} in policy/default.cedar"
    );
    statutory.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_four_services_pass_their_whole_conformance_kits() {
    // The second project exists so that a mistaken project id would be noticed, not silently used.
    assert_ne!(PROJECT, OTHER_PROJECT);
    let overrides = Overrides {
        consent_policies: Some(statutory_policies_only()),
        ..Overrides::default()
    };
    for platform in Platform::each_backend(overrides).await {
        // The modules are independent (each test makes its own data), so they run side by side.
        let run_kit = |module: Module| {
            run(
                module,
                endpoint(module, &platform),
                options_for(module, &platform),
            )
        };
        let (identity, records, consent, access) = tokio::join!(
            run_kit(Module::Identity),
            run_kit(Module::Records),
            run_kit(Module::Consent),
            run_kit(Module::Access)
        );
        let reports = [identity, records, consent, access];
        let mut problems = Vec::new();
        for report in &reports {
            println!("{:?}: {}", platform.backend, report.summary());
            if !report.passed() || report.skipped_count() > 0 {
                problems.push(shortfalls(report));
            }
        }
        assert!(
            problems.is_empty(),
            "{:?}: our services do not pass their own conformance kits:\n{}",
            platform.backend,
            problems.join("\n")
        );
    }
}
