//! Read caps: a tenant may cap how many profiles one subject reads per hour
//! (`profile_reads_per_hour`). Every profile a response carries counts,
//! repeats included, in a fixed window per clock hour; the call that goes
//! over is refused (RESOURCE_EXHAUSTED, retry at the next hour) and returns
//! nothing.
//!
//! With Redis the counter is shared by every instance. Without Redis, or
//! while Redis does not answer, each instance counts on its own: the cap
//! then holds per instance (a subject spread over N instances may read up to
//! N times the cap until Redis is back). Reads are never refused because the
//! counter is unavailable.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::Utc;

use crate::{
    auth::Caller,
    cache::ProfileCache,
    domain::{DomainError, TenantId},
};

/// The window: one clock hour.
const WINDOW_SECS: i64 = 3600;

/// Counts reads per subject and window.
#[derive(Clone)]
pub struct ReadCaps {
    cache: ProfileCache,
    local: moka::sync::Cache<(TenantId, String, i64), Arc<AtomicU64>>,
}

impl ReadCaps {
    /// Counters shared through `cache`'s Redis, if any, else in-process.
    pub fn new(cache: ProfileCache) -> Self {
        let local = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(Duration::from_secs(2 * WINDOW_SECS as u64))
            .build();
        Self { cache, local }
    }

    /// Counts `reads` profiles for the caller against `cap` (0: no cap).
    pub async fn take(&self, caller: &Caller, reads: usize, cap: u32) -> Result<(), DomainError> {
        if cap == 0 || reads == 0 || caller.is_system() {
            return Ok(());
        }
        let now = Utc::now().timestamp();
        let window = now.div_euclid(WINDOW_SECS);
        let ttl = Duration::from_secs(WINDOW_SECS as u64 + 60);
        let reads = reads as u64;
        let shared = self.cache.count_reads(caller.tenant(), caller.subject(), window, reads, ttl).await;
        let total = match shared {
            Some(total) => total,
            None => {
                let key = (caller.tenant().clone(), caller.subject().to_owned(), window);
                let counter = self.local.get_with(key, || Arc::new(AtomicU64::new(0)));
                counter.fetch_add(reads, Ordering::Relaxed) + reads
            }
        };
        if total <= u64::from(cap) {
            return Ok(());
        }
        let retry_after = Duration::from_secs((WINDOW_SECS - now.rem_euclid(WINDOW_SECS)) as u64);
        Err(DomainError::QuotaExceeded {
            message: format!(
                "this tenant lets one subject read {cap} profiles per hour; the next hour starts in {}s",
                retry_after.as_secs()
            ),
            retry_after,
        })
    }
}
