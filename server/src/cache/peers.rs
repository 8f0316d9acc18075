//! Peers: what the instances sharing a Redis cache agree on, so that once a
//! write returns no instance serves an older copy, whatever Redis does.
//!
//! Redis pub/sub alone cannot promise that: a message arrives some
//! milliseconds after the write returned, or never (a stalled Redis, a call
//! that timed out under load). So:
//!
//! - **Membership.** Every serving instance writes a heartbeat row to the
//!   database every [`POLL`]. Writers know who is alive from those rows.
//! - **Acknowledgements.** A write publishes its invalidation with its
//!   writer's id and a sequence number; every instance drops its copies and
//!   forgets its loads in flight, then acknowledges. The write returns once
//!   every live instance has acknowledged.
//! - **Trust.** An instance serves from its caches (L1, Redis, and loads it
//!   shares) only within [`TRUST`] of a heartbeat that found no hold, while
//!   its invalidation channel is up, and once it has been a member for
//!   [`JOIN`]. Whenever it trusts again after a gap it starts a new *epoch*:
//!   everything cached before is ignored.
//! - **Holds.** A write that cannot confirm every instance dropped its copy
//!   (Redis failed, an acknowledgement did not come) leaves a hold row in
//!   the database, with the Redis writes it still owes, and waits [`TRUST`]
//!   (plus a margin): by then every instance has seen the hold and stopped
//!   trusting, or its trust has lapsed. Any instance pays the owed writes
//!   when Redis answers; holds are released once paid and old enough, and
//!   instances trust again, in a new epoch.
//!
//! Reads while an instance does not trust go to the database: slower, never
//! stale, never failed.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::domain::DomainError;

/// How often an instance beats and checks for holds.
pub const POLL: Duration = Duration::from_millis(200);
/// How long a clean heartbeat lets an instance serve from its caches.
pub const TRUST: Duration = Duration::from_millis(1000);
/// Instances whose last heartbeat is older than this are gone (database time).
pub const MEMBER_WINDOW: Duration = Duration::from_millis(1500);
/// Heartbeats further apart than this (locally) start a new membership.
const CONTINUITY: Duration = Duration::from_millis(1300);
/// Oldest membership list a writer relies on.
pub const FRESH: Duration = Duration::from_millis(300);
/// How long a (re)joined instance waits before serving from its caches:
/// longer than [`FRESH`], so every writer's list names it by then.
pub const JOIN: Duration = Duration::from_millis(500);
/// How long a writer waits for acknowledgements before it leaves a hold.
pub const ACK_PATIENCE: Duration = Duration::from_millis(500);
/// How long a hold stands before it may be released, and a writer waits
/// after leaving one: [`TRUST`] and a margin for clocks and scheduling.
pub const HOLD_WAIT: Duration = Duration::from_millis(1200);
/// Rows of instances silent this long are deleted.
const GONE: Duration = Duration::from_secs(60);

/// Who is alive and whether any hold stands, as the database says.
#[derive(Debug, Clone, Default)]
pub struct Census {
    /// Instances with a heartbeat within [`MEMBER_WINDOW`].
    pub members: Vec<String>,
    /// Holds standing.
    pub holds: i64,
    /// Milliseconds since this instance's previous heartbeat, by the
    /// database's clock (`None`: it had none).
    pub gap_ms: Option<i64>,
}

/// A hold whose Redis writes are still owed.
#[derive(Debug, Clone)]
pub struct OwedHold {
    /// The hold's row.
    pub id: i64,
    /// The writes, as [`super::l2::Pending::encode`] wrote them.
    pub writes: Vec<String>,
}

/// Where instances coordinate beside Redis: the database (`store::peers`).
pub trait Coordination: Send + Sync + 'static {
    /// Marks `instance` alive (when given) and answers the census.
    fn poll<'a>(&'a self, instance: Option<&'a str>, window: Duration) -> BoxFuture<'a, Result<Census, DomainError>>;
    /// Leaves a hold owing `writes` (none: only the wait); answers whether a
    /// hold at least `covered` old still stands, so nobody trusts already.
    fn hold<'a>(&'a self, writes: &'a [String], covered: Duration) -> BoxFuture<'a, Result<bool, DomainError>>;
    /// Holds whose Redis writes are owed.
    fn owed(&self) -> BoxFuture<'_, Result<Vec<OwedHold>, DomainError>>;
    /// Marks holds' writes done.
    fn paid<'a>(&'a self, ids: &'a [i64]) -> BoxFuture<'a, Result<(), DomainError>>;
    /// Deletes paid holds older than `age` and instances silent for `gone`.
    fn release(&self, age: Duration, gone: Duration) -> BoxFuture<'_, Result<(), DomainError>>;
    /// Deletes `instance`'s row: it serves no more.
    fn leave<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Result<(), DomainError>>;
}

/// This instance's standing among its peers.
pub struct Peers {
    /// This instance's id (random per process).
    pub id: String,
    /// Whether it serves reads (a server) or only writes (a CLI command).
    member: bool,
    coordination: OnceLock<Arc<dyn Coordination>>,
    base: Instant,
    /// Nanoseconds since `base` until which the caches may be served.
    trusted_until: AtomicU64,
    /// Set by anything that ends trust early (a hold, a lost channel): the
    /// next trust starts a new epoch.
    stale: AtomicBool,
    epoch: AtomicU64,
    seq: AtomicU64,
    state: std::sync::Mutex<State>,
    waiting: std::sync::Mutex<HashMap<u64, Waiter>>,
}

#[derive(Default)]
struct State {
    /// The other members and when their list was asked for.
    members: Option<(Vec<String>, Instant)>,
    /// When this instance's current membership began, and its last heartbeat.
    member_since: Option<Instant>,
    last_beat: Option<Instant>,
}

struct Waiter {
    acked: HashSet<String>,
    notify: Arc<Notify>,
}

/// A write's wait for acknowledgements (see [`Peers::expect`]).
pub struct Expected<'a> {
    peers: &'a Peers,
    seq: u64,
    notify: Arc<Notify>,
}

impl Drop for Expected<'_> {
    fn drop(&mut self) {
        self.peers.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.seq);
    }
}

impl Expected<'_> {
    /// The write's sequence number, for its message.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Waits until every one of `members` acknowledged, up to `patience`.
    pub async fn all(&self, members: &[String], patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.notify.notified();
            {
                let waiting = self.peers.waiting.lock().unwrap_or_else(|e| e.into_inner());
                let Some(waiter) = waiting.get(&self.seq) else { return false };
                if members.iter().all(|m| waiter.acked.contains(m)) {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }
}

impl Peers {
    /// A new instance id; `member`: it serves reads from its caches.
    pub fn new(member: bool) -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            member,
            coordination: OnceLock::new(),
            base: Instant::now(),
            trusted_until: AtomicU64::new(0),
            stale: AtomicBool::new(true),
            epoch: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            state: std::sync::Mutex::new(State::default()),
            waiting: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Whether this instance serves reads (and so acknowledges writes).
    pub fn is_member(&self) -> bool {
        self.member
    }

    /// Attaches the database; answers false if one was attached already.
    pub fn attach(&self, coordination: Arc<dyn Coordination>) -> bool {
        self.coordination.set(coordination).is_ok()
    }

    /// The database, once attached.
    pub fn coordination(&self) -> Option<&Arc<dyn Coordination>> {
        self.coordination.get()
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The current epoch when the caches may be served now; `None` otherwise.
    pub fn trusted(&self) -> Option<u64> {
        // The deadline first: a new epoch is counted before its deadline is
        // stored, so a deadline seen here brings its epoch with it.
        let until = self.trusted_until.load(Ordering::Acquire);
        let epoch = self.epoch.load(Ordering::Acquire);
        (self.nanos(Instant::now()) < until).then_some(epoch)
    }

    /// The current epoch (whether trusted or not): what fills are tagged with.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stops trusting the caches until the next clean heartbeat, which starts
    /// a new epoch.
    pub fn distrust(&self) {
        self.stale.store(true, Ordering::Release);
        self.trusted_until.store(0, Ordering::Release);
    }

    /// Records a heartbeat's outcome: `sent` when it was sent, `clean` whether
    /// it found no hold (and the channel is up). When trust resumes after any
    /// gap, a new epoch begins: `new_epoch` runs (dropping what was cached
    /// and loading before) before any reader can trust the caches again.
    pub fn beat(&self, sent: Instant, census: &Census, clean: bool, new_epoch: impl FnOnce()) {
        let now = Instant::now();
        let joined = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let others = census.members.iter().filter(|m| **m != self.id).cloned().collect();
            state.members = Some((others, sent));
            if !self.member {
                return;
            }
            // Continuous by both clocks: writers drop a member by the
            // database's, this instance measures its trust by its own.
            let local = state.last_beat.is_some_and(|last| sent.saturating_duration_since(last) < CONTINUITY);
            let remote = census.gap_ms.is_some_and(|gap| u128::try_from(gap).is_ok_and(|g| g < CONTINUITY.as_millis()));
            if !(local && remote) {
                // Writers may not list this instance yet: not before JOIN.
                state.member_since = Some(now);
                self.distrust();
            }
            state.last_beat = Some(sent);
            state.member_since.is_some_and(|since| now.saturating_duration_since(since) >= JOIN)
        };
        if !(clean && joined) {
            self.distrust();
            return;
        }
        let lapsed = self.stale.swap(false, Ordering::AcqRel) || self.trusted().is_none();
        if lapsed {
            // Readers are not trusting now (the deadline passed or was
            // cleared): the new epoch and the drop happen before they can.
            self.trusted_until.store(0, Ordering::Release);
            self.epoch.fetch_add(1, Ordering::AcqRel);
            new_epoch();
        }
        self.trusted_until.store(self.nanos(sent + TRUST), Ordering::Release);
        if self.stale.load(Ordering::Acquire) {
            // Distrusted meanwhile (a lost channel): that wins.
            self.trusted_until.store(0, Ordering::Release);
        }
    }

    /// The other members, from a list at most [`FRESH`] old; asks the
    /// database when the last one is older. `None`: nobody can tell.
    pub async fn members(&self) -> Option<Vec<String>> {
        {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((members, at)) = &state.members
                && at.elapsed() < FRESH
            {
                return Some(members.clone());
            }
        }
        let coordination = self.coordination.get()?;
        let sent = Instant::now();
        let census = coordination.poll(None, MEMBER_WINDOW).await.ok()?;
        let others: Vec<String> = census.members.into_iter().filter(|m| *m != self.id).collect();
        self.state.lock().unwrap_or_else(|e| e.into_inner()).members = Some((others.clone(), sent));
        Some(others)
    }

    /// Starts waiting for acknowledgements of the next write (before its message goes out).
    pub fn expect(&self) -> Expected<'_> {
        let seq = self.seq.fetch_add(1, Ordering::AcqRel);
        let notify = Arc::new(Notify::new());
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(seq, Waiter { acked: HashSet::new(), notify: Arc::clone(&notify) });
        Expected { peers: self, seq, notify }
    }

    /// Records `from`'s acknowledgement of write `seq`.
    pub fn acked(&self, seq: u64, from: &str) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waiter) = waiting.get_mut(&seq) {
            waiter.acked.insert(from.to_owned());
            waiter.notify.notify_one();
        }
    }

    /// Leaves a hold owing `writes` and waits until no instance can still
    /// trust a copy older than the write. Err: the hold could not be written.
    pub async fn hold(&self, writes: &[String]) -> Result<(), DomainError> {
        self.distrust();
        let coordination = self
            .coordination
            .get()
            .ok_or_else(|| DomainError::Unavailable("the cache's peers are not known yet".to_owned()))?;
        let covered = coordination.hold(writes, HOLD_WAIT).await?;
        if !covered {
            tokio::time::sleep(HOLD_WAIT).await;
        }
        Ok(())
    }

    /// Deletes paid holds old enough and instances long gone.
    pub async fn release(&self) {
        if let Some(coordination) = self.coordination.get()
            && let Err(e) = coordination.release(HOLD_WAIT, GONE).await
        {
            tracing::debug!(error = %e, "releasing cache holds failed");
        }
    }

    /// Removes this instance from the members (it serves no more).
    pub async fn leave(&self) {
        self.distrust();
        if let Some(coordination) = self.coordination.get()
            && self.member
            && let Err(e) = coordination.leave(&self.id).await
        {
            tracing::debug!(error = %e, "leaving the cache's members failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn census(members: &[&str]) -> Census {
        Census { members: members.iter().map(|m| (*m).to_owned()).collect(), holds: 0, gap_ms: Some(200) }
    }

    /// A beat; whether it started a new epoch.
    fn beat(peers: &Peers, census: &Census, clean: bool) -> bool {
        let mut began = false;
        peers.beat(Instant::now(), census, clean, || began = true);
        began
    }

    #[test]
    fn trust_comes_only_after_joining_and_each_gap_starts_a_new_epoch() {
        let peers = Peers::new(true);
        let first = Census { gap_ms: None, ..census(&[&peers.id]) };
        assert!(!beat(&peers, &first, true), "a new member waits JOIN");
        assert_eq!(peers.trusted(), None);
        // JOIN later, still continuous: trusted, in a new epoch.
        std::thread::sleep(JOIN);
        assert!(beat(&peers, &census(&[&peers.id]), true));
        let epoch = peers.trusted().expect("trusted");
        assert!(!beat(&peers, &census(&[]), true), "same epoch while trusted");
        assert_eq!(peers.trusted(), Some(epoch));
        // A hold: no trust; the next clean beat starts a new epoch.
        assert!(!beat(&peers, &census(&[]), false));
        assert_eq!(peers.trusted(), None);
        assert!(beat(&peers, &census(&[]), true));
        assert_eq!(peers.trusted(), Some(epoch + 1));
        // A lost channel does the same.
        peers.distrust();
        assert_eq!(peers.trusted(), None);
        assert!(beat(&peers, &census(&[]), true));
        assert_eq!(peers.trusted(), Some(epoch + 2));
        // Dropped from the writers' lists by the database's clock: it joins
        // again, and waits JOIN again.
        let gap = Census { gap_ms: Some(1_600), ..census(&[]) };
        assert!(!beat(&peers, &gap, true));
        assert_eq!(peers.trusted(), None);
        assert!(!beat(&peers, &census(&[]), true), "still within JOIN");
    }

    #[tokio::test]
    async fn a_write_waits_for_every_member_and_no_longer_than_its_patience() {
        let peers = Peers::new(true);
        let expected = peers.expect();
        let members = vec!["a".to_owned(), "b".to_owned()];
        peers.acked(expected.seq(), "a");
        assert!(!expected.all(&members, Duration::from_millis(30)).await, "b never answered");
        peers.acked(expected.seq(), "b");
        assert!(expected.all(&members, Duration::from_millis(30)).await);
        assert!(expected.all(&[], Duration::ZERO).await, "nobody else: no wait");
        drop(expected);
        assert!(peers.waiting.lock().expect("lock").is_empty(), "forgotten when done");
    }
}
