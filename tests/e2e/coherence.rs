//! Data access keeps patient resolutions and consent decisions between calls; none may outlive an
//! identity or consent write acknowledged before a read arrived. While readers read, an NHS
//! number moves between two patients, or a patient's dissent is recorded and revoked: every read
//! must see a state the record had between the last write acknowledged when the read was sent
//! and the last acknowledged when its answer came.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, CreateConsentDirectiveRequest,
    RevokeConsentDirectiveRequest,
};
use carerecord_contracts::identity::v1::{GetPatientRequest, Patient, UpdatePatientRequest};
use carerecord_e2e::{
    Overrides, Platform, authed, by_id, by_nhs, fresh_nhs_number, read_request, token, uuid,
};
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Channel;

/// How many times the number moves, and how many readers read by it meanwhile.
const MOVES: usize = 12;
const READERS: usize = 8;

type Client = DataAccessServiceClient<Channel>;
type Read<T> = Arc<dyn Fn(Client) -> Pin<Box<dyn Future<Output = T> + Send>> + Send + Sync>;

/// What reads are to show as writes are acknowledged (`states[n]`: once `n` are), and the reads
/// made meanwhile, each with how many writes were acknowledged when it was sent and answered.
struct Timeline<T> {
    states: Mutex<Vec<T>>,
    done: AtomicBool,
}

impl<T: Clone + PartialEq + std::fmt::Debug + Send + 'static> Timeline<T> {
    fn new(initial: T) -> Arc<Self> {
        Arc::new(Timeline {
            states: Mutex::new(vec![initial]),
            done: AtomicBool::new(false),
        })
    }

    fn acknowledged(&self) -> usize {
        self.states.lock().unwrap().len() - 1
    }

    /// A write was acknowledged: from now on reads are to show `state`.
    fn now_shows(&self, state: T) {
        self.states.lock().unwrap().push(state);
    }

    /// [`READERS`] readers, each reading through data access with `read` until [`Self::check`].
    fn start_readers(
        self: &Arc<Self>,
        platform: &Arc<Platform>,
        read: Read<T>,
    ) -> Vec<JoinHandle<Vec<(usize, usize, T)>>> {
        (0..READERS)
            .map(|_| {
                let (timeline, platform, read) = (self.clone(), platform.clone(), read.clone());
                tokio::spawn(async move {
                    let client = platform.access_client().await;
                    let mut reads = Vec::new();
                    while !timeline.done.load(Ordering::SeqCst) {
                        let sent = timeline.acknowledged();
                        let shown = read(client.clone()).await;
                        reads.push((sent, timeline.acknowledged(), shown));
                    }
                    reads
                })
            })
            .collect()
    }

    /// Stops the readers and requires every read to show a state from its window: between the
    /// writes acknowledged when it was sent and when it was answered.
    async fn check(&self, readers: Vec<JoinHandle<Vec<(usize, usize, T)>>>, platform: &Platform) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.done.store(true, Ordering::SeqCst);
        let states = self.states.lock().unwrap().clone();
        let mut checked = 0;
        for reader in readers {
            for (sent, answered, shown) in reader.await.expect("reader") {
                let window = &states[sent..=answered];
                assert!(
                    window.contains(&shown),
                    "{:?}: a read sent after {sent} acknowledged writes (answered after \
                     {answered}) showed {shown:?}, but meanwhile reads were to show {window:?}",
                    platform.backend,
                );
                checked += 1;
            }
        }
        assert!(
            checked > MOVES * 2,
            "{:?}: only {checked} reads",
            platform.backend
        );
    }
}

fn clerk() -> Requester {
    Requester {
        user_id: "e2e-registration-clerk".into(),
        organisation_ods_code: "RR8".into(),
        role_code: "R8000".into(),
        display_name: String::new(),
    }
}

async fn patient(platform: &Platform, patient_id: &str) -> Patient {
    let request = GetPatientRequest {
        patient_id: patient_id.to_owned(),
    };
    let response = platform.identity_client().await.get_patient(request).await;
    response
        .expect("the patient")
        .into_inner()
        .patient
        .expect("a patient")
}

/// Gives `patient` the NHS number `number`; returns the patient as identity now holds them.
async fn renumber(platform: &Platform, patient: Patient, number: &str) -> Patient {
    let etag = patient.etag.clone();
    let request = UpdatePatientRequest {
        patient: Some(Patient {
            nhs_number: number.to_owned(),
            ..patient
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["nhs_number".into()],
        }),
        etag,
        requester: Some(clerk()),
        reason: "NHS number corrected".into(),
    };
    platform
        .identity_client()
        .await
        .update_patient(request)
        .await
        .unwrap_or_else(|s| panic!("{:?}: renumbering failed: {s:?}", platform.backend))
        .into_inner()
        .patient
        .expect("the updated patient")
}

#[tokio::test]
async fn a_read_by_nhs_number_never_resolves_from_before_an_acknowledged_renumbering() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let platform = Arc::new(platform);
        let (first_id, number) = platform.register_patient("Ada", "Renumbered").await;
        let number_read = number.clone();
        let (second_id, _) = platform.register_patient("Grace", "Renumbered").await;
        let mut first = patient(&platform, &first_id).await;
        let mut second = patient(&platform, &second_id).await;
        // Who holds `number` once each move is acknowledged (None: nobody).
        let holders = Timeline::new(Some(first_id.clone()));
        let clinician = token("R8000", "user/*.rs");
        let read: Read<Option<String>> = Arc::new(move |mut client: Client| {
            let request = authed(read_request(by_nhs(&number_read), "TREAT"), &clinician);
            Box::pin(async move {
                match client.read_patient_record(request).await {
                    Ok(response) => Some(response.into_inner().patient_id),
                    Err(s) if s.code() == Code::NotFound => None,
                    Err(s) => panic!("read failed: {s:?}"),
                }
            })
        });
        let readers = holders.start_readers(&platform, read);
        let mut spare = fresh_nhs_number();
        for _ in 0..MOVES {
            tokio::time::sleep(Duration::from_millis(20)).await;
            // The holder gives the number up for a free one, then the other patient takes it.
            first = renumber(&platform, first, &spare).await;
            holders.now_shows(None);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let freed = second.nhs_number.clone();
            second = renumber(&platform, second, &number).await;
            holders.now_shows(Some(second.patient_id.clone()));
            spare = freed;
            std::mem::swap(&mut first, &mut second);
        }
        holders.check(readers, &platform).await;
    }
}

/// Records the patient's dissent (a DENY directive); returns the directive as consent keeps it.
async fn dissent(platform: &Platform, patient_id: &str) -> ConsentDirective {
    let directive = ConsentDirective {
        patient_id: patient_id.into(),
        status: ConsentDirectiveStatus::Active as i32,
        decision: ConsentDecision::Deny as i32,
        date_time: Some(std::time::SystemTime::now().into()),
        ..Default::default()
    };
    let request = CreateConsentDirectiveRequest {
        request_id: uuid(),
        directive: Some(directive),
        requester: Some(clerk()),
    };
    let response = platform
        .consent_client()
        .await
        .create_consent_directive(request)
        .await;
    response
        .unwrap_or_else(|s| panic!("{:?}: recording dissent failed: {s:?}", platform.backend))
        .into_inner()
        .directive
        .expect("the directive")
}

async fn revoke(platform: &Platform, directive: ConsentDirective) {
    let request = RevokeConsentDirectiveRequest {
        directive_id: directive.directive_id,
        etag: directive.etag,
        reason: "dissent withdrawn".into(),
        requester: Some(clerk()),
    };
    let response = platform
        .consent_client()
        .await
        .revoke_consent_directive(request)
        .await;
    if let Err(s) = response {
        panic!("{:?}: revoking failed: {s:?}", platform.backend);
    }
}

#[tokio::test]
async fn a_read_is_never_decided_from_before_an_acknowledged_consent_write() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let platform = Arc::new(platform);
        let (patient_id, _) = platform.register_patient("Ada", "Dissenting").await;
        // Whether reads are permitted once each consent write is acknowledged.
        let permitted = Timeline::new(true);
        let clinician = token("R8000", "user/*.rs");
        let reference = patient_id.clone();
        let read: Read<bool> = Arc::new(move |mut client: Client| {
            let request = authed(read_request(by_id(&reference), "TREAT"), &clinician);
            Box::pin(async move {
                match client.read_patient_record(request).await {
                    Ok(_) => true,
                    Err(s) if s.code() == Code::PermissionDenied => false,
                    Err(s) => panic!("read failed: {s:?}"),
                }
            })
        });
        let readers = permitted.start_readers(&platform, read);
        for _ in 0..MOVES {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let directive = dissent(&platform, &patient_id).await;
            permitted.now_shows(false);
            tokio::time::sleep(Duration::from_millis(20)).await;
            revoke(&platform, directive).await;
            permitted.now_shows(true);
        }
        permitted.check(readers, &platform).await;
    }
}
