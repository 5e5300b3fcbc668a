//! Names kept for the fleet: every function instance reads the names others fetched, so that a
//! cold start knows them at once and asks Genesys only for what no one has fetched yet.
//!
//! A [`NameStore`] is the port: [`NameStore::load_all`] (once, at cold start) and
//! [`NameStore::put`] (after each fetch; the last writer wins). The DynamoDB adapter keeps them
//! in the ledger table (`crate::ledger::dynamodb::DynamoDbNameStore`); [`MemoryNameStore`] is
//! for tests and runs without a table.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use futures::future::BoxFuture;
use jiff::Timestamp;

use super::NameKind;

/// A name as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredName {
    pub kind: NameKind,
    pub id: String,
    pub name: String,
    /// When Genesys gave it: it is fresh for the names TTL from then.
    pub fetched_at: Timestamp,
}

/// Why the store could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameStoreError {
    #[error("{operation} of the names failed: {message}")]
    Request {
        operation: &'static str,
        message: String,
    },
}

/// Where names are kept for every instance.
pub trait NameStore: Send + Sync + fmt::Debug {
    /// Every name kept (not yet expired), all pages.
    fn load_all(&self) -> BoxFuture<'_, Result<Vec<StoredName>, NameStoreError>>;

    /// Keeps a name fetched from Genesys, replacing the one kept for its id.
    fn put<'a>(&'a self, name: &'a StoredName) -> BoxFuture<'a, Result<(), NameStoreError>>;
}

/// Names in memory, counting how often they were loaded and written.
#[derive(Debug, Default)]
pub struct MemoryNameStore {
    names: Mutex<BTreeMap<(String, String), StoredName>>,
    loads: AtomicUsize,
    puts: AtomicUsize,
}

impl MemoryNameStore {
    /// Every name kept, in (kind, id) order.
    pub fn names(&self) -> Vec<StoredName> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.values().cloned().collect()
    }

    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    pub fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }
}

impl NameStore for MemoryNameStore {
    fn load_all(&self) -> BoxFuture<'_, Result<Vec<StoredName>, NameStoreError>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let names = self.names();
        Box::pin(async move { Ok(names) })
    }

    fn put<'a>(&'a self, name: &'a StoredName) -> BoxFuture<'a, Result<(), NameStoreError>> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.insert((name.kind.to_string(), name.id.clone()), name.clone());
        Box::pin(async { Ok(()) })
    }
}
