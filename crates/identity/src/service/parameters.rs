//! The current match parameters and their model, cached briefly so that a match costs one query,
//! and the index's name frequencies, counted now and then.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use carerecord_contracts::identity::v1::MatchParameters;
use tokio::sync::RwLock;

use crate::convert::model_of;
use crate::domain::model::Model;
use crate::domain::score::NameFrequencies;
use crate::error::Error;
use crate::store::Store;

/// How long a replica matches with parameters another replica may have replaced.
const CACHE_FOR: Duration = Duration::from_secs(5);

/// The current parameters and their model.
pub type Current = Arc<(MatchParameters, Model)>;

#[derive(Debug)]
pub struct CurrentParameters {
    store: Store,
    cache: RwLock<Option<(Instant, Current)>>,
}

impl CurrentParameters {
    pub fn new(store: Store) -> Self {
        CurrentParameters {
            store,
            cache: RwLock::new(None),
        }
    }

    /// The current parameters; MATCH_PARAMETERS_MISSING before there are any.
    pub async fn get(&self) -> Result<Current, Error> {
        if let Some((at, cached)) = self.cache.read().await.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Ok(cached.clone());
        }
        let params = self
            .store
            .parameters(None)
            .await?
            .ok_or(Error::ParametersMissing)?;
        let model = model_of(&params);
        let entry = Arc::new((params, model));
        *self.cache.write().await = Some((Instant::now(), entry.clone()));
        Ok(entry)
    }

    /// Forgets the cached parameters, after new ones were stored.
    pub async fn forget(&self) {
        *self.cache.write().await = None;
    }
}

/// How long name frequencies are used before they are counted again (in the background).
const FREQUENCIES_FOR: Duration = Duration::from_secs(300);

/// The index's name frequencies, for term-frequency adjustment: counted at the first match,
/// then again in the background when older than a few minutes.
#[derive(Debug)]
pub struct CurrentFrequencies {
    store: Store,
    cache: RwLock<Option<(Instant, Arc<NameFrequencies>)>>,
    refreshing: AtomicBool,
    /// Held by the first count, so that concurrent first matches count once.
    first: tokio::sync::Mutex<()>,
}

impl CurrentFrequencies {
    pub fn new(store: Store) -> Self {
        CurrentFrequencies {
            store,
            cache: RwLock::new(None),
            refreshing: AtomicBool::new(false),
            first: tokio::sync::Mutex::new(()),
        }
    }

    pub async fn get(self: &Arc<Self>) -> Result<Arc<NameFrequencies>, Error> {
        if let Some((at, cached)) = self.cache.read().await.as_ref() {
            if at.elapsed() > FREQUENCIES_FOR && !self.refreshing.swap(true, Ordering::AcqRel) {
                let this = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = this.count().await {
                        tracing::warn!(error = %e, "counting name frequencies failed");
                    }
                    this.refreshing.store(false, Ordering::Release);
                });
            }
            return Ok(cached.clone());
        }
        let _first = self.first.lock().await;
        if let Some((_, cached)) = self.cache.read().await.as_ref() {
            return Ok(cached.clone());
        }
        self.count().await
    }

    async fn count(&self) -> Result<Arc<NameFrequencies>, Error> {
        let (given, family) = self.store.name_counts().await?;
        let frequencies = Arc::new(NameFrequencies::new(given, family));
        *self.cache.write().await = Some((Instant::now(), frequencies.clone()));
        Ok(frequencies)
    }
}
