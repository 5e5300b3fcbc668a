//! Keys the sink accepted whose confirm failed (a ledger brownout outlasting the invocation):
//! the process keeps them, and confirms them first on its next batch, before it claims anything,
//! so that it never pushes again a key it delivered. A confirm is conditional on the claim's
//! token alone, so it succeeds however late, unless another holder took the key once its lease
//! was over; that holder knew the key may have been pushed, and counted it as a possible double.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures::{StreamExt, stream};
use jiff::Timestamp;
use tokio::time::Instant;

use super::Pipeline;
use crate::ledger::{ClaimToken, Held, Ledger, LedgerError};
use crate::sink::Sink;
use crate::timing::jittered;

/// Kept groups confirmed at once.
const CONCURRENCY: usize = 8;

/// First and longest pause between two rounds of late confirms at the end of a replay.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// One event's keys pushed and not yet confirmed.
#[derive(Debug)]
struct Kept {
    conversation_id: String,
    keys: Vec<String>,
    token: ClaimToken,
    possibly_doubled: bool,
}

/// The keys this process pushed and could not confirm yet.
#[derive(Debug, Default)]
pub(super) struct Unconfirmed(Mutex<Vec<Kept>>);

impl Unconfirmed {
    /// Keeps keys whose confirm failed, saying so.
    pub(super) fn keep(
        &self,
        conversation_id: &str,
        keys: &[&str],
        token: &ClaimToken,
        possibly_doubled: bool,
        error: &LedgerError,
    ) {
        tracing::error!(
            conversation_id,
            keys = keys.len(),
            %error,
            "pushed keys could not be confirmed: kept, to be confirmed before the next batch \
             claims anything; until then they stay claimed, and once the lease ends another \
             process may push them again (it would log them as possibly doubled)"
        );
        self.lock().push(Kept {
            conversation_id: conversation_id.to_owned(),
            keys: keys.iter().map(|key| (*key).to_owned()).collect(),
            token: token.clone(),
            possibly_doubled,
        });
    }

    /// How many keys wait to be confirmed.
    pub(super) fn keys(&self) -> usize {
        self.lock().iter().map(|kept| kept.keys.len()).sum()
    }

    fn take(&self) -> Vec<Kept> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        // Every change is one push or one swap: a panic elsewhere leaves the list whole.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<L: Ledger, S: Sink> Pipeline<L, S> {
    /// Confirms the keys kept unconfirmed, one attempt each; returns how many keys still wait.
    pub(super) async fn confirm_kept(&self, now: Timestamp) -> usize {
        let kept = self.unconfirmed.take();
        if kept.is_empty() {
            return 0;
        }
        let attempts: Vec<_> = kept
            .into_iter()
            .map(|kept| self.confirm_late(kept, now))
            .collect();
        let still: Vec<Option<Kept>> = stream::iter(attempts)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut unconfirmed = self.unconfirmed.lock();
        unconfirmed.extend(still.into_iter().flatten());
        unconfirmed.iter().map(|kept| kept.keys.len()).sum()
    }

    /// Confirms the kept keys, retrying with backoff until none waits or `until` comes: what a
    /// replay does before it ends. Returns how many keys still wait.
    pub async fn confirm_kept_until(&self, until: Instant) -> usize {
        let mut pause = FIRST_RETRY;
        loop {
            let left = self.confirm_kept(Timestamp::now()).await;
            let retry_at = Instant::now() + jittered(pause);
            if left == 0 || retry_at >= until {
                return left;
            }
            tokio::time::sleep_until(retry_at).await;
            pause = (pause * 2).min(LONGEST_RETRY);
        }
    }

    /// How many keys this process pushed and has not confirmed yet.
    pub fn unconfirmed_keys(&self) -> usize {
        self.unconfirmed.keys()
    }

    /// One late confirm: the group back if it must wait longer.
    async fn confirm_late(&self, kept: Kept, now: Timestamp) -> Option<Kept> {
        let keys: Vec<&str> = kept.keys.iter().map(String::as_str).collect();
        let held = Held {
            conversation_id: &kept.conversation_id,
            keys: &keys,
            token: &kept.token,
            now,
        };
        match self.ledger.confirm(held, kept.possibly_doubled).await {
            Ok(lost) => {
                tracing::info!(
                    conversation_id = kept.conversation_id,
                    keys = keys.len() - lost.len(),
                    "pushed keys confirmed late"
                );
                if !lost.is_empty() {
                    tracing::warn!(
                        conversation_id = kept.conversation_id,
                        ?lost,
                        "confirmed too late: another holder took these keys once their lease was \
                         over, and pushed them again"
                    );
                }
                None
            }
            Err(error) if error.is_transient() => Some(kept),
            Err(error) => {
                tracing::error!(
                    conversation_id = kept.conversation_id,
                    %error,
                    "pushed keys cannot be confirmed: the ledger refuses; they stay claimed until \
                     the lease ends"
                );
                None
            }
        }
    }
}
