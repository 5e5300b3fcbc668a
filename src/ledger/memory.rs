//! The in-memory ledger: the claim protocol over a map, for replays and tests.
//!
//! It follows the same rules as the DynamoDB ledger (claims, tokens, leases), so the pipeline
//! behaves the same on a laptop as in Lambda; it forgets everything when the process ends.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use jiff::{SignedDuration, Timestamp};

use super::{Claim, ClaimRequest, ClaimToken, Held, Ledger, LedgerError};

/// Keys of each conversation, in memory.
#[derive(Debug)]
pub struct MemoryLedger {
    lease: SignedDuration,
    conversations: Mutex<HashMap<String, HashMap<String, State>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Claimed {
        token: ClaimToken,
        lease_expires: Timestamp,
    },
    Delivered,
}

impl MemoryLedger {
    /// A ledger whose claims expire `lease` after they are taken.
    pub fn new(lease: SignedDuration) -> Self {
        MemoryLedger {
            lease,
            conversations: Mutex::default(),
        }
    }

    /// How many keys are recorded as delivered.
    pub fn delivered(&self) -> usize {
        self.lock()
            .values()
            .flat_map(HashMap::values)
            .filter(|state| **state == State::Delivered)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, State>>> {
        // A panic elsewhere cannot leave a half-written entry: every update is one insert.
        self.conversations.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryLedger {
    /// Claims that last 15 minutes, like a Lambda invocation at most.
    fn default() -> Self {
        MemoryLedger::new(SignedDuration::from_mins(15))
    }
}

impl Ledger for MemoryLedger {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, LedgerError> {
        let token = ClaimToken::random();
        let lease_expires = request.now.saturating_add(self.lease).unwrap_or(Timestamp::MAX);
        let mut conversations = self.lock();
        // Look up before inserting: most claims find their conversation, and need no copy of its id.
        if !conversations.contains_key(request.conversation_id) {
            conversations.insert(request.conversation_id.to_owned(), HashMap::new());
        }
        let Some(keys) = conversations.get_mut(request.conversation_id) else {
            return Ok(Claim {
                token,
                won: Vec::new(),
            });
        };
        let mut won = Vec::new();
        for (index, metric) in request.keys.iter().enumerate() {
            let claimable = match keys.get(metric.key) {
                None => true,
                Some(State::Claimed { lease_expires, .. }) => *lease_expires < request.now,
                Some(State::Delivered) => false,
            };
            if claimable {
                let claimed = State::Claimed {
                    token: token.clone(),
                    lease_expires,
                };
                keys.insert(metric.key.to_owned(), claimed);
                won.push(index);
            }
        }
        Ok(Claim { token, won })
    }

    async fn confirm(&self, held: Held<'_>) -> Result<Vec<String>, LedgerError> {
        let mut conversations = self.lock();
        let mut keys = conversations.get_mut(held.conversation_id);
        let mut lost = Vec::new();
        for key in held.keys {
            match keys.as_mut().and_then(|keys| keys.get_mut(*key)) {
                Some(state) if holds(state, held.token) => *state = State::Delivered,
                _ => lost.push((*key).to_owned()),
            }
        }
        Ok(lost)
    }

    async fn release(&self, held: Held<'_>) -> Result<(), LedgerError> {
        let mut conversations = self.lock();
        if let Some(keys) = conversations.get_mut(held.conversation_id) {
            for key in held.keys {
                if keys.get(*key).is_some_and(|state| holds(state, held.token)) {
                    keys.remove(*key);
                }
            }
        }
        Ok(())
    }
}

fn holds(state: &State, token: &ClaimToken) -> bool {
    matches!(state, State::Claimed { token: holder, .. } if holder == token)
}
