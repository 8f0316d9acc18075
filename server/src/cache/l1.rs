//! L1: the bounded in-process tier (moka), with versioned entries.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache, ops::compute::Op};
use rand::Rng;

use super::keys::LookupDigest;
use crate::domain::{
    ProfileId, TenantId,
    profile::{PostalAddress as PostalAddressOf, Profile},
};

/// What L1 is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum L1Key {
    /// A profile.
    Profile(TenantId, ProfileId),
    /// The holder of an identifier, by its keyed hash.
    Lookup(TenantId, LookupDigest),
}

/// What L1 holds. Profile entries carry a version; a fill never replaces a
/// newer entry (see [`L1::fill_profile`]).
#[derive(Debug, Clone)]
pub enum L1Value {
    /// A profile and its approximate size in bytes.
    Profile(Arc<Profile>, u32),
    /// No such profile.
    Missing,
    /// Changed at this version: reload.
    Tombstone(i64),
    /// The identifier's holder.
    Holder(ProfileId),
    /// Nobody holds the identifier.
    Absent,
    /// The identifier changed recently: do not cache "nobody".
    Fence,
}

impl L1Value {
    fn version(&self) -> i64 {
        match self {
            Self::Profile(profile, _) => profile.version,
            Self::Tombstone(version) => *version,
            _ => 0,
        }
    }
}

/// An entry and the epoch it was stored in: entries of an earlier epoch are
/// ignored (see `cache::peers`), so dropping them all is one increment.
#[derive(Debug, Clone)]
struct Entry {
    epoch: u64,
    value: L1Value,
}

/// Per-entry lifetimes, with jitter so entries filled together do not
/// expire together.
struct Lifetimes {
    ttl: Duration,
    not_found_ttl: Duration,
    fence_ttl: Duration,
}

impl Expiry<L1Key, Entry> for Lifetimes {
    fn expire_after_create(&self, _: &L1Key, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(match &entry.value {
            L1Value::Profile(..) | L1Value::Holder(_) => jitter(self.ttl),
            L1Value::Missing | L1Value::Absent => jitter(self.not_found_ttl),
            L1Value::Tombstone(_) | L1Value::Fence => self.fence_ttl,
        })
    }

    fn expire_after_update(&self, key: &L1Key, entry: &Entry, at: Instant, _: Option<Duration>) -> Option<Duration> {
        self.expire_after_create(key, entry, at)
    }
}

/// Approximate heap bytes an L1 entry for `profile` holds: every string's
/// and collection's allocation plus the allocator's per-block overhead, the
/// map nodes of attributes and lineage, and the cache's own entry. Measured
/// against RSS in docs/performance.md; it errs high.
pub fn weigh(profile: &Profile) -> u32 {
    const BLOCK: usize = 16; // allocator bookkeeping per allocation
    const ENTRY: usize = 256; // moka's entry, key and access-order nodes
    let text = |s: &str| s.len() + BLOCK;
    let optional = |s: &Option<String>| s.as_deref().map_or(0, text);
    let data = &profile.data;
    let mut bytes = ENTRY + std::mem::size_of::<Profile>() + BLOCK + text(profile.tenant.as_str());
    bytes += optional(&data.given_name) + optional(&data.family_name) + optional(&data.company_name);
    bytes += optional(&data.segment);
    let spare = |capacity: usize, len: usize, size: usize| (capacity - len) * size + BLOCK;
    bytes += spare(data.emails.capacity(), data.emails.len(), std::mem::size_of::<crate::domain::profile::Email>());
    bytes += spare(data.phones.capacity(), data.phones.len(), std::mem::size_of::<crate::domain::profile::Phone>());
    bytes += spare(data.addresses.capacity(), data.addresses.len(), std::mem::size_of::<PostalAddressOf>());
    bytes += spare(data.external_ids.capacity(), data.external_ids.len(), 48);
    bytes += data.emails.iter().map(|e| 64 + text(&e.address) + text(&e.label)).sum::<usize>();
    bytes += data.phones.iter().map(|p| 64 + text(&p.number) + text(&p.label)).sum::<usize>();
    bytes += data
        .addresses
        .iter()
        .map(|a| {
            160 + a.lines.iter().map(|l| 24 + text(l)).sum::<usize>()
                + [&a.locality, &a.region, &a.postal_code, &a.country_code, &a.label]
                    .iter()
                    .map(|s| text(s))
                    .sum::<usize>()
        })
        .sum::<usize>();
    bytes += data.external_ids.iter().map(|x| 48 + text(&x.source) + text(&x.id)).sum::<usize>();
    bytes += json_size(&serde_json::Value::Object(data.attributes.clone()));
    bytes += profile.lineage.iter().map(|(k, l)| 96 + text(k) + text(&l.source)).sum::<usize>();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

fn json_size(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::String(s) => 32 + s.len() + 16,
        Value::Array(items) => 32 + 16 + items.iter().map(json_size).sum::<usize>(),
        Value::Object(map) => 32 + map.iter().map(|(k, v)| 64 + k.len() + 16 + json_size(v)).sum::<usize>(),
        _ => 32,
    }
}

/// `ttl` ± 10%.
pub fn jitter(ttl: Duration) -> Duration {
    ttl.mul_f64(rand::rng().random_range(0.9..1.1))
}

/// The in-process tier.
#[derive(Clone)]
pub struct L1 {
    cache: Cache<L1Key, Entry>,
}

impl L1 {
    /// A cache holding about `capacity_bytes` of profiles.
    pub fn new(capacity_bytes: u64, ttl: Duration, not_found_ttl: Duration, fence_ttl: Duration) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_, entry: &Entry| match &entry.value {
                L1Value::Profile(_, size) => *size,
                _ => 96,
            })
            .expire_after(Lifetimes { ttl, not_found_ttl, fence_ttl })
            .build();
        Self { cache }
    }

    /// The entry for `key` stored in `epoch`, if any.
    pub async fn get(&self, key: &L1Key, epoch: u64) -> Option<L1Value> {
        self.cache.get(key).await.filter(|entry| entry.epoch == epoch).map(|entry| entry.value)
    }

    /// Stores a loaded profile (or `None`: no such profile) read in `epoch`,
    /// unless the entry is of a later epoch or stands for a newer version —
    /// of any epoch: versions only grow, so an older one is stale wherever
    /// it was read.
    pub async fn fill_profile(&self, key: L1Key, value: L1Value, epoch: u64) {
        let version = value.version();
        self.cache
            .entry(key)
            .and_compute_with(|current| async move {
                match current {
                    Some(entry) if entry.value().epoch > epoch || entry.value().value.version() > version => Op::Nop,
                    _ => Op::Put(Entry { epoch, value }),
                }
            })
            .await;
    }

    /// Marks a profile changed at `version`, unless the entry is already at
    /// least that new. Its version refuses older fills in any epoch.
    pub async fn tombstone(&self, key: L1Key, version: i64, epoch: u64) {
        self.cache
            .entry(key)
            .and_compute_with(|current| async move {
                match current {
                    Some(entry) if entry.value().epoch >= epoch && entry.value().value.version() >= version => Op::Nop,
                    _ => Op::Put(Entry { epoch, value: L1Value::Tombstone(version) }),
                }
            })
            .await;
    }

    /// Stores an identifier's holder read in `epoch`; "nobody" never
    /// replaces a fence.
    pub async fn fill_lookup(&self, key: L1Key, value: L1Value, epoch: u64) {
        self.cache
            .entry(key)
            .and_compute_with(|current| async move {
                match (current.map(|e| e.into_value()), &value) {
                    (Some(Entry { epoch: stored, .. }), _) if stored > epoch => Op::Nop,
                    (Some(Entry { value: L1Value::Fence, .. }), L1Value::Absent) => Op::Nop,
                    _ => Op::Put(Entry { epoch, value }),
                }
            })
            .await;
    }

    /// Fences an identifier that was claimed or released.
    pub async fn fence(&self, key: L1Key, epoch: u64) {
        self.cache.insert(key, Entry { epoch, value: L1Value::Fence }).await;
    }

    /// Drops everything (its memory; entries of an earlier epoch are ignored anyway).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Entries and their weighed size (approximate until pending work runs).
    pub fn usage(&self) -> (u64, u64) {
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::profile::{Profile, ProfileData};

    fn profile(version: i64) -> L1Value {
        let now = chrono::Utc::now();
        let profile = Profile {
            id: ProfileId::generate(),
            tenant: TenantId::parse("acme").expect("tenant"),
            data: ProfileData::default(),
            lineage: Default::default(),
            version,
            created_at: now,
            updated_at: now,
            merged_into: None,
        };
        L1Value::Profile(Arc::new(profile), 100)
    }

    /// Found in review: a fill of a later epoch replaced an earlier epoch's
    /// tombstone whatever its version, so a read that got an older copy from
    /// Redis just after an epoch began could cache it over the write's
    /// tombstone.
    #[tokio::test]
    async fn epochs_hide_old_entries_but_never_let_an_older_version_in() {
        let l1 = L1::new(1 << 20, Duration::from_secs(60), Duration::from_secs(10), Duration::from_secs(60));
        let key = L1Key::Profile(TenantId::parse("acme").expect("tenant"), ProfileId::generate());
        l1.fill_profile(key.clone(), profile(4), 1).await;
        assert!(matches!(l1.get(&key, 1).await, Some(L1Value::Profile(..))));
        assert!(l1.get(&key, 2).await.is_none(), "an earlier epoch's entry is not served");
        l1.tombstone(key.clone(), 5, 1).await;
        l1.fill_profile(key.clone(), profile(4), 2).await;
        assert!(l1.get(&key, 2).await.is_none(), "version 4 stays out after the tombstone of 5");
        l1.fill_profile(key.clone(), profile(5), 2).await;
        assert!(matches!(l1.get(&key, 2).await, Some(L1Value::Profile(p, _)) if p.version == 5));
        l1.fill_profile(key.clone(), profile(6), 1).await;
        assert!(
            matches!(l1.get(&key, 2).await, Some(L1Value::Profile(p, _)) if p.version == 5),
            "a late fill of an earlier epoch changes nothing"
        );
    }
}
