//! The current match parameters and their model, cached briefly so that a match costs one query.

use std::sync::Arc;
use std::time::{Duration, Instant};

use carerecord_contracts::identity::v1::MatchParameters;
use tokio::sync::RwLock;

use crate::convert::model_of;
use crate::domain::model::Model;
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
