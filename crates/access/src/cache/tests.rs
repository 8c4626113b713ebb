use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::*;

type Cache = ValidatedCache<String, u32>;

/// A listing that answers `tags` and moves the cursor on by one.
fn listing(
    tags: &[&str],
    more: bool,
) -> impl FnOnce(String) -> std::future::Ready<Result<Changes, Status>> {
    let tags = tags.iter().map(|t| t.to_string()).collect();
    move |cursor: String| {
        std::future::ready(Ok(Changes {
            tags,
            next_cursor: format!("{cursor}+"),
            more,
        }))
    }
}

fn quiet() -> impl FnOnce(String) -> std::future::Ready<Result<Changes, Status>> {
    listing(&[], false)
}

#[tokio::test]
async fn an_answer_kept_after_a_check_is_used_until_a_change_touches_it() {
    let cache = Cache::new("test", 100);
    let checked = cache.validate(quiet()).await;
    assert!(matches!(checked, Checked::Valid(1)));
    assert_eq!(cache.get(checked, &"nhs:1".into()), None);
    cache.insert(checked, "nhs:1".into(), 7, vec!["patient-a".into()]);
    cache.insert(checked, "nhs:2".into(), 8, vec!["patient-b".into()]);

    let checked = cache.validate(quiet()).await;
    assert_eq!(cache.get(checked, &"nhs:1".into()), Some(7));

    let checked = cache.validate(listing(&["patient-a"], false)).await;
    assert_eq!(
        cache.get(checked, &"nhs:1".into()),
        None,
        "patient-a changed"
    );
    assert_eq!(cache.get(checked, &"nhs:2".into()), Some(8));
    let counts = cache.counts();
    assert_eq!(
        (counts.hits, counts.misses, counts.checks, counts.dropped),
        (2, 2, 3, 1)
    );
}

#[tokio::test]
async fn each_check_lists_from_where_the_last_one_ended() {
    let cache = Cache::new("test", 100);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..3 {
        let seen = seen.clone();
        cache
            .validate(move |cursor: String| {
                seen.lock().unwrap().push(cursor.clone());
                std::future::ready(Ok(Changes {
                    tags: Vec::new(),
                    next_cursor: format!("{cursor}+"),
                    more: false,
                }))
            })
            .await;
    }
    assert_eq!(*seen.lock().unwrap(), ["", "+", "++"]);
}

#[tokio::test]
async fn a_listing_with_more_than_a_page_drops_everything() {
    let cache = Cache::new("test", 100);
    let checked = cache.validate(quiet()).await;
    cache.insert(checked, "a".into(), 1, vec!["x".into()]);
    cache.insert(checked, "b".into(), 2, vec!["y".into()]);
    let checked = cache.validate(listing(&[], true)).await;
    assert!(matches!(checked, Checked::Valid(_)));
    assert_eq!(cache.len(), 0);
}

#[tokio::test]
async fn an_answer_fetched_while_a_check_listed_its_change_is_not_kept() {
    let cache = Cache::new("test", 100);
    let checked = cache.validate(quiet()).await;
    // Other calls' checks complete while this call's answers are being fetched; one lists "x".
    cache.validate(listing(&["y"], false)).await;
    cache.validate(listing(&["x"], false)).await;
    cache.insert(checked, "a".into(), 1, vec!["x".into()]);
    assert_eq!(cache.len(), 0, "may predate the change to x");
    cache.insert(checked, "b".into(), 2, vec!["z".into()]);
    let checked = cache.validate(quiet()).await;
    assert_eq!(
        cache.get(checked, &"b".into()),
        Some(2),
        "nothing it depends on changed"
    );
}

#[tokio::test]
async fn an_answer_fetched_while_a_check_dropped_everything_is_not_kept() {
    let cache = Cache::new("test", 100);
    let checked = cache.validate(quiet()).await;
    cache.validate(listing(&[], true)).await;
    cache.insert(checked, "a".into(), 1, vec!["x".into()]);
    assert_eq!(cache.len(), 0);
}

#[tokio::test]
async fn an_answer_fetched_over_more_checks_than_are_remembered_is_not_kept() {
    let cache = Cache::new("test", 100);
    let checked = cache.validate(quiet()).await;
    for _ in 0..=REMEMBERED_CHECKS {
        cache.validate(quiet()).await;
    }
    cache.insert(checked, "a".into(), 1, vec!["x".into()]);
    assert_eq!(cache.len(), 0);
}

#[tokio::test]
async fn a_check_whose_caller_went_away_does_not_stop_the_next_serving_many() {
    let cache = Arc::new(Cache::new("test", 100));
    cache.validate(quiet()).await;
    // A check abandoned mid-listing.
    let abandoned = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .validate(|_| std::future::pending::<Result<Changes, Status>>())
                .await
        })
    };
    while cache.counts().checks < 2 {
        tokio::task::yield_now().await;
    }
    abandoned.abort();
    let _ = abandoned.await;
    assert_eq!(cache.validate(quiet()).await, Checked::Valid(3));
    // Calls arriving during the next check are still served together by the one after it.
    let (first, waiting) = calls_during_a_check(&cache, 5).await;
    assert_eq!(first, Checked::Valid(4));
    assert_eq!(waiting, [Checked::Valid(5); 5]);
}

#[tokio::test]
async fn a_module_without_the_listing_turns_the_cache_off() {
    let cache = Cache::new("test", 100);
    let checked = cache.validate(quiet()).await;
    cache.insert(checked, "a".into(), 1, vec![]);
    let checked = cache
        .validate(|_| std::future::ready(Err(Status::unimplemented("no listing"))))
        .await;
    assert_eq!(checked, Checked::Bypass);
    assert_eq!(cache.len(), 0);
    let listed = Arc::new(AtomicUsize::new(0));
    let counted = listed.clone();
    let checked = cache
        .validate(move |cursor| {
            counted.fetch_add(1, Ordering::Relaxed);
            quiet()(cursor)
        })
        .await;
    assert_eq!(checked, Checked::Bypass, "off for good");
    assert_eq!(listed.load(Ordering::Relaxed), 0, "never asked again");
    cache.insert(checked, "a".into(), 1, vec![]);
    assert_eq!(cache.len(), 0);
}

#[tokio::test]
async fn a_failed_check_bypasses_the_cache_for_its_calls_only() {
    let cache = Cache::new("test", 100);
    let checked = cache.validate(quiet()).await;
    cache.insert(checked, "a".into(), 1, vec![]);
    let checked = cache
        .validate(|_| std::future::ready(Err(Status::unavailable("down"))))
        .await;
    assert_eq!(checked, Checked::Bypass);
    assert_eq!(cache.get(checked, &"a".into()), None);
    let checked = cache.validate(quiet()).await;
    assert_eq!(cache.get(checked, &"a".into()), Some(1));
}

#[tokio::test]
async fn a_listing_without_a_cursor_turns_the_cache_off() {
    let cache = Cache::new("test", 100);
    let checked = cache
        .validate(|_| std::future::ready(Ok(Changes::default())))
        .await;
    assert_eq!(checked, Checked::Bypass);
    assert_eq!(cache.validate(quiet()).await, Checked::Bypass);
}

#[tokio::test]
async fn capacity_zero_is_off() {
    let cache = Cache::new("test", 0);
    assert_eq!(cache.validate(quiet()).await, Checked::Bypass);
}

#[tokio::test]
async fn the_cache_holds_at_most_its_capacity() {
    let cache = Cache::new("test", 16);
    let checked = cache.validate(quiet()).await;
    for i in 0..100u32 {
        cache.insert(checked, i.to_string(), i, vec![format!("tag{}", i % 3)]);
        assert!(cache.len() <= 16);
    }
    // The tag index forgets evicted answers: dropping a tag drops only what is kept.
    let kept = cache.len();
    let checked = cache
        .validate(listing(&["tag0", "tag1", "tag2"], false))
        .await;
    assert!(matches!(checked, Checked::Valid(_)));
    assert_eq!(cache.counts().dropped, kept as u64);
    assert_eq!(cache.len(), 0);
}

/// Runs a check held up until `callers` more calls have arrived, then lets it end: what it and
/// each of those calls were answered.
async fn calls_during_a_check(cache: &Arc<Cache>, callers: usize) -> (Checked, Vec<Checked>) {
    let begun = cache.counts().checks;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let first = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .validate(move |cursor| async move {
                    let _ = released.await;
                    Ok(Changes {
                        tags: Vec::new(),
                        next_cursor: format!("{cursor}+"),
                        more: false,
                    })
                })
                .await
        })
    };
    while cache.counts().checks == begun {
        tokio::task::yield_now().await;
    }
    let waiting: Vec<_> = (0..callers)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.validate(quiet()).await })
        })
        .collect();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    let first = first.await.unwrap();
    let mut answers = Vec::new();
    for call in waiting {
        answers.push(call.await.unwrap());
    }
    (first, answers)
}

/// Calls that arrive while a check runs wait for the next one (which began after they arrived),
/// and that one check serves them all.
#[tokio::test]
async fn calls_arriving_during_a_check_share_the_next_one() {
    let cache = Arc::new(Cache::new("test", 100));
    let (first, waiting) = calls_during_a_check(&cache, 10).await;
    assert_eq!(first, Checked::Valid(1));
    assert_eq!(
        waiting,
        [Checked::Valid(2); 10],
        "served by the second check"
    );
    assert_eq!(cache.counts().checks, 2);
}

#[tokio::test]
async fn lookups_checks_and_drops_are_reported_as_metrics() {
    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter.clone())
        .build();
    let cache = Cache::with_meter("test", 100, &provider.meter("test"));
    let checked = cache.validate(quiet()).await;
    cache.get(checked, &"a".into());
    cache.insert(checked, "a".into(), 1, vec!["x".into()]);
    let checked = cache.validate(listing(&[], false)).await;
    cache.get(checked, &"a".into());
    cache.validate(listing(&["x"], false)).await;
    provider.force_flush().unwrap();
    let mut seen = Vec::new();
    for resource in exporter.get_finished_metrics().unwrap() {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics() {
                if let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() {
                    for point in sum.data_points() {
                        let outcome = point
                            .attributes()
                            .find(|kv| kv.key.as_str() == "outcome")
                            .map(|kv| kv.value.to_string())
                            .unwrap_or_default();
                        assert!(point.attributes().any(|kv| kv.key.as_str() == "cache"));
                        seen.push((metric.name().to_owned(), outcome, point.value()));
                    }
                }
            }
        }
    }
    seen.sort();
    let expected = [
        ("carerecord.access.cache.checks", "", 3),
        ("carerecord.access.cache.dropped", "", 1),
        ("carerecord.access.cache.lookups", "bypass", 0),
        ("carerecord.access.cache.lookups", "hit", 1),
        ("carerecord.access.cache.lookups", "miss", 1),
    ]
    .map(|(name, outcome, value)| (name.to_owned(), outcome.to_owned(), value));
    assert_eq!(seen, expected);
}
