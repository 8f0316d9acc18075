//! The read-through profile cache: the only code that talks to Redis, and the
//! one place for cache keys, encodings, lifetimes and invalidation.
//!
//! Two tiers: L1, a bounded in-process cache (moka), and L2, Redis, when a URL
//! is configured. Reads try L1, then L2, then the database, and fill the tiers
//! they missed. Writes call [`ProfileCache::changed`] after their commit and
//! before they return.
//!
//! Read-your-writes rests on versions. Every profile entry carries the
//! profile's version; a write leaves a *tombstone* with the new version in
//! both tiers, and a fill lands only if it is at least as new as what is
//! there (a Lua compare-and-set in Redis, `and_compute_with` in moka). So a
//! slow reader that loaded the old version before the commit can never put it
//! back after the write returned — the classic cache-aside race. Deleting the
//! key instead would let exactly that happen.
//!
//! Other instances learn of a write through Redis pub/sub: each tombstones
//! its L1 copy, forgets its loads in flight and acknowledges, and the write
//! returns only once every live instance has (`peers.rs`). Where that cannot
//! be confirmed — Redis failing, an instance silent — the write leaves a hold
//! in the database and waits until every instance has stopped serving from
//! its caches; they read the database until the hold is released. So once a
//! write returns, no instance serves an older copy, in either cache mode.
//!
//! Redis is optional and never required: each call has a short timeout, a
//! circuit breaker stops calling a failing Redis, and a failed call is a miss.

mod breaker;
mod codec;
mod flight;
pub mod keys;
mod l1;
mod l2;
pub mod peers;

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use self::{
    flight::SingleFlight,
    keys::{IdentifierHasher, Invalidation, LookupSlot, ProfileSlot},
    l1::{L1, L1Key, L1Value, jitter, weigh},
    l2::{L2, Pending},
    peers::{Coordination, Peers},
};
use crate::{
    domain::{DomainError, ProfileId, TenantId, identifiers::IdentifierKey, profile::Profile},
    metrics::CacheMetrics,
};

/// Cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Redis URL; `None`: L1 only.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel (tests and tenants of one Redis).
    pub prefix: String,
    /// L1 budget in bytes (approximate); 0 turns L1 off.
    pub l1_capacity_bytes: u64,
    /// Lifetime of a cached profile (±10% jitter).
    pub ttl: Duration,
    /// Lifetime of a cached "no such profile / nobody holds it".
    pub not_found_ttl: Duration,
    /// Lifetime of a tombstone or fence: longer than any read can take.
    pub fence_ttl: Duration,
    /// Longest wait for one Redis call.
    pub redis_timeout: Duration,
    /// Names identifiers in Redis keys and invalidation messages.
    pub hasher: IdentifierHasher,
    /// CA and client certificate of a rediss:// connection.
    pub redis_tls: RedisTls,
    /// Whether this process serves reads (a server) and so must acknowledge
    /// every write before it returns; a command that only writes is not.
    pub member: bool,
}

/// The TLS files of a rediss:// connection, read (PEM bytes).
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    /// CA that signs the server's certificate; `None`: the system's roots.
    pub ca: Option<Vec<u8>>,
    /// Client certificate and key, for a Redis that requires one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

type FlightResult = Result<Option<Arc<Profile>>, DomainError>;

/// A committed write as the cache must learn of it.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheChange {
    /// The profile's tenant.
    pub tenant: TenantId,
    /// The profile that changed (or was created).
    pub id: ProfileId,
    /// Its version after the write.
    pub version: i64,
    /// Identifiers whose holder changed (claimed or released).
    pub identifiers: Vec<IdentifierKey>,
}

/// The profile cache; clones share it.
#[derive(Clone)]
pub struct ProfileCache {
    inner: Arc<Inner>,
}

struct Inner {
    config: CacheConfig,
    l1: Option<L1>,
    l2: Option<Arc<L2>>,
    /// Whether the invalidation channel is subscribed (always true without Redis).
    channel_up: Arc<AtomicBool>,
    /// Membership, acknowledgements, trust and holds (with Redis).
    peers: Arc<Peers>,
    /// Stops the background tasks.
    stop: CancellationToken,
    /// Loads in flight, per epoch: a reader never joins a load of an earlier one.
    flights: SingleFlight<(TenantId, ProfileId, u64), FlightResult>,
    /// Redis fills under way off the readers' paths (a bound: see `fill`).
    fills: Arc<tokio::sync::Semaphore>,
    metrics: CacheMetrics,
}

/// Most Redis fills under way at once; beyond it a fill is skipped (the next
/// miss fills instead) rather than queued without bound behind a slow Redis.
const MAX_FILLS: usize = 1024;

/// How often the invalidation subscription is pinged.
const PING_EVERY: Duration = Duration::from_secs(1);
/// How long a ping's answer may take before the subscription counts as dead.
const PING_PATIENCE: Duration = Duration::from_secs(2);

/// Longest a fill is waited for: a fill that reached Redis carries its own
/// deadline (`l2::FILL_DEADLINE`, checked by Redis's clock), so one that runs
/// late — a frozen Redis resumed — cannot outlive the tombstone that would
/// refuse it.
const FILL_PATIENCE: Duration = Duration::from_secs(5);

impl ProfileCache {
    /// Builds the tiers; with Redis, subscribes to invalidations in the
    /// background until `stop` is cancelled.
    pub fn new(config: CacheConfig, metrics: CacheMetrics, stop: CancellationToken) -> anyhow::Result<Self> {
        let l1 = (config.l1_capacity_bytes > 0)
            .then(|| L1::new(config.l1_capacity_bytes, config.ttl, config.not_found_ttl, config.fence_ttl));
        let l2 = match &config.redis_url {
            Some(url) => Some(L2::new(
                url,
                &config.redis_tls,
                config.redis_timeout,
                config.fence_ttl,
                keys::channel(&config.prefix),
                metrics.clone(),
            )?),
            None => None,
        };
        let channel_up = Arc::new(AtomicBool::new(l2.is_none()));
        metrics.invalidation_channel_up.set(i64::from(l2.is_none()));
        metrics.trusted.set(i64::from(l2.is_none()));
        let peers = Arc::new(Peers::new(config.member));
        let cache = Self {
            inner: Arc::new(Inner {
                config,
                l1,
                l2,
                channel_up,
                peers,
                stop: stop.clone(),
                flights: SingleFlight::new(),
                fills: Arc::new(tokio::sync::Semaphore::new(MAX_FILLS)),
                metrics,
            }),
        };
        if cache.inner.l2.is_some() {
            tokio::spawn(cache.clone().subscribe(stop));
        }
        Ok(cache)
    }

    /// A cache with no tiers: every read loads, every change is a no-op. For
    /// commands that write but never read profiles (`c360 migrate`).
    pub fn none() -> Self {
        let config = CacheConfig {
            redis_url: None,
            prefix: String::new(),
            l1_capacity_bytes: 0,
            ttl: Duration::ZERO,
            not_found_ttl: Duration::ZERO,
            fence_ttl: Duration::ZERO,
            redis_timeout: Duration::ZERO,
            redis_tls: RedisTls::default(),
            hasher: IdentifierHasher::ephemeral(),
            member: false,
        };
        let metrics = CacheMetrics::default();
        Self::new(config, metrics, CancellationToken::new()).unwrap_or_else(|_| unreachable!("no Redis, no error"))
    }

    /// The epoch to serve from the caches in, when they may be served now:
    /// without Redis always (one instance); with Redis only while this
    /// instance is a trusted peer and its invalidation channel is up.
    fn trust(&self) -> Option<u64> {
        let inner = &self.inner;
        match &inner.l2 {
            None => Some(inner.peers.epoch()),
            Some(_) if inner.channel_up.load(Ordering::Acquire) => inner.peers.trusted(),
            Some(_) => None,
        }
    }

    /// Starts coordinating with the other instances through the database
    /// (`store::peers`): heartbeats, holds and their payment. Without Redis
    /// there is nobody to coordinate with.
    pub fn coordinate(&self, coordination: Arc<dyn Coordination>) {
        if self.inner.l2.is_none() || !self.inner.peers.attach(coordination) {
            return;
        }
        tokio::spawn(self.clone().beat(self.inner.stop.clone()));
    }

    /// Waits up to `patience` until this instance serves from its caches;
    /// whether it does. A server waits for this before it listens, so its
    /// first reads are cached ones.
    pub async fn ready(&self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while self.trust().is_none() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Whether the invalidation channel is subscribed (for readiness and tests).
    pub fn channel_up(&self) -> bool {
        self.inner.channel_up.load(Ordering::Acquire)
    }

    /// Profiles with a load in flight.
    pub fn loads_in_flight(&self) -> usize {
        self.inner.flights.in_flight()
    }

    /// L1 entries and approximate bytes.
    pub fn l1_usage(&self) -> (u64, u64) {
        self.inner.l1.as_ref().map_or((0, 0), L1::usage)
    }

    /// One profile: L1, L2, then `load` (the database). Concurrent misses on
    /// one profile share one load. `None`: no such profile (cached briefly).
    pub async fn profile<F, Fut>(&self, tenant: &TenantId, id: ProfileId, load: F) -> FlightResult
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Profile>, DomainError>>,
    {
        let Some(epoch) = self.trust() else {
            return self.bypass(1, load()).await.map(|found| found.map(Arc::new));
        };
        if let Some(hit) = self.l1_profile(tenant, id, epoch).await {
            return Ok(hit);
        }
        let flight = (tenant.clone(), id, epoch);
        self.inner
            .flights
            .run(&flight, || async move {
                let redis_key = keys::profile(&self.inner.config.prefix, tenant, id);
                let answer = self.l2_profiles(tenant, &[id], std::slice::from_ref(&redis_key), epoch).await;
                if let Some(hit) = answer.into_iter().next().flatten() {
                    return Ok(hit);
                }
                let loaded = load().await?.map(Arc::new);
                self.inner.metrics.database_loads.inc();
                self.fill(tenant, vec![(id, redis_key, loaded.clone())], epoch).await;
                Ok(loaded)
            })
            .await
    }

    /// A read while the caches may not be served: straight to the database.
    async fn bypass<T>(&self, reads: u64, load: impl Future<Output = T>) -> T {
        let metrics = &self.inner.metrics;
        metrics.l1_misses.inc_by(reads);
        if self.inner.l2.is_some() {
            metrics.l2_misses.inc_by(reads);
        }
        metrics.database_loads.inc_by(reads);
        load.await
    }

    /// Several profiles: L1 for each, one Redis MGET for the rest, one
    /// `load` (a single database query) for what is left. Absent ids are
    /// missing from the answer.
    pub async fn profiles<F, Fut>(
        &self,
        tenant: &TenantId,
        ids: &[ProfileId],
        load: F,
    ) -> Result<HashMap<ProfileId, Arc<Profile>>, DomainError>
    where
        F: FnOnce(Vec<ProfileId>) -> Fut,
        Fut: Future<Output = Result<Vec<Profile>, DomainError>>,
    {
        let Some(epoch) = self.trust() else {
            let loaded = self.bypass(ids.len() as u64, load(ids.to_vec())).await?;
            return Ok(loaded.into_iter().map(|p| (p.id, Arc::new(p))).collect());
        };
        let mut found = HashMap::with_capacity(ids.len());
        let mut remaining = Vec::new();
        for &id in ids {
            match self.l1_profile(tenant, id, epoch).await {
                Some(Some(profile)) => {
                    found.insert(id, profile);
                }
                Some(None) => {}
                None => remaining.push(id),
            }
        }
        if remaining.is_empty() {
            return Ok(found);
        }
        let redis_keys: Vec<String> =
            remaining.iter().map(|&id| keys::profile(&self.inner.config.prefix, tenant, id)).collect();
        let l2 = self.l2_profiles(tenant, &remaining, &redis_keys, epoch).await;
        let mut misses = Vec::new();
        for ((id, redis_key), hit) in remaining.into_iter().zip(redis_keys).zip(l2) {
            match hit {
                Some(Some(profile)) => {
                    found.insert(id, profile);
                }
                Some(None) => {}
                None => misses.push((id, redis_key)),
            }
        }
        if misses.is_empty() {
            return Ok(found);
        }
        let mut loaded: HashMap<ProfileId, Arc<Profile>> =
            load(misses.iter().map(|(id, _)| *id).collect()).await?.into_iter().map(|p| (p.id, Arc::new(p))).collect();
        self.inner.metrics.database_loads.inc_by(misses.len() as u64);
        let fills = misses.into_iter().map(|(id, key)| (id, key, loaded.get(&id).cloned())).collect();
        self.fill(tenant, fills, epoch).await;
        found.extend(loaded.drain());
        Ok(found)
    }

    /// The profile said to hold `key`: L1, L2, then `load`. A cached holder
    /// may be out of date; the caller checks the profile still holds the
    /// identifier and calls [`ProfileCache::forget_holder`] if not.
    pub async fn holder<F, Fut>(
        &self,
        tenant: &TenantId,
        key: &IdentifierKey,
        load: F,
    ) -> Result<Option<ProfileId>, DomainError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<ProfileId>, DomainError>>,
    {
        let Some(epoch) = self.trust() else {
            return self.bypass(1, load()).await;
        };
        let metrics = &self.inner.metrics;
        let digest = self.inner.config.hasher.digest(tenant, key);
        let redis_key = keys::lookup(&self.inner.config.prefix, tenant, &digest);
        let l1_key = L1Key::Lookup(tenant.clone(), digest);
        if let Some(l1) = &self.inner.l1 {
            match l1.get(&l1_key, epoch).await {
                Some(L1Value::Holder(id)) => return Ok(hit(&metrics.l1_hits, Some(id))),
                Some(L1Value::Absent) => return Ok(hit(&metrics.l1_hits, None)),
                _ => {}
            }
        }
        metrics.l1_misses.inc();
        if let Some(l2) = &self.inner.l2 {
            let cached = match l2.get_lookup(&redis_key).await {
                Some(LookupSlot::Holder(id)) => Some((Some(id), L1Value::Holder(id))),
                Some(LookupSlot::Absent) => Some((None, L1Value::Absent)),
                _ => None,
            };
            if let Some((answer, value)) = cached {
                if let Some(l1) = &self.inner.l1 {
                    l1.fill_lookup(l1_key, value, epoch).await;
                }
                return Ok(hit(&metrics.l2_hits, answer));
            }
            metrics.l2_misses.inc();
        }
        let holder = load().await?;
        metrics.database_loads.inc();
        let (slot, value, ttl) = match holder {
            Some(id) => (LookupSlot::Holder(id), L1Value::Holder(id), self.inner.config.ttl),
            None => (LookupSlot::Absent, L1Value::Absent, self.inner.config.not_found_ttl),
        };
        if let Some(l2) = &self.inner.l2
            && self.trust() == Some(epoch)
        {
            l2.fill_lookup(&redis_key, slot, jitter(ttl)).await;
        }
        if let Some(l1) = &self.inner.l1 {
            l1.fill_lookup(l1_key, value, epoch).await;
        }
        Ok(holder)
    }

    /// Claims the Redis prefix for `deployment` for `ttl`: `Ok(())` when it is
    /// this deployment's (or there is no Redis), the other deployment's id
    /// when another one uses it, `Err(None)` when Redis did not answer.
    pub async fn claim_prefix(&self, deployment: &str, ttl: Duration) -> Result<(), Option<String>> {
        let Some(l2) = &self.inner.l2 else {
            return Ok(());
        };
        let key = keys::deployment(&self.inner.config.prefix);
        let wait = self.inner.config.redis_timeout.max(Duration::from_secs(3));
        match l2.claim(&key, deployment, ttl, wait).await {
            Some(holder) if holder == deployment => Ok(()),
            Some(other) => Err(Some(other)),
            None => Err(None),
        }
    }

    /// The cache's key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    /// Adds `reads` to `subject`'s shared read counter for `window` (kept
    /// for `ttl`); the new total, or `None` without Redis or when Redis did
    /// not answer (the caller counts locally then).
    pub async fn count_reads(
        &self,
        tenant: &TenantId,
        subject: &str,
        window: i64,
        reads: u64,
        ttl: Duration,
    ) -> Option<u64> {
        let l2 = self.inner.l2.as_ref()?;
        let digest = self.inner.config.hasher.subject(tenant, subject);
        l2.count(&keys::read_count(&self.inner.config.prefix, tenant, &digest, window), reads, ttl).await
    }

    /// Drops a cached holder found out of date. Best effort: a cached holder
    /// is always checked against the versioned profile before it is used.
    pub async fn forget_holder(&self, tenant: &TenantId, key: &IdentifierKey) {
        let digest = self.inner.config.hasher.digest(tenant, key);
        if let Some(l2) = &self.inner.l2 {
            l2.invalidate(&[Pending::Lookup(keys::lookup(&self.inner.config.prefix, tenant, &digest))]).await;
        }
        if let Some(l1) = &self.inner.l1 {
            l1.fence(L1Key::Lookup(tenant.clone(), digest), self.inner.peers.epoch()).await;
        }
    }

    /// Records committed writes: each changed profile is now at its version,
    /// and the holders of its identifiers changed. Called by the unit of work
    /// after commit, before the write answers.
    ///
    /// Tombstones this instance's L1 and detaches its loads in flight;
    /// with Redis, tombstones L2 and publishes one message for all the
    /// changes, then waits until every live instance acknowledged it. If
    /// Redis failed or an instance stayed silent, leaves a hold and waits
    /// until no instance trusts its caches (`peers.rs`). Err only when not
    /// even the hold could be written: the write is committed, but another
    /// instance may still serve the older copy for up to a second.
    pub async fn changed(&self, changes: &[CacheChange]) -> Result<(), DomainError> {
        if changes.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        self.drop_local(changes).await;
        let Some(l2) = &inner.l2 else { return Ok(()) };
        let prefix = &inner.config.prefix;
        let expected = inner.peers.expect();
        let mut message = Invalidation::Writer(inner.peers.id.clone(), expected.seq()).encode();
        let mut writes = Vec::with_capacity(changes.len() * 2 + 1);
        for CacheChange { tenant, id, version, identifiers } in changes {
            writes.push(Pending::Profile(keys::profile(prefix, tenant, *id), *version));
            push_line(&mut message, Invalidation::Profile(tenant.clone(), *id, *version).encode());
            for key in identifiers {
                for digest in inner.config.hasher.digests(tenant, key) {
                    writes.push(Pending::Lookup(keys::lookup(prefix, tenant, &digest)));
                    push_line(&mut message, Invalidation::Lookup(tenant.clone(), digest).encode());
                }
            }
        }
        writes.push(Pending::Publish(message));
        let delivered = l2.invalidate(&writes).await;
        // Again: a read on this instance between the first drop and Redis's
        // tombstone may have cached, or be loading, what Redis still held.
        self.drop_local(changes).await;
        // With its own channel down this instance hears no acknowledgement.
        if delivered && inner.channel_up.load(Ordering::Acquire) {
            // Asked after the message went out: an instance missing from a
            // list this fresh joined after it and trusts only later (JOIN).
            if let Some(members) = inner.peers.members().await
                && expected.all(&members, peers::ACK_PATIENCE).await
            {
                return Ok(());
            }
        }
        drop(expected);
        inner.metrics.holds.inc();
        let owed: Vec<String> =
            if delivered { Vec::new() } else { writes.iter().filter_map(Pending::encode).collect() };
        inner.peers.hold(&owed).await.map_err(|e| {
            tracing::error!(error = %e, "a write's cache invalidation could not be confirmed, nor a hold left");
            DomainError::Unavailable(
                "the change is committed, but other instances may still serve the previous version for a \
                 moment: the cache could not confirm its invalidation"
                    .to_owned(),
            )
        })
    }

    /// Tombstones this instance's L1 copies of `changes` and detaches its
    /// loads of them in flight. L1 is tombstoned even while not trusted: it
    /// is trusted again later.
    async fn drop_local(&self, changes: &[CacheChange]) {
        let inner = &self.inner;
        let epoch = inner.peers.epoch();
        for change in changes {
            inner.flights.forget(&(change.tenant.clone(), change.id, epoch));
        }
        if let Some(l1) = &inner.l1 {
            for CacheChange { tenant, id, version, identifiers } in changes {
                l1.tombstone(L1Key::Profile(tenant.clone(), *id), *version, epoch).await;
                for key in identifiers {
                    l1.fence(L1Key::Lookup(tenant.clone(), inner.config.hasher.digest(tenant, key)), epoch).await;
                }
            }
        }
    }

    /// L1's answer: `Some(Some)` a profile, `Some(None)` known absent, `None` a miss.
    async fn l1_profile(&self, tenant: &TenantId, id: ProfileId, epoch: u64) -> Option<Option<Arc<Profile>>> {
        let metrics = &self.inner.metrics;
        if let Some(l1) = &self.inner.l1 {
            match l1.get(&L1Key::Profile(tenant.clone(), id), epoch).await {
                Some(L1Value::Profile(profile, _)) => return hit(&metrics.l1_hits, Some(Some(profile))),
                Some(L1Value::Missing) => return hit(&metrics.l1_hits, Some(None)),
                _ => {}
            }
        }
        metrics.l1_misses.inc();
        None
    }

    /// L2's answers for `ids` (at `redis_keys`), filling L1 with each hit.
    async fn l2_profiles(
        &self,
        tenant: &TenantId,
        ids: &[ProfileId],
        redis_keys: &[String],
        epoch: u64,
    ) -> Vec<Option<Option<Arc<Profile>>>> {
        let metrics = &self.inner.metrics;
        let Some(l2) = &self.inner.l2 else {
            metrics.l2_misses.inc_by(redis_keys.len() as u64);
            return vec![None; redis_keys.len()];
        };
        let slots = l2.get_profiles(redis_keys).await;
        let mut answers = Vec::with_capacity(slots.len());
        for (&id, slot) in ids.iter().zip(slots) {
            let value = match slot {
                Some(ProfileSlot::Found(_, bytes)) => decode(&bytes, tenant).map(|p| {
                    let size = weigh(&p);
                    L1Value::Profile(Arc::new(p), size)
                }),
                Some(ProfileSlot::Missing) => Some(L1Value::Missing),
                _ => None,
            };
            let Some(value) = value else {
                metrics.l2_misses.inc();
                answers.push(None);
                continue;
            };
            metrics.l2_hits.inc();
            answers.push(Some(match &value {
                L1Value::Profile(profile, _) => Some(Arc::clone(profile)),
                _ => None,
            }));
            if let Some(l1) = &self.inner.l1 {
                l1.fill_profile(L1Key::Profile(tenant.clone(), id), value, epoch).await;
            }
        }
        answers
    }

    /// Fills both tiers with what the database answered (`None`: no such
    /// profile) for a read that began in `epoch`: L1 before the reader is
    /// answered, Redis on a task of its own, and only while still trusted.
    async fn fill(&self, tenant: &TenantId, loaded: Vec<(ProfileId, String, Option<Arc<Profile>>)>, epoch: u64) {
        let l2 = self.inner.l2.as_ref().filter(|_| self.trust() == Some(epoch)).and_then(|l2| {
            let permit = Arc::clone(&self.inner.fills).try_acquire_owned().ok()?;
            Some((Arc::clone(l2), permit))
        });
        let mut fills = Vec::with_capacity(if l2.is_some() { loaded.len() } else { 0 });
        let mut l1_fills = Vec::with_capacity(loaded.len());
        for (id, redis_key, profile) in loaded {
            if l2.is_some() {
                fills.push((redis_key, profile.clone()));
            }
            l1_fills.push((id, profile));
        }
        if let Some((l2, permit)) = l2 {
            // Off the answer's path: the reader has its profile, and a fill
            // that lands late is refused by the version compare-and-set like
            // any other stale fill, as long as it lands within FILL_PATIENCE.
            // The encoding goes with it.
            let (ttl, not_found_ttl) = (self.inner.config.ttl, self.inner.config.not_found_ttl);
            tokio::spawn(async move {
                let fills = fills
                    .into_iter()
                    .map(|(key, profile)| match profile {
                        Some(profile) => {
                            (key, ProfileSlot::Found(profile.version, codec::encode(&profile)), jitter(ttl))
                        }
                        None => (key, ProfileSlot::Missing, jitter(not_found_ttl)),
                    })
                    .collect();
                let _ = tokio::time::timeout(FILL_PATIENCE, l2.fill_profiles(fills)).await;
                drop(permit);
            });
        }
        if let Some(l1) = &self.inner.l1 {
            for (id, profile) in l1_fills {
                let key = L1Key::Profile(tenant.clone(), id);
                let value = match profile {
                    Some(profile) => {
                        let size = weigh(&profile);
                        L1Value::Profile(profile, size)
                    }
                    None => L1Value::Missing,
                };
                l1.fill_profile(key, value, epoch).await;
            }
        }
    }

    /// Heartbeats: keeps this instance a member, learns of holds (trusting
    /// the caches only without one), pays holds' owed Redis writes when
    /// Redis answers and releases them. Leaves the members when stopped.
    async fn beat(self, stop: CancellationToken) {
        let inner = &self.inner;
        let Some(coordination) = inner.peers.coordination().cloned() else { return };
        let Some(l2) = inner.l2.clone() else { return };
        let mut ticks = tokio::time::interval(peers::POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for beat in 1u64.. {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            if beat % 300 == 0 {
                // About once a minute: rows of instances long gone.
                inner.peers.release().await;
            }
            // A member only while it can hear writes: one that cannot would
            // make every write wait for its acknowledgement in vain.
            let channel_up = inner.channel_up.load(Ordering::Acquire);
            let instance = (inner.peers.is_member() && channel_up).then_some(inner.peers.id.as_str());
            let sent = Instant::now();
            let census = match coordination.poll(instance, peers::MEMBER_WINDOW).await {
                Ok(census) => census,
                Err(e) => {
                    tracing::debug!(error = %e, "cache heartbeat failed; the caches are served until its trust lapses");
                    continue;
                }
            };
            inner.metrics.pending_invalidations.set(census.holds);
            let clean = census.holds == 0 && channel_up && inner.channel_up.load(Ordering::Acquire);
            inner.peers.beat(sent, &census, clean, || {
                // A new epoch: nothing cached or loading before it is used.
                if let Some(l1) = &inner.l1 {
                    l1.clear();
                }
                inner.flights.forget_all();
            });
            inner.metrics.trusted.set(i64::from(self.trust().is_some()));
            if census.holds > 0 {
                self.pay(&coordination, &l2).await;
            }
        }
        inner.metrics.trusted.set(0);
        inner.peers.leave().await;
    }

    /// Writes what holds owe to Redis (when it answers) and releases holds
    /// paid and old enough.
    async fn pay(&self, coordination: &Arc<dyn Coordination>, l2: &L2) {
        match coordination.owed().await {
            Ok(owed) => {
                let mut paid = Vec::with_capacity(owed.len());
                for hold in owed {
                    let writes: Vec<Pending> = hold.writes.iter().filter_map(|w| Pending::decode(w)).collect();
                    if !l2.invalidate(&writes).await {
                        break;
                    }
                    paid.push(hold.id);
                }
                if let Err(e) = coordination.paid(&paid).await {
                    tracing::debug!(error = %e, "recording paid cache holds failed");
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading cache holds failed"),
        }
        self.inner.peers.release().await;
    }

    /// Applies invalidations published by any instance to L1 and acknowledges
    /// them; hears acknowledgements of this instance's writes. While the
    /// subscription is down this instance does not trust its caches.
    async fn subscribe(self, stop: CancellationToken) {
        let Some(l2) = self.inner.l2.clone() else { return };
        let channel = keys::channel(&self.inner.config.prefix);
        let acks = keys::ack_channel(&self.inner.config.prefix, &self.inner.peers.id);
        let metrics = self.inner.metrics.clone();
        let mut backoff = Duration::from_millis(50);
        while !stop.is_cancelled() {
            let connected = tokio::time::timeout(Duration::from_secs(2), l2.client().get_async_pubsub()).await;
            if let Ok(Ok(mut pubsub)) = connected
                && pubsub.subscribe(&[&channel, &acks]).await.is_ok()
            {
                // Messages may have been missed while unsubscribed: a new
                // epoch at the next clean heartbeat.
                self.inner.peers.distrust();
                self.inner.channel_up.store(true, Ordering::Release);
                metrics.invalidation_channel_up.set(1);
                backoff = Duration::from_millis(50);
                let (mut sink, mut messages) = pubsub.split();
                // A subscription can die without its socket saying so: an
                // unanswered ping ends it, and with it this instance's trust
                // and membership until it subscribes again.
                let pinger = async move {
                    loop {
                        tokio::time::sleep(PING_EVERY).await;
                        if !matches!(tokio::time::timeout(PING_PATIENCE, sink.ping::<redis::Value>()).await, Ok(Ok(_)))
                        {
                            return;
                        }
                    }
                };
                tokio::pin!(pinger);
                // Stopping, this instance leaves the members at once but
                // keeps acknowledging a little longer: writers whose list
                // still names it need not wait for it in vain.
                let linger = async {
                    stop.cancelled().await;
                    tokio::time::sleep(peers::FRESH * 2).await;
                };
                tokio::pin!(linger);
                loop {
                    tokio::select! {
                        () = &mut linger => break,
                        () = &mut pinger => {
                            tracing::warn!("the invalidation channel did not answer a ping; subscribing again");
                            break;
                        }
                        message = messages.next() => match message {
                            Some(message) => {
                                let payload: String = message.get_payload().unwrap_or_default();
                                if message.get_channel_name() == acks {
                                    self.hear_ack(&payload);
                                } else {
                                    metrics.invalidations_received.inc();
                                    self.apply_invalidation(&l2, &payload).await;
                                }
                            }
                            None => break,
                        },
                    }
                }
            }
            self.inner.channel_up.store(false, Ordering::Release);
            self.inner.peers.distrust();
            metrics.invalidation_channel_up.set(0);
            metrics.trusted.set(0);
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    fn hear_ack(&self, payload: &str) {
        if let Some((seq, from)) = payload.split_once('\t')
            && let Ok(seq) = seq.parse()
        {
            self.inner.peers.acked(seq, from);
        }
    }

    async fn apply_invalidation(&self, l2: &Arc<L2>, payload: &str) {
        let inner = &self.inner;
        let epoch = inner.peers.epoch();
        let mut writer = None;
        for line in payload.lines() {
            match Invalidation::decode(line) {
                Some(Invalidation::Writer(instance, seq)) => writer = Some((instance, seq)),
                Some(Invalidation::Profile(tenant, id, version)) => {
                    inner.flights.forget(&(tenant.clone(), id, epoch));
                    if let Some(l1) = &inner.l1 {
                        l1.tombstone(L1Key::Profile(tenant, id), version, epoch).await;
                    }
                }
                Some(Invalidation::Lookup(tenant, digest)) => {
                    if let Some(l1) = &inner.l1 {
                        l1.fence(L1Key::Lookup(tenant, digest), epoch).await;
                    }
                }
                None => tracing::warn!(line, "unreadable invalidation message"),
            }
        }
        if let Some((writer, seq)) = writer
            && writer != inner.peers.id
            && inner.peers.is_member()
        {
            // Off the subscriber's path: the next message need not wait for Redis.
            let (l2, channel, payload) = (
                Arc::clone(l2),
                keys::ack_channel(&inner.config.prefix, &writer),
                format!("{seq}\t{}", inner.peers.id),
            );
            tokio::spawn(async move { l2.acknowledge(&channel, payload).await });
        }
    }
}

fn push_line(message: &mut String, line: String) {
    if !message.is_empty() {
        message.push('\n');
    }
    message.push_str(&line);
}

fn hit<T>(counter: &prometheus_client::metrics::counter::Counter, value: T) -> T {
    counter.inc();
    value
}

fn decode(bytes: &[u8], tenant: &TenantId) -> Option<Profile> {
    match codec::decode(bytes, tenant) {
        Ok(profile) => Some(profile),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable cached profile; treated as a miss");
            None
        }
    }
}
