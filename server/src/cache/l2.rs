//! L2: Redis. Every call is bounded by a timeout and guarded by the circuit
//! breaker; a failed call is a miss, never a failed request.

use std::{
    future::Future,
    sync::{Arc, Weak},
    time::Duration,
};

use redis::{AsyncCommands, Script, aio::ConnectionManager};
use tokio::sync::{RwLock, oneshot};

use super::{
    breaker::Breaker,
    keys::{LookupSlot, ProfileSlot},
};
use crate::{batch::Batcher, metrics::CacheMetrics};

/// Sets a profile slot unless the stored one stands for a newer version (or,
/// for a tombstone — ARGV[4] = 1 — an equally new one). A fill carries a
/// deadline (ARGV[5], Unix ms; 0 for none) checked against Redis's clock: a
/// fill that reached a frozen Redis and runs long after it was sent, when
/// the tombstone that would refuse it may have expired, does nothing.
const PROFILE_CAS: &str = r"
if ARGV[5] ~= '0' then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[5]) then return 0 end
end
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.match(cur, '^%a(%d+):'))
  local new = tonumber(ARGV[1])
  if v and (v > new or (ARGV[4] == '1' and v == new)) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

/// Sets an identifier slot; "nobody" (N) never replaces a fence (F). A fill
/// carries a deadline (ARGV[3], Unix ms; 0 for none), as in `PROFILE_CAS`.
const LOOKUP_SET: &str = r"
if ARGV[3] ~= '0' then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[3]) then return 0 end
end
if ARGV[1] == 'N' and redis.call('GET', KEYS[1]) == 'F' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// How long after it is sent a fill may still land: far inside the shortest
/// tombstone lifetime (60 s), allowing for clocks apart by tens of seconds.
const FILL_DEADLINE: Duration = Duration::from_secs(10);

/// The Unix time in ms by which a fill sent now must have run.
fn fill_deadline() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from((now + FILL_DEADLINE).as_millis()).unwrap_or(u64::MAX)
}

/// Adds to a windowed counter, setting its expiry when it is created.
const COUNT: &str = r"
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
";

/// Claims a key for an owner (or renews the claim) unless another holds it;
/// answers the holder.
const CLAIM: &str = r"
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder
";

/// Pipelines of shared calls in flight at once.
const SHARED_LANES: usize = 2;

/// Most calls one pipeline carries.
const MAX_PIPELINE: usize = 128;

/// A call on a cache miss that may share one pipeline (one round trip) with
/// concurrent ones: on a busy server every miss costs a read before the
/// database and a fill after it.
enum Shared {
    /// Read a profile slot.
    Get(String, oneshot::Sender<Option<Vec<u8>>>),
    /// Compare-and-set a profile slot read from the database.
    Fill { key: String, version: i64, bytes: Vec<u8>, ttl_ms: u64, deadline_ms: u64, done: oneshot::Sender<()> },
}

/// A write to Redis that a changed profile owes.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    /// Tombstone a profile key at a version.
    Profile(String, i64),
    /// Fence an identifier key.
    Lookup(String),
    /// Publish an invalidation message.
    Publish(String),
}

impl Pending {
    /// One line, as a hold keeps it (messages are not kept: a hold makes
    /// every instance start a new epoch instead).
    pub fn encode(&self) -> Option<String> {
        match self {
            Self::Profile(key, version) => Some(format!("P\t{key}\t{version}")),
            Self::Lookup(key) => Some(format!("L\t{key}")),
            Self::Publish(_) => None,
        }
    }

    /// Parses a line of [`Pending::encode`].
    pub fn decode(line: &str) -> Option<Self> {
        let mut parts = line.split('\t');
        match (parts.next()?, parts.next()?, parts.next()) {
            ("P", key, Some(version)) => Some(Self::Profile(key.to_owned(), version.parse().ok()?)),
            ("L", key, None) => Some(Self::Lookup(key.to_owned())),
            _ => None,
        }
    }
}

/// The Redis tier.
pub struct L2 {
    client: redis::Client,
    connection: RwLock<Option<ConnectionManager>>,
    breaker: Breaker,
    timeout: Duration,
    fence_ttl: Duration,
    channel: String,
    lookup_set: Script,
    count: Script,
    /// Single-key reads and fills, pipelined together under load.
    shared: Batcher<Shared>,
    metrics: CacheMetrics,
}

impl L2 {
    /// A tier on `url`; connects in the background if Redis is not up yet.
    pub fn new(
        url: &str,
        tls: &super::RedisTls,
        timeout: Duration,
        fence_ttl: Duration,
        channel: String,
        metrics: CacheMetrics,
    ) -> anyhow::Result<Arc<Self>> {
        let client = if tls.ca.is_some() || tls.identity.is_some() {
            crate::tls::install_crypto_provider();
            let certificates = redis::TlsCertificates {
                client_tls: tls
                    .identity
                    .clone()
                    .map(|(client_cert, client_key)| redis::ClientTlsConfig { client_cert, client_key }),
                root_cert: tls.ca.clone(),
            };
            redis::Client::build_with_tls(url, certificates)
        } else {
            if url.starts_with("rediss://") {
                crate::tls::install_crypto_provider();
            }
            redis::Client::open(url)
        }
        .map_err(|e| anyhow::anyhow!("invalid Redis URL or TLS files: {e}"))?;
        Ok(Arc::new_cyclic(|l2: &Weak<Self>| Self {
            client,
            connection: RwLock::new(None),
            breaker: Breaker::new(metrics.breaker_state.clone()),
            timeout,
            fence_ttl,
            channel,
            lookup_set: Script::new(LOOKUP_SET),
            count: Script::new(COUNT),
            // The lanes hold the tier weakly: they stop with it.
            shared: Batcher::spawn(SHARED_LANES, MAX_PIPELINE, {
                let l2 = l2.clone();
                move |calls| {
                    let l2 = l2.upgrade();
                    async move {
                        if let Some(l2) = l2 {
                            l2.run_shared(calls).await;
                        }
                    }
                }
            }),
            metrics,
        }))
    }

    /// Sends `calls` as one pipeline and answers each; a failed pipeline
    /// answers every read with a miss.
    async fn run_shared(&self, calls: Vec<Shared>) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for call in &calls {
            match call {
                Shared::Get(key, _) => {
                    pipe.get(key);
                }
                Shared::Fill { key, version, bytes, ttl_ms, deadline_ms, .. } => {
                    // EVAL, not EVALSHA: a pipeline cannot load a script that
                    // a restarted Redis forgot. Redis caches the compiled body.
                    pipe.cmd("EVAL")
                        .arg(PROFILE_CAS)
                        .arg(1)
                        .arg(key)
                        .arg(version)
                        .arg(bytes)
                        .arg(ttl_ms)
                        .arg(0)
                        .arg(deadline_ms);
                }
            }
        }
        let values: Option<Vec<redis::Value>> = self.call(|mut c| async move { pipe.query_async(&mut c).await }).await;
        let mut values = values.filter(|v| v.len() == calls.len()).map(Vec::into_iter);
        for call in calls {
            let value = values.as_mut().and_then(Iterator::next);
            // A caller that gave up no longer listens.
            match call {
                Shared::Get(_, reply) => {
                    let _ =
                        reply.send(value.and_then(|v| redis::from_redis_value::<Option<Vec<u8>>>(v).ok().flatten()));
                }
                Shared::Fill { done, .. } => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// The client (for the subscriber's dedicated connection).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        if let Some(connection) = self.connection.read().await.as_ref() {
            return Some(connection.clone());
        }
        let mut slot = self.connection.write().await;
        if slot.is_none() {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(200))))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(1);
            let connecting = ConnectionManager::new_with_config(self.client.clone(), config);
            match tokio::time::timeout(self.timeout.max(Duration::from_millis(200)), connecting).await {
                Ok(Ok(connection)) => *slot = Some(connection),
                Ok(Err(e)) => tracing::debug!(error = %e, "Redis connection failed"),
                Err(_) => tracing::debug!("Redis connection timed out"),
            }
        }
        slot.clone()
    }

    /// Runs one Redis call under the breaker and the timeout.
    async fn call<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.breaker.allow() {
            self.metrics.redis_skipped.inc();
            return None;
        }
        let result = match self.connection().await {
            Some(connection) => tokio::time::timeout(self.timeout, op(connection)).await,
            None => Ok(Err(redis::RedisError::from((redis::ErrorKind::Io, "not connected")))),
        };
        match result {
            Ok(Ok(value)) => {
                self.breaker.success();
                Some(value)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "Redis call failed");
                self.metrics.redis_errors.inc();
                self.breaker.failure();
                None
            }
            Err(_) => {
                self.metrics.redis_errors.inc();
                self.breaker.failure();
                None
            }
        }
    }

    /// Applies `writes` as one pipeline (one round trip); false if it failed.
    async fn apply_all(&self, writes: &[Pending]) -> bool {
        let pipe = self.pipeline(writes);
        let pipe = &pipe;
        self.call(|mut c| async move { pipe.query_async::<Vec<redis::Value>>(&mut c).await }).await.is_some()
    }

    fn pipeline(&self, writes: &[Pending]) -> redis::Pipeline {
        let fence_ms = self.fence_ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        for write in writes {
            match write {
                // EVAL, not EVALSHA: see `run_shared`.
                Pending::Profile(key, version) => {
                    let slot = ProfileSlot::Tombstone(*version).encode();
                    pipe.cmd("EVAL")
                        .arg(PROFILE_CAS)
                        .arg(1)
                        .arg(key)
                        .arg(version)
                        .arg(slot)
                        .arg(fence_ms)
                        .arg(1)
                        .arg(0);
                }
                Pending::Lookup(key) => {
                    pipe.cmd("EVAL")
                        .arg(LOOKUP_SET)
                        .arg(1)
                        .arg(key)
                        .arg(LookupSlot::Fence.encode())
                        .arg(fence_ms)
                        .arg(0);
                }
                Pending::Publish(message) => {
                    pipe.publish(&self.channel, message);
                }
            }
        }
        pipe
    }

    /// Writes invalidations (tombstones, fences, the message for other
    /// instances) in pipelines of [`MAX_PIPELINE`] calls, in order; whether
    /// every one was written. A call that fails is tried once more with more
    /// patience (a timeout under load is not an outage); after that the
    /// caller leaves a hold (see `cache::peers`).
    pub async fn invalidate(&self, writes: &[Pending]) -> bool {
        for chunk in writes.chunks(MAX_PIPELINE) {
            if !self.apply_all(chunk).await && !self.apply_patiently(chunk).await {
                return false;
            }
        }
        true
    }

    /// [`L2::apply_all`] with a longer timeout and without the breaker: for
    /// a write's own invalidation, which is worth a wait.
    async fn apply_patiently(&self, writes: &[Pending]) -> bool {
        let Some(mut connection) = self.connection().await else { return false };
        let pipe = self.pipeline(writes);
        let patience = (self.timeout * 4).max(Duration::from_millis(200));
        matches!(
            tokio::time::timeout(patience, pipe.query_async::<Vec<redis::Value>>(&mut connection)).await,
            Ok(Ok(_))
        )
    }

    /// Acknowledges write `seq` of `writer`: this instance dropped its copies.
    /// Past the breaker (an open breaker must not silence acknowledgements).
    pub async fn acknowledge(&self, channel: &str, payload: String) {
        let Some(mut connection) = self.connection().await else { return };
        let patience = (self.timeout * 4).max(Duration::from_millis(200));
        let sent = tokio::time::timeout(patience, connection.publish::<_, _, i64>(channel, payload)).await;
        if !matches!(sent, Ok(Ok(_))) {
            self.metrics.redis_errors.inc();
        }
    }

    /// Reads profile slots; `None` in a position is a miss (or Redis unusable).
    pub async fn get_profiles(&self, keys: &[String]) -> Vec<Option<ProfileSlot>> {
        if keys.is_empty() {
            return vec![None; keys.len()];
        }
        let values: Option<Vec<Option<Vec<u8>>>> = if let [key] = keys {
            let (reply, answer) = oneshot::channel();
            match self.shared.submit(Shared::Get(key.clone(), reply)).await {
                Ok(()) => answer.await.ok().map(|value| vec![value]),
                Err(_) => None,
            }
        } else {
            self.call(|mut c| async move { c.mget(keys).await }).await
        };
        match values {
            Some(values) if values.len() == keys.len() => {
                values.into_iter().map(|v| v.and_then(|raw| ProfileSlot::decode(&raw))).collect()
            }
            _ => vec![None; keys.len()],
        }
    }

    /// Stores profile slots read from the database (compare-and-set each,
    /// pipelined with concurrent fills and reads).
    pub async fn fill_profiles(&self, slots: Vec<(String, ProfileSlot, Duration)>) {
        let fills = slots.into_iter().map(|(key, slot, ttl)| async move {
            let (done, filled) = oneshot::channel();
            let (version, bytes, ttl_ms) = (slot.version(), slot.encode(), ttl.as_millis() as u64);
            let deadline_ms = fill_deadline();
            if self.shared.submit(Shared::Fill { key, version, bytes, ttl_ms, deadline_ms, done }).await.is_ok() {
                let _ = filled.await;
            }
        });
        futures::future::join_all(fills).await;
    }

    /// Reads an identifier slot.
    pub async fn get_lookup(&self, key: &str) -> Option<LookupSlot> {
        let raw: Option<Vec<u8>> = self.call(|mut c| async move { c.get(key).await }).await.flatten();
        raw.and_then(|raw| LookupSlot::decode(&raw))
    }

    /// Claims `key` for `owner` for `ttl` (renewing its own claim); the
    /// holder afterwards, or `None` when Redis did not answer within `wait`.
    /// On a connection of its own, so it can run before the shared one is up.
    pub async fn claim(&self, key: &str, owner: &str, ttl: Duration, wait: Duration) -> Option<String> {
        let attempt = async {
            let mut connection = self.client.get_multiplexed_async_connection().await?;
            let ttl_ms = ttl.as_millis() as u64;
            Script::new(CLAIM).key(key).arg(owner).arg(ttl_ms).invoke_async::<String>(&mut connection).await
        };
        match tokio::time::timeout(wait, attempt).await {
            Ok(Ok(holder)) => Some(holder),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "Redis claim failed");
                None
            }
            Err(_) => None,
        }
    }

    /// Adds `by` to the counter at `key` (created with lifetime `ttl`); the
    /// new total, or `None` when Redis did not answer.
    pub async fn count(&self, key: &str, by: u64, ttl: Duration) -> Option<u64> {
        let script = &self.count;
        let ttl_ms = ttl.as_millis() as u64;
        self.call(|mut c| async move { script.key(key).arg(by).arg(ttl_ms).invoke_async::<u64>(&mut c).await }).await
    }

    /// Stores an identifier slot read from the database.
    pub async fn fill_lookup(&self, key: &str, slot: LookupSlot, ttl: Duration) {
        let script = &self.lookup_set;
        let (ttl_ms, deadline_ms) = (ttl.as_millis() as u64, fill_deadline());
        self.call(|mut c| async move {
            script.key(key).arg(slot.encode()).arg(ttl_ms).arg(deadline_ms).invoke_async::<i64>(&mut c).await
        })
        .await;
    }
}
