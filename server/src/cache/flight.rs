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
        // Removes the entry however this call ends: a caller cancelled
        // mid-load (a deadline, a reset) must not leave it behind, or a flood
        // of cancelled cold reads grows the map without bound.
        let done = Leave { flights: self, key, cell: Some(cell) };
        let cell = done.cell.as_ref().expect("held until dropped");
        cell.get_or_init(load).await.clone()
    }

    /// How many keys have a load in flight.
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Detaches the load in flight for `key`: callers arriving from now on
    /// start a new load. A write calls this so that no read that begins after
    /// it returns can share a load that began before it.
    pub fn forget(&self, key: &K) {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Detaches every load in flight (a new cache epoch).
    pub fn forget_all(&self) {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A caller's hold on a load in flight; dropped when the call ends.
struct Leave<'a, K: Hash + Eq, V> {
    flights: &'a SingleFlight<K, V>,
    key: &'a K,
    /// The caller's handle, released under the map's lock.
    cell: Option<Arc<OnceCell<V>>>,
}

impl<K: Hash + Eq, V> Drop for Leave<'_, K, V> {
    fn drop(&mut self) {
        let mut map = self.flights.inflight.lock().unwrap_or_else(|e| e.into_inner());
        let Some(cell) = self.cell.take() else { return };
        if !map.get(self.key).is_some_and(|current| Arc::ptr_eq(current, &cell)) {
            return;
        }
        // A finished load is done with; an unfinished one stays while other
        // callers wait on it (one of them takes it over). Every caller takes
        // and releases its handle under the map's lock, so the count is
        // exact: the map's and this caller's mean nobody else waits.
        if cell.initialized() || Arc::strong_count(&cell) <= 2 {
            map.remove(self.key);
        }
        drop(cell);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn cancelled_loads_leave_nothing_behind() {
        let flights: SingleFlight<u32, u32> = SingleFlight::new();
        for key in 0..1_000 {
            let never = flights.run(&key, std::future::pending::<u32>);
            assert!(tokio::time::timeout(Duration::from_micros(1), never).await.is_err());
        }
        assert_eq!(flights.in_flight(), 0, "every cancelled load is forgotten");

        // A waiter left behind by a cancelled leader takes the load over and
        // shares it with whoever arrives meanwhile.
        let flights = Arc::new(flights);
        let leader = flights.run(&7, std::future::pending::<u32>);
        let waiter = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move { flights.run(&7, || async { 42 }).await })
        };
        assert!(tokio::time::timeout(Duration::from_millis(20), leader).await.is_err());
        assert_eq!(waiter.await.expect("waiter"), 42);
        assert_eq!(flights.in_flight(), 0);
        assert_eq!(flights.run(&8, || async { 1 }).await, 1);
        assert_eq!(flights.in_flight(), 0, "a finished load is forgotten");
    }
}
