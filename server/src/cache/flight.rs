//! Single flight: concurrent misses on one key share one load.

use std::{collections::HashMap, future::Future, hash::Hash, sync::Arc};

use tokio::sync::OnceCell;

/// In-flight loads by key.
pub struct SingleFlight<K, V> {
    // A std mutex: held only to look up or swap a map entry, never across an await.
    inflight: std::sync::Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    /// No loads in flight.
    pub fn new() -> Self {
        Self { inflight: std::sync::Mutex::new(HashMap::new()) }
    }

    /// Runs `load` unless a load of `key` is already in flight, in which case
    /// waits for that one and shares its result. If the leader is cancelled,
    /// a waiter runs its own `load` (tokio's OnceCell guarantees it).
    pub async fn run<F, Fut>(&self, key: &K, load: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = {
            let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(map.entry(key.clone()).or_default())
        };
        let value = cell.get_or_init(load).await.clone();
        self.forget_cell(key, &cell);
        value
    }

    /// Detaches the load in flight for `key`: callers arriving from now on
    /// start a new load. A write calls this so that no read that begins after
    /// it returns can share a load that began before it.
    pub fn forget(&self, key: &K) {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    fn forget_cell(&self, key: &K, cell: &Arc<OnceCell<V>>) {
        let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(key).is_some_and(|current| Arc::ptr_eq(current, cell)) {
            map.remove(key);
        }
    }
}
