//! Per-client limits: a client flooding the front door is refused RATE_LIMITED (with RetryInfo)
//! while another client, within its limits, is served as before. Prints both clients' throughput
//! and p99 latency; asserts only what the limiter guarantees, never timings.

use std::time::{Duration, Instant};

use carerecord_contracts::access::v1 as api;
use carerecord_platform::testing::TestDatabase;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::*;

/// The flooder's limits (from the issuers file); every other client has the environment's.
const FLOOD_RATE: f64 = 50.0;
const FLOOD_BURST: u32 = 20;
const FLOOD_CONCURRENCY: u32 = 4;
/// Calls the flooder keeps in flight.
const FLOOD_TASKS: usize = 32;
const FLOOD_FOR: Duration = Duration::from_secs(2);
/// The steady client's pace: well within its limits.
const STEADY_EVERY: Duration = Duration::from_millis(25);

/// A token of `client_id` (a system reading patients).
fn client_token(client_id: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": client_id, "client_id": client_id,
        "organisation_ods_code": "X26", "scope": "system/Patient.r", "iat": now, "exp": now + 300,
    });
    let pem = std::fs::read(format!("{KEYS_DIR}/issuer_rsa.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa".into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

fn steady_token_again() -> String {
    client_token("steady-gp-system")
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    ok: usize,
    limited: usize,
    other: Vec<tonic::Status>,
    retry_info: bool,
}

impl Seen {
    fn merge(&mut self, other: Seen) {
        self.latencies.extend(other.latencies);
        self.ok += other.ok;
        self.limited += other.limited;
        self.other.extend(other.other);
        self.retry_info |= other.retry_info;
    }

    /// What all the clients saw, together.
    fn merged(all: impl IntoIterator<Item = Seen>) -> Seen {
        let mut merged = Seen::default();
        for seen in all {
            merged.merge(seen);
        }
        merged
    }

    fn p99(&mut self) -> Duration {
        self.latencies.sort();
        let at = (self.latencies.len() * 99).div_ceil(100).saturating_sub(1);
        self.latencies.get(at).copied().unwrap_or_default()
    }

    fn summary(&mut self, elapsed: Duration) -> String {
        let p99 = self.p99();
        format!(
            "{} ok ({:.0}/s), {} refused RATE_LIMITED, {} other errors, p99 {:.1} ms over {} calls",
            self.ok,
            self.ok as f64 / elapsed.as_secs_f64(),
            self.limited,
            self.other.len(),
            p99.as_secs_f64() * 1000.0,
            self.latencies.len()
        )
    }
}

/// Calls FindPatient with `token` until `until`, one at a time, every `pace` (none: back to back).
async fn client(
    app: &TestApp,
    token: String,
    patient: String,
    until: Instant,
    pace: Option<Duration>,
) -> Seen {
    let mut seen = Seen::default();
    let mut client = app.client.clone();
    while Instant::now() < until {
        let started = Instant::now();
        let request = api::FindPatientRequest {
            patient: patient_ref(&patient),
            purpose_of_use: "TREAT".into(),
        };
        let result = client.find_patient(authed(request, &token)).await;
        seen.latencies.push(started.elapsed());
        match result {
            Ok(_) => seen.ok += 1,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert_eq!(error_info(&status).reason, "RATE_LIMITED");
                seen.retry_info |= status.get_details_retry_info().is_some();
                seen.limited += 1;
            }
            Err(status) => seen.other.push(status),
        }
        if let Some(pace) = pace {
            tokio::time::sleep(pace.saturating_sub(started.elapsed())).await;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_limited_while_another_keeps_its_service() {
    for db in TestDatabase::each_backend().await {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("issuers.json");
        std::fs::write(
            &file,
            serde_json::json!({"limits": {"clients": {
                "flooder": {
                    "rate_per_second": FLOOD_RATE, "burst": FLOOD_BURST, "concurrency": FLOOD_CONCURRENCY
                },
                // For comparison only: the same flood with no limit at all.
                "unlimited": {"rate_per_second": 0, "concurrency": 0}
            }}})
            .to_string(),
        )
        .unwrap();
        let app = spawn_app_with(
            &db.url,
            &[
                ("CARERECORD_CLIENT_RATE_LIMIT", "200".into()),
                ("CARERECORD_CLIENT_CONCURRENCY", "8".into()),
                ("CARERECORD_ACCESS_ISSUERS_FILE", file.display().to_string()),
            ],
        )
        .await;
        let patient = app.fakes.add_patient("9434765919", "Smith");
        let steady_token = client_token("steady-gp-system");
        let flood_token = client_token("flooder");

        // The steady client alone, then with the flood.
        let alone_for = Duration::from_secs(1);
        let mut alone = client(
            &app,
            steady_token.clone(),
            patient.clone(),
            Instant::now() + alone_for,
            Some(STEADY_EVERY),
        )
        .await;
        let started = Instant::now();
        let until = started + FLOOD_FOR;
        let flood = (0..FLOOD_TASKS)
            .map(|_| client(&app, flood_token.clone(), patient.clone(), until, None));
        let steady = client(
            &app,
            steady_token,
            patient.clone(),
            until,
            Some(STEADY_EVERY),
        );
        let (flooded, mut steady) = tokio::join!(futures::future::join_all(flood), steady);
        let elapsed = started.elapsed();
        let mut flooder = Seen::merged(flooded);
        eprintln!(
            "{:?}: steady client alone: {}",
            db.backend,
            alone.summary(alone_for)
        );
        eprintln!(
            "{:?}: flooding client ({FLOOD_TASKS} calls in flight; limits {FLOOD_RATE}/s, burst {FLOOD_BURST}, {FLOOD_CONCURRENCY} in flight): {}",
            db.backend,
            flooder.summary(elapsed)
        );
        eprintln!(
            "{:?}: steady client during the flood: {}",
            db.backend,
            steady.summary(elapsed)
        );

        assert!(flooder.limited > 0, "the flooder was never limited");
        assert!(flooder.retry_info, "RATE_LIMITED carries RetryInfo");
        assert!(flooder.other.is_empty(), "{:?}", flooder.other);
        // The bucket never lets more through than its burst and its rate over the time.
        let most = f64::from(FLOOD_BURST) + FLOOD_RATE * elapsed.as_secs_f64() + 1.0;
        assert!(flooder.ok as f64 <= most, "{} > {most}", flooder.ok);
        // For the figures only: the same flood from a client with no limit.
        let started = Instant::now();
        let until = started + FLOOD_FOR;
        let unlimited_token = client_token("unlimited");
        let flood = (0..FLOOD_TASKS)
            .map(|_| client(&app, unlimited_token.clone(), patient.clone(), until, None));
        let with_unlimited = client(
            &app,
            steady_token_again(),
            patient.clone(),
            until,
            Some(STEADY_EVERY),
        );
        let (flooded, mut beside_unlimited) =
            tokio::join!(futures::future::join_all(flood), with_unlimited);
        let elapsed = started.elapsed();
        let mut unlimited = Seen::merged(flooded);
        eprintln!(
            "{:?}: for comparison, an unlimited client flooding the same way: {}",
            db.backend,
            unlimited.summary(elapsed)
        );
        eprintln!(
            "{:?}: steady client beside the unlimited flood: {}",
            db.backend,
            beside_unlimited.summary(elapsed)
        );

        for seen in [&alone, &steady] {
            assert_eq!(seen.limited, 0, "the steady client was limited");
            assert!(seen.other.is_empty(), "{:?}", seen.other);
            assert!(seen.ok > 0);
        }
    }
}
