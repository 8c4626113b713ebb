use super::*;
use crate::domain::record::{Actor, RecordFields};

fn event(seq: i64, patient: &str, payload: &[u8]) -> Version {
    Version {
        record_id: format!("r{seq}"),
        version: 1,
        seq,
        creation_seq: seq,
        change_type: 1,
        status: 1,
        retraction_reason: String::new(),
        fields: RecordFields {
            patient_id: patient.to_owned(),
            resource_type: "Observation".to_owned(),
            payload: payload.to_vec(),
            content_hash: String::new(),
            data_classes: String::new(),
            authoring_org: "RR8".to_owned(),
            author: String::new(),
            source_system: "test".to_owned(),
            effective_time: None,
            recorded_time: Some(0),
            terms: Default::default(),
        },
        payload_size: payload.len() as i64,
        recorded_time: 0,
        create_time: 0,
        update_time: 0,
        requester: Actor::default(),
    }
}

fn hub() -> FeedHub {
    FeedHub::idle()
}

fn seqs(taken: &Taken) -> Vec<i64> {
    taken.rows.iter().map(|v| v.seq).collect()
}

fn everyone() -> FeedFilter {
    FeedFilter::default()
}

#[test]
fn a_window_serves_positions_inside_it_and_refuses_others() {
    let hub = hub();
    let metadata = hub.register(false);
    assert!(
        metadata.take(0, &everyone(), 100, 1 << 20).is_none(),
        "not live yet"
    );
    hub.shared.lock().restart(10);
    // Events 11, 13, 14 (12 belongs to no one: sequences need not be contiguous).
    let events = vec![
        event(11, "a", b"x"),
        event(13, "b", b"y"),
        event(14, "a", b"z"),
    ];
    hub.shared.lock().append(10, 15, events, false);

    assert!(
        metadata.take(9, &everyone(), 100, 1 << 20).is_none(),
        "behind the window"
    );
    let all = metadata.take(10, &everyone(), 100, 1 << 20).unwrap();
    assert_eq!(
        (seqs(&all), all.head, all.full),
        (vec![11, 13, 14], 15, false)
    );
    assert!(all.rows.iter().all(|v| v.fields.payload.is_empty()));
    let after = metadata.take(12, &everyone(), 100, 1 << 20).unwrap();
    assert_eq!(seqs(&after), [13, 14]);
    let beyond = metadata.take(20, &everyone(), 100, 1 << 20).unwrap();
    assert_eq!((beyond.rows.len(), beyond.head), (0, 20));

    let only_a = FeedFilter {
        patient_ids: vec!["a".to_owned()],
        resource_types: Vec::new(),
    };
    let mine = metadata.take(10, &only_a, 1, 1 << 20).unwrap();
    assert_eq!((seqs(&mine), mine.full), (vec![11], true));
    let rest = metadata.take(11, &only_a, 1, 1 << 20).unwrap();
    assert_eq!((seqs(&rest), rest.full), (vec![14], true));

    // The full view needs events read with payloads: these were not.
    let full = hub.register(true);
    assert!(full.take(10, &everyone(), 100, 1 << 20).is_none());
    hub.shared
        .lock()
        .append(15, 17, vec![event(16, "b", b"payload")], true);
    assert!(full.take(14, &everyone(), 100, 1 << 20).is_none());
    let with_payload = full.take(15, &everyone(), 100, 1 << 20).unwrap();
    assert_eq!(with_payload.rows[0].fields.payload, b"payload");
    // A message stops at the payload budget, after at least one row.
    hub.shared
        .lock()
        .append(17, 19, vec![event(18, "b", b"more")], true);
    let budgeted = full.take(15, &everyone(), 100, 8).unwrap();
    assert_eq!((seqs(&budgeted), budgeted.full), (vec![16], true));
    // The metadata view of the same events leaves payloads out.
    assert!(
        metadata.take(15, &everyone(), 100, 0).unwrap().rows[0]
            .fields
            .payload
            .is_empty()
    );
}

#[test]
fn the_oldest_events_leave_a_full_window() {
    let hub = hub();
    hub.shared.lock().restart(0);
    let events: Vec<Version> = (1..=WINDOW_EVENTS as i64 + 5)
        .map(|seq| event(seq, "a", b""))
        .collect();
    hub.shared
        .lock()
        .append(0, WINDOW_EVENTS as i64 + 5, events, false);
    let registration = hub.register(false);
    assert!(registration.take(4, &everyone(), 100, 0).is_none());
    let first = registration.take(5, &everyone(), 100, 0).unwrap();
    assert_eq!(first.rows[0].seq, 6);
    // Nobody watching: the window is dropped, and restarts empty at the head.
    hub.shared.lock().stop();
    assert!(registration.take(5, &everyone(), 100, 0).is_none());
}

#[test]
fn registrations_are_counted_until_dropped() {
    let hub = hub();
    let full = hub.register(true);
    let metadata = hub.register(false);
    let count = |hub: &FeedHub| {
        (
            hub.shared.watchers.load(Ordering::SeqCst),
            hub.shared.full_watchers.load(Ordering::SeqCst),
        )
    };
    assert_eq!(count(&hub), (2, 1));
    drop(full);
    assert_eq!(count(&hub), (1, 0));
    drop(metadata);
    assert_eq!(count(&hub), (0, 0));
}
