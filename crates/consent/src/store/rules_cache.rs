//! Compiled directive rules by their stored bytes, shared by every read of a decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use carerecord_contracts::consent::v1::ConsentDirective;
use prost::Message;

use crate::domain::decide::CompiledRules;
use crate::error::Error;

/// Distinct compiled rules kept before the cache is emptied.
const CAPACITY: usize = 100_000;

/// Content-addressed, so never stale; bounded by clearing.
#[derive(Debug, Clone, Default)]
pub(super) struct RulesCache(Arc<Mutex<HashMap<Vec<u8>, Arc<CompiledRules>>>>);

impl RulesCache {
    /// The cache, held while one statement's rows are compiled.
    pub(super) fn lock(&self) -> Compiler<'_> {
        Compiler(self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

pub(super) struct Compiler<'a>(MutexGuard<'a, HashMap<Vec<u8>, Arc<CompiledRules>>>);

impl Compiler<'_> {
    /// Compiles rules, or reuses the compilation of identical bytes.
    pub(super) fn compiled(&mut self, bytes: Vec<u8>) -> Result<Arc<CompiledRules>, Error> {
        if let Some(rules) = self.0.get(&bytes) {
            return Ok(rules.clone());
        }
        let rules = Arc::new(CompiledRules::compile(&ConsentDirective::decode(
            bytes.as_slice(),
        )?));
        if self.0.len() >= CAPACITY {
            self.0.clear();
        }
        self.0.insert(bytes, rules.clone());
        Ok(rules)
    }
}
