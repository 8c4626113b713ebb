//! The fuzz targets: one function per parser that takes outside input, each run by a libFuzzer
//! binary in `fuzz_targets/` (build and run them with scripts/fuzz.sh).
//!
//! A target feeds its bytes to the parser exactly as a request would reach it (through the
//! contracts' codec where a service decodes a protobuf message) and checks what must hold whatever
//! the input: no panic, and the parser's own promises (an accepted NHS number passes its check
//! digit, a token verifies only unaltered, an edited payload is still JSON, every refusal stays
//! small enough for a client to read).

use carerecord_contracts::codec::nul_text_fields;
use carerecord_platform::errors::{Violations, invalid_argument};
use carerecord_platform::status_policy::client_facing;
use prost::Message;

/// Defines `LLVMFuzzerTestOneInput`, the function libFuzzer calls with each input, to run
/// `$target` on it. A panic aborts the process, which libFuzzer reports as a crash, saving the
/// input under the run's artifact prefix.
#[macro_export]
macro_rules! fuzz_target {
    ($target:path) => {
        /// # Safety
        /// `data` points to `size` readable bytes (libFuzzer's contract).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn LLVMFuzzerTestOneInput(data: *const u8, size: usize) -> i32 {
            let input: &[u8] = if size == 0 {
                &[]
            } else {
                // SAFETY: libFuzzer passes `size` readable bytes at `data`, alive for this call.
                unsafe { ::std::slice::from_raw_parts(data, size) }
            };
            $crate::run($target, input)
        }
    };
}

/// Runs one target on one input: a panic (an assertion or a bug) aborts.
pub fn run(target: fn(&[u8]), input: &[u8]) -> i32 {
    if std::panic::catch_unwind(|| target(input)).is_err() {
        std::process::abort();
    }
    0
}

/// What common gRPC clients accept in a status's trailers.
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// The bytes as text, as a gRPC string field or a query string would carry them.
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Splits `data` at 0xFF bytes (never part of UTF-8) into at most `n` parts, the last taking the
/// rest: several text inputs from one byte string.
fn parts(data: &[u8], n: usize) -> Vec<String> {
    data.splitn(n, |b| *b == 0xFF)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// A request as a service receives it: refused when a string field holds NUL, then decoded.
fn request<T: Message + Default>(message: &str, data: &[u8]) -> Option<T> {
    if !nul_text_fields(message, data).is_empty() {
        return None;
    }
    T::decode(data).ok()
}

/// The refusal a service would send for `violations` fits in a client's trailers.
fn assert_refusal_fits(violations: &Violations, path: &str) {
    let status = invalid_argument(violations);
    let sent = client_facing(&status, path).unwrap_or(status);
    let size = sent.message().len() + sent.details().len();
    assert!(size < MAX_TRAILER_BYTES, "{size} bytes of trailers");
}

/// NHS numbers (`carerecord_platform::nhs_number`): an accepted number is ten digits that pass the
/// modulus-11 check, and normalising is idempotent.
pub fn nhs_number(data: &[u8]) {
    use carerecord_platform::nhs_number::{check_digit, digits, normalise};
    let Some(raw) = text(data) else { return };
    if let Ok(ten) = digits(raw) {
        assert!(ten.len() == 10 && ten.bytes().all(|b| b.is_ascii_digit()));
    }
    match normalise(raw) {
        Ok(number) => {
            let bytes = number.as_bytes();
            assert_eq!(check_digit(&bytes[..9]), Some(bytes[9] - b'0'));
            assert_eq!(normalise(&number).as_deref(), Ok(number.as_str()));
            assert_eq!(digits(raw).as_deref(), Ok(number.as_str()));
        }
        Err(e) => assert!(!e.description().is_empty()),
    }
}

/// Record hosting's payload rules (`carerecord_records::domain::payload`): the first part names
/// the resource type, the rest is the payload. An accepted payload's terms are the terms read
/// back from it when stored.
pub fn fhir_payload(data: &[u8]) {
    use carerecord_records::domain::payload::{PayloadRules, index, validate_indexed};
    let (resource_type, payload) = match data.iter().position(|b| *b == 0xFF) {
        Some(at) => (String::from_utf8_lossy(&data[..at]), &data[at + 1..]),
        None => ("Observation".into(), data),
    };
    let rules = PayloadRules {
        max_bytes: 1 << 20,
        fhir_base_urls: vec!["https://fhir.example.nhs.uk/R4".into()],
    };
    let patient_id = "9a0e5f2c-51d4-4c1e-8f43-1d2b3c4d5e6f";
    if let Ok(terms) = validate_indexed(payload, &resource_type, patient_id, &rules) {
        assert_eq!(
            terms,
            index(payload),
            "the stored payload reads back its terms"
        );
    }
}

/// Page tokens, cursors and ids (`carerecord_platform::page_token`, `request`): a forged or
/// altered token is refused, an issued one resumes exactly where it was issued, ids come back in
/// one canonical form.
pub fn page_token(data: &[u8]) {
    use carerecord_platform::page_token::{PageTokens, Position, QueryKey};
    use carerecord_platform::request::Id;
    let tokens = PageTokens::new(b"fuzz-token-secret-0123456789abcdef");
    let mut query = QueryKey::new("fuzz");
    query.text("patient").int(50).flag(true);
    let raw = String::from_utf8_lossy(data);

    // Outside input as a token: never accepted (it would need the key), never a panic.
    let mut violations = Violations::new();
    assert!(
        violations
            .page_position("page_token", &tokens, &query, &raw)
            .is_none()
    );
    assert_eq!(violations.is_empty(), raw.is_empty());
    if let Ok(mut position) = PageTokens::new(b"").resume(&query, &raw) {
        while !position.is_done() && position.read_text().is_some() {}
    }

    // Outside input as a position: issued, resumed, read back unchanged.
    let mut position = Position::new();
    let mut written = Vec::new();
    for chunk in data.chunks(9) {
        if chunk[0] % 2 == 0 {
            let value = i64::from_le_bytes(std::array::from_fn(|i| {
                chunk.get(i + 1).copied().unwrap_or(0)
            }));
            position.int(value);
            written.push(Err(value));
        } else {
            let value = String::from_utf8_lossy(&chunk[1..]).into_owned();
            position.text(&value);
            written.push(Ok(value));
        }
    }
    let token = tokens.issue_at(&query, &position);
    let mut resumed = tokens
        .resume(&query, &token)
        .expect("an issued token resumes");
    for value in &written {
        match value {
            Err(int) => assert_eq!(resumed.read_int(), Some(*int)),
            Ok(text) => assert_eq!(resumed.read_text().as_ref(), Some(text)),
        }
    }
    assert!(resumed.is_done());
    // Any one character changed: refused.
    if let Some(&pick) = data.first() {
        let mut altered: Vec<u8> = token.clone().into_bytes();
        if !altered.is_empty() {
            let at = usize::from(pick) % altered.len();
            altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).expect("base64url is ASCII");
            assert!(
                tokens.resume(&query, &altered).is_err(),
                "{token} -> {altered}"
            );
        }
    }
    let mut other = QueryKey::new("fuzz");
    other.text("patient").int(51).flag(true);
    assert!(tokens.resume(&other, &token).is_err());

    if let Some(id) = Id::parse(&raw) {
        let canonical = id.as_str();
        assert_eq!(canonical.len(), 36);
        assert_eq!(canonical, canonical.to_ascii_lowercase());
        assert_eq!(Id::parse(canonical).as_ref(), Some(&id));
    }
}

/// Bearer tokens (`carerecord_access::domain::auth`), verified against a local key: outside
/// input is never accepted, claims of any content come back as signed, and an altered token is
/// refused or names exactly the caller the original did. JWKS documents are parsed too.
pub fn bearer_token(data: &[u8]) {
    use carerecord_access::dev_token::{self, DevToken, mint};
    use carerecord_access::domain::auth::{Scope, TokenVerifier, keys_from_jwks};
    let audience = carerecord_access::config::DEFAULT_AUDIENCE;
    let verifier = {
        let mut verifier = TokenVerifier::new(audience);
        verifier
            .add_pem(
                dev_token::KEY_ID,
                jsonwebtoken::Algorithm::ES256,
                dev_token::PUBLIC_KEY_PEM.as_bytes(),
                dev_token::ISSUER,
            )
            .expect("the development key");
        verifier
    };
    let verify = |token: &str| futures::executor::block_on(verifier.verify(token));
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let raw = String::from_utf8_lossy(rest);
            assert!(verify(&raw).is_err(), "a token nobody signed: {raw:?}");
            for scope in raw.split_whitespace() {
                let _ = Scope::parse(scope);
            }
        }
        1 => {
            let fields = parts(rest, 7);
            let field = |i: usize| fields.get(i).cloned().unwrap_or_default();
            let claims = DevToken {
                subject: field(0),
                organisation_ods_code: field(1),
                role_code: field(2),
                display_name: field(3),
                client_id: field(4),
                scope: field(5),
                patient: field(6),
                audience: audience.into(),
                ttl_seconds: 600,
            };
            let Ok(token) = mint(&claims) else { return };
            match verify(&token) {
                Ok(caller) => {
                    assert_eq!(caller.user_id, claims.subject);
                    assert_eq!(caller.organisation_ods_code, claims.organisation_ods_code);
                    assert_eq!(caller.patient, claims.patient.to_ascii_lowercase());
                    let scopes: Vec<Scope> = claims
                        .scope
                        .split_whitespace()
                        .filter_map(Scope::parse)
                        .collect();
                    assert_eq!(caller.scopes, scopes);
                }
                Err(e) => assert!(claims.subject.trim().is_empty(), "{e:?} for {claims:?}"),
            }
        }
        2 => {
            let original = mint(&DevToken {
                subject: "fuzz-user".into(),
                organisation_ods_code: "RR8".into(),
                role_code: "R8000".into(),
                scope: "user/*.rs".into(),
                audience: audience.into(),
                ttl_seconds: 600,
                ..DevToken::default()
            })
            .expect("a development token");
            let expected = verify(&original).expect("a good token verifies");
            let mut altered = original.clone().into_bytes();
            for pair in rest.chunks(3) {
                let at = (usize::from(pair[0]) << 8 | usize::from(*pair.get(1).unwrap_or(&0)))
                    % altered.len().max(1);
                match pair.get(2) {
                    Some(&b) if altered.len() > at => altered[at] = b,
                    _ => altered.truncate(at),
                }
            }
            let altered = String::from_utf8_lossy(&altered).into_owned();
            if altered.trim() != original {
                if let Ok(caller) = verify(&altered) {
                    assert_eq!(caller, expected, "an altered token changed its caller");
                }
            }
        }
        _ => {
            if let Some(jwks) = text(rest) {
                let _ = keys_from_jwks(jwks, "https://issuer.example");
            }
        }
    }
}

/// FHIR search parameters and dates (`carerecord_fhir::query`, `platform::time::fhir_range`): a
/// date covers a non-empty range, tokens and percent-encoding round-trip, date prefixes narrow a
/// window without panicking.
pub fn fhir_search(data: &[u8]) {
    use carerecord_fhir::query::{Query, Token, Window, alternatives, decode, encode};
    use carerecord_platform::time::fhir_range;
    let Some(raw) = text(data) else { return };
    if let Some((start, end)) = fhir_range(raw) {
        assert!(start < end, "{raw:?} covers [{start}, {end})");
    }
    let Ok(query) = Query::parse(Some(raw)) else {
        return;
    };
    let mut window = Window::default();
    for param in &query.0 {
        assert_eq!(
            decode(&encode(&param.value)).as_deref(),
            Some(param.value.as_str())
        );
        for alternative in alternatives(&param.value) {
            let token = Token::parse(&alternative);
            assert_eq!(Token::parse(&token.to_filter()), token);
        }
        if window.narrow(&param.name, &param.value).is_ok() {
            let _ = window.to_period();
        }
        let _ = query.one(&param.name);
    }
    let _ = query.unknown(&["code", "date", "_count"]).count();
}

/// Cedar policy files (`carerecord_consent::policy`, the loader behind
/// CARERECORD_CONSENT_POLICY_FILE): any text is loaded or refused with a reason.
pub fn cedar_policy(data: &[u8]) {
    use carerecord_consent::policy::PlatformPolicies;
    let Some(policies) = text(data) else { return };
    match PlatformPolicies::load(policies) {
        Ok(loaded) => {
            assert!(loaded.version().starts_with("sha256:"));
            let _ = loaded.exemption_ids();
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Consent directives and their provisions, as CreateConsentDirective receives them (the contracts'
/// codec, then `carerecord_consent::domain::validate::validate_directive`).
pub fn directive(data: &[u8]) {
    use carerecord_consent::domain::time::instant_from_micros;
    use carerecord_consent::domain::validate::validate_directive;
    use carerecord_contracts::consent::v1::CreateConsentDirectiveRequest;
    let Some(request) = request::<CreateConsentDirectiveRequest>(
        "carerecord.consent.v1.CreateConsentDirectiveRequest",
        data,
    ) else {
        return;
    };
    let Some(mut directive) = request.directive else {
        return;
    };
    let mut violations = Violations::new();
    let now = instant_from_micros(1_790_000_000_000_000);
    validate_directive(&mut directive, "directive", now, &mut violations);
    assert_refusal_fits(
        &violations,
        "/carerecord.consent.v1.ConsentService/CreateConsentDirective",
    );
}

/// Record hosting's import stream: one ImportRecords message as the service receives it (the
/// contracts' codec), each item validated as CreateRecord validates it.
pub fn records_import(data: &[u8]) {
    use carerecord_contracts::records::v1::ImportRecordsRequest;
    use carerecord_records::domain::payload::{PayloadRules, content_hash};
    use carerecord_records::domain::record::{RecordRules, actor, validate_new};
    let Some(message) =
        request::<ImportRecordsRequest>("carerecord.records.v1.ImportRecordsRequest", data)
    else {
        return;
    };
    let rules = RecordRules {
        payload: PayloadRules {
            max_bytes: 1 << 20,
            fhir_base_urls: vec!["https://fhir.example.nhs.uk/R4".into()],
        },
        allowed_resource_types: None,
    };
    let mut violations = Violations::new();
    let _ = actor(message.requester.as_ref(), "requester", &mut violations);
    let now = 1_790_000_000_000_000;
    for item in &message.items {
        let mut item_violations = Violations::new();
        let _ = item_violations.optional_id("request_id", &item.request_id);
        let Some(record) = &item.record else { continue };
        let fields = validate_new(record, "record", &rules, now, &mut item_violations);
        if item_violations.is_empty() {
            assert_eq!(fields.content_hash, content_hash(&record.payload));
            assert_eq!(fields.patient_id, fields.patient_id.to_ascii_lowercase());
            let _ = fields.fingerprint();
        }
        assert_refusal_fits(
            &item_violations,
            "/carerecord.records.v1.RecordHostingService/ImportRecords",
        );
    }
}

/// Data access's contribution scanner (`carerecord_access::domain::contribution`): the patient a
/// payload names, the reference inserted for it (the payload stays JSON, and every Reference that
/// named the patient by NHS number alone now names the patient), and its effective time.
pub fn contribution_payload(data: &[u8]) {
    use carerecord_access::domain::contribution::{
        NHS_NUMBER_SYSTEM, effective_micros, patient_naming, with_patient_reference,
    };
    use serde_json::Value;
    let _ = effective_micros(data);
    let Ok(naming) = patient_naming(data) else {
        return;
    };
    if naming.insert_at.is_empty() {
        return;
    }
    assert!(naming.nhs_number.is_some());
    let patient_id = "9a0e5f2c-51d4-4c1e-8f43-1d2b3c4d5e6f";
    let edited = with_patient_reference(data, &naming.insert_at, patient_id);
    let Ok(Value::Object(before)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let after: Value = serde_json::from_slice(&edited).unwrap_or_else(|e| {
        panic!(
            "the edited payload is not JSON ({e}): {}",
            String::from_utf8_lossy(&edited)
        )
    });
    let expected = Value::String(format!("Patient/{patient_id}"));
    for name in ["subject", "patient"] {
        let (Some(was), Some(now)) = (before.get(name), after.get(name)) else {
            continue;
        };
        let pairs: Vec<(&Value, &Value)> = match (was, now) {
            (Value::Array(was), Value::Array(now)) => was.iter().zip(now).collect(),
            _ => vec![(was, now)],
        };
        for (was, now) in pairs {
            let by_nhs_number_alone = was.get("reference").is_none()
                && was.pointer("/identifier/system").and_then(Value::as_str)
                    == Some(NHS_NUMBER_SYSTEM);
            if by_nhs_number_alone {
                assert_eq!(now.get("reference"), Some(&expected), "{now}");
            }
        }
    }
}

/// The request messages the NUL scanner is tried on: one or more of every module's, nested ones
/// first.
const SCANNED: &[&str] = &[
    "carerecord.consent.v1.CreateConsentDirectiveRequest",
    "carerecord.records.v1.ImportRecordsRequest",
    "carerecord.records.v1.CreateRecordRequest",
    "carerecord.access.v1.ImportRecordsRequest",
    "carerecord.access.v1.ReadPatientRecordRequest",
    "carerecord.identity.v1.CreatePatientRequest",
    "carerecord.identity.v1.MatchPatientsRequest",
    "carerecord.consent.v1.DecideRequest",
];

/// The contracts' NUL scanner (`carerecord_contracts::codec`), run before every request is decoded:
/// never a panic, and whenever the request decodes with NUL in any text field, that is found.
pub fn nul_scanner(data: &[u8]) {
    use carerecord_contracts::{access, consent, identity, records};
    let Some((&pick, encoded)) = data.split_first() else {
        return;
    };
    let message = SCANNED[usize::from(pick) % SCANNED.len()];
    let found = nul_text_fields(message, encoded);
    // Debug shows NUL in a string as `\0` and a backslash as `\\`; bytes fields print as numbers.
    fn holds_nul<T: Message + Default + std::fmt::Debug>(encoded: &[u8]) -> bool {
        T::decode(encoded).is_ok_and(|m| format!("{m:?}").replace("\\\\", "").contains("\\0"))
    }
    let decoded_with_nul = match message {
        "carerecord.consent.v1.CreateConsentDirectiveRequest" => {
            holds_nul::<consent::v1::CreateConsentDirectiveRequest>(encoded)
        }
        "carerecord.records.v1.ImportRecordsRequest" => {
            holds_nul::<records::v1::ImportRecordsRequest>(encoded)
        }
        "carerecord.records.v1.CreateRecordRequest" => {
            holds_nul::<records::v1::CreateRecordRequest>(encoded)
        }
        "carerecord.access.v1.ImportRecordsRequest" => {
            holds_nul::<access::v1::ImportRecordsRequest>(encoded)
        }
        "carerecord.access.v1.ReadPatientRecordRequest" => {
            holds_nul::<access::v1::ReadPatientRecordRequest>(encoded)
        }
        "carerecord.identity.v1.CreatePatientRequest" => {
            holds_nul::<identity::v1::CreatePatientRequest>(encoded)
        }
        "carerecord.identity.v1.MatchPatientsRequest" => {
            holds_nul::<identity::v1::MatchPatientsRequest>(encoded)
        }
        _ => holds_nul::<consent::v1::DecideRequest>(encoded),
    };
    if decoded_with_nul {
        assert!(!found.is_empty(), "{message} decodes with NUL unnoticed");
    }
}
