//! The in-memory ledger: the claim protocol over a map, for replays and tests.
//!
//! [`MemoryStore`] keeps records as DynamoDB would, with the same conditions on every write, so
//! the pipeline behaves the same on a laptop as in Lambda. It forgets everything when the
//! process ends, and nothing before.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use jiff::SignedDuration;

use super::store::{ItemStore, KeyLedger, KeyRecord, NewClaim, PutClaim, Update};
use super::{ClaimToken, LedgerError};

/// The claim protocol over memory.
pub type MemoryLedger = KeyLedger<MemoryStore>;

/// Records of each conversation, in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    conversations: Mutex<HashMap<String, HashMap<String, KeyRecord>>>,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<String, KeyRecord>>> {
        // A panic elsewhere cannot leave a half-written record: every update is one assignment.
        self.conversations.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many keys are recorded as delivered.
    pub fn delivered(&self) -> usize {
        self.lock()
            .values()
            .flat_map(HashMap::values)
            .filter(|record| record.delivered)
            .count()
    }
}

impl KeyLedger<MemoryStore> {
    /// A ledger whose claims expire `lease` after they are taken.
    pub fn new(lease: SignedDuration) -> Self {
        KeyLedger::with_store(MemoryStore::default(), lease)
    }

    /// How many keys are recorded as delivered.
    pub fn delivered(&self) -> usize {
        self.store().delivered()
    }
}

impl Default for KeyLedger<MemoryStore> {
    /// Claims that last as long as the Lambda's, by default.
    fn default() -> Self {
        MemoryLedger::new(crate::timing::DEFAULT_LEASE)
    }
}

fn held_by(record: &KeyRecord, token: &ClaimToken) -> bool {
    record.token.as_deref() == Some(token.0.as_str())
}

impl ItemStore for MemoryStore {
    async fn read(&self, conversation_id: &str) -> Result<HashMap<String, KeyRecord>, LedgerError> {
        Ok(self.lock().get(conversation_id).cloned().unwrap_or_default())
    }

    async fn put_claim(&self, claim: &NewClaim<'_>, now_ms: i64) -> Result<PutClaim, LedgerError> {
        let mut conversations = self.lock();
        // Look up before inserting: most claims find their conversation, and need no copy of its id.
        if !conversations.contains_key(claim.conversation_id) {
            conversations.insert(claim.conversation_id.to_owned(), HashMap::new());
        }
        let Some(keys) = conversations.get_mut(claim.conversation_id) else {
            return Ok(PutClaim::Written { replaced: None });
        };
        if let Some(found) = keys.get(claim.key.key) {
            let expired = !found.delivered && found.lease_expires_ms.is_some_and(|lease| lease < now_ms);
            if !expired {
                return Ok(PutClaim::Found(found.clone()));
            }
        }
        let record = KeyRecord {
            delivered: false,
            token: Some(claim.token.0.clone()),
            lease_expires_ms: Some(claim.lease_expires_ms),
            maybe_delivered: false,
        };
        let replaced = keys.insert(claim.key.key.to_owned(), record);
        Ok(PutClaim::Written { replaced })
    }

    async fn mark_delivered(
        &self,
        key: &Update<'_>,
        _now_ms: i64,
        _possibly_doubled: bool,
    ) -> Result<bool, LedgerError> {
        let mut conversations = self.lock();
        match conversations
            .get_mut(key.conversation_id)
            .and_then(|keys| keys.get_mut(key.key))
        {
            Some(record) if held_by(record, key.token) => {
                record.delivered = true;
                record.lease_expires_ms = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, key: &Update<'_>, maybe_delivered: bool) -> Result<bool, LedgerError> {
        let mut conversations = self.lock();
        match conversations
            .get_mut(key.conversation_id)
            .and_then(|keys| keys.get_mut(key.key))
        {
            Some(record) if !record.delivered && held_by(record, key.token) => {
                record.token = None;
                record.lease_expires_ms = Some(0);
                record.maybe_delivered |= maybe_delivered;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn retention(&self) -> Option<SignedDuration> {
        None
    }
}
