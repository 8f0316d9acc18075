//! The relay: publishes the stamped outbox rows of the lanes it holds, in
//! position order, and records per lane how far the broker acknowledged.
//!
//! Several instances may run it. Each holds a fair share of the lanes under
//! a lease it renews; a lane whose lease lapsed (its relay died or stalled)
//! is taken over by another, which resumes from the lane's acknowledged
//! position. A stalled relay that wakes up after losing its lane may still
//! send what it had in hand: those are duplicates of events the new owner
//! sends in the same order, so every event's first delivery keeps the
//! customer's order (consumers dedupe by eventId).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use sea_orm::{DatabaseConnection, TransactionTrait};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::sink::{EventSink, Message, Outcome};
use crate::{
    metrics::OutboxMetrics,
    store::{
        db_error,
        outbox::{self, LANES, Stamped},
    },
};

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Most events sent before waiting for their acknowledgements.
    pub batch: u64,
    /// How long a lease on a lane lasts unless renewed.
    pub lease: Duration,
    /// How often to look for rows when nothing announced any.
    pub poll: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self { batch: 10_000, lease: Duration::from_secs(10), poll: Duration::from_millis(200) }
    }
}

/// One relay instance.
pub struct Relay<S> {
    db: DatabaseConnection,
    sink: S,
    id: String,
    config: RelayConfig,
    stamped: watch::Receiver<i64>,
    metrics: OutboxMetrics,
    /// Lanes held, with their acknowledged positions.
    lanes: Vec<(i16, i64)>,
    /// The next round's rows, read while this round's acknowledgements were
    /// awaited, with the lane positions they were read for.
    prefetched: Option<(Vec<(i16, i64)>, outbox::Pending)>,
}

/// Longest pause between attempts while the broker or database fails.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl<S: EventSink> Relay<S> {
    /// A relay publishing to `sink`, woken by new stamps on `stamped`.
    pub fn new(
        db: DatabaseConnection,
        sink: S,
        config: RelayConfig,
        stamped: watch::Receiver<i64>,
        metrics: OutboxMetrics,
    ) -> Self {
        let id = format!("relay-{}", Uuid::now_v7());
        Self { db, sink, id, config, stamped, metrics, lanes: Vec::new(), prefetched: None }
    }

    /// This relay's id (as it appears in `outbox_lanes.owner`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The sink (to flush it on shutdown).
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Publishes until `stop`, then gives its lanes up.
    pub async fn run(mut self, stop: CancellationToken) -> Self {
        let mut backoff = Duration::ZERO;
        let mut outage: Option<(tokio::time::Instant, String)> = None;
        let mut prepared = false;
        let mut last_lease = None::<tokio::time::Instant>;
        // Measured, and leases kept, on their own: a round can wait long for
        // the broker, and a lease must not lapse while its owner waits.
        let gauges = tokio::spawn(gauges(self.db.clone(), self.metrics.clone(), stop.clone()));
        let alive = Arc::new(AtomicI64::new(Utc::now().timestamp_millis()));
        let _keeper = AbortOnDrop(tokio::spawn(keep_leases(
            self.db.clone(),
            self.id.clone(),
            self.config.lease,
            Arc::clone(&alive),
            stop.clone(),
        )));
        let progress = || alive.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
        loop {
            if stop.is_cancelled() {
                break;
            }
            if !backoff.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => break,
                }
            }
            if !prepared {
                match self.sink.prepare().await {
                    Ok(()) => {
                        prepared = true;
                        progress();
                        if let Some((since, _)) = outage.take() {
                            tracing::info!(after = ?since.elapsed(), "broker reachable again; catching up");
                        }
                    }
                    Err(e) => {
                        outage.get_or_insert_with(|| {
                            tracing::warn!(error = %e, "broker unreachable: events wait in the outbox; retrying with back-off");
                            (tokio::time::Instant::now(), e)
                        });
                        backoff = next_backoff(backoff);
                        continue;
                    }
                }
            }
            if last_lease.is_none_or(|at| at.elapsed() >= self.config.lease / 3) {
                match self.rebalance().await {
                    Ok(()) => last_lease = Some(tokio::time::Instant::now()),
                    Err(e) => {
                        tracing::warn!(error = %e, "relay cannot renew its lanes; retrying");
                        backoff = next_backoff(backoff);
                        continue;
                    }
                }
            }
            match self.publish_once().await {
                Ok(Progress::Published(n)) => {
                    progress();
                    if let Some((since, _)) = outage.take() {
                        tracing::info!(after = ?since.elapsed(), "broker reachable again; catching up");
                    }
                    backoff = Duration::ZERO;
                    tracing::trace!(events = n, "published");
                }
                Ok(Progress::Idle) => {
                    progress();
                    backoff = Duration::ZERO;
                    tokio::select! {
                        () = super::next_stamp(&mut self.stamped, self.config.poll) => {}
                        () = stop.cancelled() => break,
                    }
                }
                Ok(Progress::Failed(reason)) => {
                    self.metrics.publish_errors.inc();
                    outage.get_or_insert_with(|| {
                        tracing::warn!(reason = %reason, "broker did not acknowledge events: they wait in the outbox; retrying with back-off");
                        (tokio::time::Instant::now(), reason)
                    });
                    backoff = next_backoff(backoff);
                    prepared = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relay cannot read or update the outbox; retrying");
                    backoff = next_backoff(backoff);
                }
            }
        }
        gauges.abort();
        if let Err(e) = outbox::leave(&self.db, &self.id).await {
            tracing::warn!(error = %e, "relay could not give its lanes up; they lapse with the lease");
        }
        self.lanes.clear();
        self
    }

    /// Renews this relay's leases, then gives up lanes beyond its fair share
    /// or takes free ones up to it.
    async fn rebalance(&mut self) -> Result<(), crate::domain::DomainError> {
        let now = Utc::now();
        let lease = chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::seconds(10));
        let live = outbox::heartbeat(&self.db, &self.id, now, now - lease).await?;
        let share = usize::try_from((LANES as u64).div_ceil(live)).unwrap_or(LANES as usize);
        let mut held = outbox::renew(&self.db, &self.id, now + lease).await?;
        if held.len() > share {
            let extra: Vec<i16> = held.split_off(share).into_iter().map(|(lane, _)| lane).collect();
            outbox::release(&self.db, &self.id, &extra).await?;
            tracing::info!(lanes = ?extra, "relay gave lanes up to another instance");
        } else if held.len() < share {
            let taken = outbox::claim(&self.db, &self.id, now, now + lease, (share - held.len()) as u64).await?;
            if !taken.is_empty() {
                tracing::info!(lanes = ?taken.iter().map(|(lane, _)| lane).collect::<Vec<_>>(), "relay took lanes");
            }
            held.extend(taken);
            held.sort_unstable();
        }
        self.lanes = held;
        self.metrics.lanes_held.set(self.lanes.len() as i64);
        Ok(())
    }

    /// One round: rows an operator asked to retry, then the next batch.
    async fn publish_once(&mut self) -> Result<Progress, crate::domain::DomainError> {
        // Seen from here on: a stamp made while this round reads wakes the
        // next wait at once instead of being taken for already read.
        self.stamped.borrow_and_update();
        if self.lanes.is_empty() {
            return Ok(Progress::Idle);
        }
        let held: Vec<i16> = self.lanes.iter().map(|(lane, _)| *lane).collect();
        let parked = outbox::parked(&self.db, Some(&held)).await?;
        let retried = self.retry_parked(&parked).await?;
        if let Progress::Failed(reason) = retried {
            return Ok(Progress::Failed(reason));
        }
        let parked = if matches!(retried, Progress::Published(_)) {
            outbox::parked(&self.db, Some(&held)).await?
        } else {
            parked
        };
        // The refused row each blocked customer waits behind.
        let mut blocked: HashMap<(String, Uuid), i64> = HashMap::new();
        for row in &parked {
            let key = (row.tenant_id.clone(), row.aggregate_id);
            let refused = row.waits_for.unwrap_or(row.seq);
            blocked.entry(key).or_insert(refused);
        }
        let pending = match self.prefetched.take() {
            // An empty read is stale by now: stamps announced since were
            // marked seen, so read again rather than wait for the next one.
            Some((lanes, pending)) if lanes == self.lanes && !pending.rows.is_empty() => pending,
            _ => outbox::pending(&self.db, &self.lanes, self.config.batch).await?,
        };
        let rows = pending.rows;
        if rows.is_empty() {
            // Lanes behind what was scanned have nothing up to it: move
            // them on, or the scan would start below them forever.
            let behind: HashMap<i16, i64> = self
                .lanes
                .iter()
                .filter(|(_, pos)| *pos < pending.scanned_to)
                .map(|(lane, _)| (*lane, pending.scanned_to))
                .collect();
            if !behind.is_empty() {
                self.settle(&behind, &[], &[]).await?;
            }
            return Ok(match retried {
                Progress::Published(n) => Progress::Published(n),
                _ => Progress::Idle,
            });
        }
        let (to_send, held_back): (Vec<&Stamped>, Vec<&Stamped>) =
            rows.iter().partition(|row| !blocked.contains_key(&(row.tenant.clone(), row.aggregate_id)));
        // With a backlog (a full round), read the next round while the
        // broker acknowledges this one; it is used only if every lane ends
        // this round where it was scanned to. Without one, the next round
        // reads after this one, so the newest events are not held back.
        let next_lanes: Vec<(i16, i64)> = self.lanes.iter().map(|(lane, _)| (*lane, pending.scanned_to)).collect();
        let backlog = rows.len() as u64 >= self.config.batch;
        let prefetch = async {
            if backlog { Some(outbox::pending(&self.db, &next_lanes, self.config.batch).await) } else { None }
        };
        let (outcomes, next) = tokio::join!(self.send(&to_send), prefetch);
        let mut settled: HashMap<i16, i64> = HashMap::new();
        let mut stopped: Vec<i16> = Vec::new();
        let mut refusals: Vec<(&Stamped, String)> = Vec::new();
        let mut holds: Vec<(&Stamped, i64)> = Vec::new();
        let mut failure = None;
        let mut delivered = 0u64;
        // Customers with a row refused in this round (by its seq).
        let mut refused_here: HashMap<(String, Uuid), i64> = HashMap::new();
        // Walk every row in position order; a lane's position advances over
        // rows that are delivered, refused (parked) or held behind a refusal,
        // and stops at the first that must be sent again.
        let mut outcome_of: HashMap<i64, Outcome> =
            to_send.iter().zip(outcomes).map(|(row, outcome)| (row.seq, outcome)).collect();
        for row in &rows {
            if stopped.contains(&row.lane) {
                continue;
            }
            let key = (row.tenant.clone(), row.aggregate_id);
            match outcome_of.remove(&row.seq) {
                None | Some(Outcome::NotSent) => {
                    // Held back: behind a customer's refused row.
                    let Some(refused) = blocked.get(&key).copied() else {
                        stopped.push(row.lane);
                        continue;
                    };
                    holds.push((row, refused));
                }
                Some(Outcome::Delivered) => {
                    delivered += 1;
                    if let Some(refused) = refused_here.get(&key) {
                        tracing::warn!(refused, delivered = row.seq, customer = %row.aggregate_id,
                            "the broker refused an event in its acknowledgement after accepting a later event of the \
                             same customer: the later one stays delivered, the refused one arrives after it if retried");
                    }
                }
                Some(Outcome::Refused(reason)) => {
                    refused_here.insert(key.clone(), row.seq);
                    blocked.insert(key, row.seq);
                    refusals.push((row, reason));
                }
                Some(Outcome::Failed(reason)) => {
                    failure.get_or_insert(reason);
                    stopped.push(row.lane);
                    continue;
                }
            }
            settled.insert(row.lane, row.pos);
        }
        // Lanes that had no row in this round, or none after their last one,
        // have nothing more up to what was scanned.
        for (lane, _) in &self.lanes {
            if !stopped.contains(lane) {
                let at = settled.entry(*lane).or_insert(pending.scanned_to);
                *at = (*at).max(pending.scanned_to);
            }
        }
        debug_assert!(held_back.iter().all(|row| blocked.contains_key(&(row.tenant.clone(), row.aggregate_id))));
        self.settle(&settled, &refusals, &holds).await?;
        if let Some(Ok(next)) = next
            && self.lanes == next_lanes
        {
            self.prefetched = Some((next_lanes, next));
        }
        self.metrics.published.inc_by(delivered);
        Ok(match failure {
            Some(reason) => Progress::Failed(reason),
            None => Progress::Published(delivered + retried.count()),
        })
    }

    /// Publishes the parked rows of customers an operator released (retry
    /// or skip), in position order; a row refused again stays parked and
    /// the customer's later rows wait behind it.
    async fn retry_parked(
        &self,
        parked: &[c360_entity::outbox_parked::Model],
    ) -> Result<Progress, crate::domain::DomainError> {
        let released: std::collections::HashSet<(String, Uuid)> = parked
            .iter()
            .filter(|row| row.retry_requested)
            .map(|row| (row.tenant_id.clone(), row.aggregate_id))
            .collect();
        if released.is_empty() {
            return Ok(Progress::Idle);
        }
        // A customer whose refused row is still parked without a retry stays blocked.
        let still_refused: std::collections::HashSet<(String, Uuid)> = parked
            .iter()
            .filter(|row| row.waits_for.is_none() && !row.retry_requested)
            .map(|row| (row.tenant_id.clone(), row.aggregate_id))
            .collect();
        let seqs: Vec<i64> = parked
            .iter()
            .filter(|row| {
                let key = (row.tenant_id.clone(), row.aggregate_id);
                released.contains(&key) && !still_refused.contains(&key)
            })
            .map(|row| row.seq)
            .collect();
        let rows = outbox::by_seq(&self.db, &seqs).await?;
        if rows.is_empty() {
            return Ok(Progress::Idle);
        }
        let refs: Vec<&Stamped> = rows.iter().collect();
        let outcomes = self.send(&refs).await;
        let mut done = Vec::new();
        let mut refusals = Vec::new();
        let mut holds = Vec::new();
        let mut refused_at: HashMap<(String, Uuid), i64> = HashMap::new();
        let mut failure = None;
        for (row, outcome) in rows.iter().zip(outcomes) {
            let key = (row.tenant.clone(), row.aggregate_id);
            match outcome {
                Outcome::Delivered if !refused_at.contains_key(&key) => done.push(row.seq),
                Outcome::Refused(reason) => {
                    refused_at.insert(key, row.seq);
                    refusals.push((row, reason));
                }
                Outcome::Failed(reason) => {
                    failure.get_or_insert(reason);
                }
                Outcome::Delivered | Outcome::NotSent => {
                    if let Some(refused) = refused_at.get(&key) {
                        holds.push((row, *refused));
                    }
                }
            }
        }
        let tx = self.db.begin().await.map_err(db_error)?;
        park_all(&tx, &refusals, &holds, |_| true).await?;
        outbox::unpark(&tx, &done).await?;
        tx.commit().await.map_err(db_error)?;
        self.metrics.published.inc_by(done.len() as u64);
        if !done.is_empty() {
            tracing::info!(events = done.len(), "published parked events an operator released");
        }
        Ok(match failure {
            Some(reason) => Progress::Failed(reason),
            None if done.is_empty() => Progress::Idle,
            None => Progress::Published(done.len() as u64),
        })
    }

    async fn send(&self, rows: &[&Stamped]) -> Vec<Outcome> {
        if rows.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = rows.iter().map(|row| row.aggregate_id.to_string()).collect();
        let ids: Vec<String> = rows.iter().map(|row| row.event_id.to_string()).collect();
        let messages: Vec<Message<'_>> = rows
            .iter()
            .zip(keys.iter().zip(&ids))
            .map(|(row, (key, id))| Message {
                topic: &row.subject,
                key,
                event_type: &row.event_type,
                event_id: id,
                tenant: &row.tenant,
                value: row.envelope.as_bytes(),
            })
            .collect();
        self.sink.publish(&messages).await
    }

    /// Records refusals and holds, then advances each lane's position, in
    /// one transaction; drops lanes another relay took meanwhile.
    async fn settle(
        &mut self,
        settled: &HashMap<i16, i64>,
        refusals: &[(&Stamped, String)],
        holds: &[(&Stamped, i64)],
    ) -> Result<(), crate::domain::DomainError> {
        let tx = self.db.begin().await.map_err(db_error)?;
        // Only for lanes still held (locked until commit): a lane another
        // relay took is its business now.
        let asked: Vec<i16> = self.lanes.iter().map(|(lane, _)| *lane).collect();
        let held = outbox::hold(&tx, &self.id, &asked).await?;
        park_all(&tx, refusals, holds, |row| held.contains(&row.lane)).await?;
        let mut lost: Vec<i16> = asked.iter().copied().filter(|lane| !held.contains(lane)).collect();
        for (lane, pos) in settled.iter().filter(|(lane, _)| held.contains(lane)) {
            let known = self.lanes.iter().find(|(l, _)| l == lane).map_or(0, |(_, p)| *p);
            if *pos > known && !outbox::advance(&tx, &self.id, *lane, *pos).await? {
                lost.push(*lane);
            }
        }
        tx.commit().await.map_err(db_error)?;
        for (lane, known) in &mut self.lanes {
            if let Some(pos) = settled.get(lane) {
                *known = (*known).max(*pos);
            }
        }
        if !lost.is_empty() {
            tracing::warn!(lanes = ?lost, "relay lost lanes to another instance (lease lapsed)");
            self.lanes.retain(|(lane, _)| !lost.contains(lane));
        }
        Ok(())
    }
}

/// What one round achieved.
enum Progress {
    /// Nothing to publish.
    Idle,
    /// This many events acknowledged.
    Published(u64),
    /// The broker did not acknowledge something; try again later.
    Failed(String),
}

impl Progress {
    fn count(&self) -> u64 {
        match self {
            Self::Published(n) => *n,
            _ => 0,
        }
    }
}

/// Parks the rows the broker refused for good, with their reasons, and the
/// rows held behind them (with the refused row's `seq`), of the lanes `keep`
/// admits.
async fn park_all(
    tx: &sea_orm::DatabaseTransaction,
    refusals: &[(&Stamped, String)],
    holds: &[(&Stamped, i64)],
    keep: impl Fn(&Stamped) -> bool,
) -> Result<(), crate::domain::DomainError> {
    let now = Utc::now();
    for (row, reason) in refusals.iter().filter(|(row, _)| keep(row)) {
        tracing::warn!(seq = row.seq, event = %row.event_type, reason = %reason,
            "the broker refused an event for good: parked; the customer's later events wait (c360 outbox list|retry|skip)");
        outbox::park(tx, row, reason, None, now).await?;
    }
    for (row, refused) in holds.iter().filter(|(row, _)| keep(row)) {
        outbox::park(tx, row, &format!("waits for refused event {refused}"), Some(*refused), now).await?;
    }
    Ok(())
}

/// Updates the lag and parked gauges every second until `stop`.
async fn gauges(db: DatabaseConnection, metrics: OutboxMetrics, stop: CancellationToken) {
    loop {
        match outbox::oldest_unpublished(&db).await {
            Ok(oldest) => {
                let lag = oldest.map_or(0.0, |at| (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0);
                metrics.lag_seconds.set(lag);
            }
            Err(e) => tracing::debug!(error = %e, "cannot measure the outbox lag"),
        }
        if let Ok(refused) = outbox::refused_count(&db).await {
            metrics.parked.set(i64::try_from(refused).unwrap_or(i64::MAX));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Aborts a task when dropped (also when its owner panics).
/// A task that ends with its owner (a panic or a dropped future included).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps this relay alive and its leases renewed every third of `lease`,
/// until `stop`, whatever one round is waiting for — but only while the
/// relay makes progress (`alive`, epoch ms, moved by each round that reached
/// the broker or found nothing to do): a relay that cannot reach the broker
/// for three leases lets its lanes go to an instance that may.
async fn keep_leases(
    db: DatabaseConnection,
    id: String,
    lease: Duration,
    alive: Arc<AtomicI64>,
    stop: CancellationToken,
) {
    let ttl = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(10));
    loop {
        tokio::select! {
            () = tokio::time::sleep(lease / 3) => {}
            () = stop.cancelled() => return,
        }
        let now = Utc::now();
        if now.timestamp_millis() - alive.load(Ordering::Relaxed) > 3 * ttl.num_milliseconds() {
            continue;
        }
        let renewed = async {
            outbox::heartbeat(&db, &id, now, now - ttl).await?;
            outbox::renew(&db, &id, now + ttl).await
        };
        if let Err(e) = renewed.await {
            tracing::warn!(error = %e, "relay cannot renew its leases; its lanes move to another instance if this lasts");
        }
    }
}

fn next_backoff(current: Duration) -> Duration {
    (current * 2).clamp(Duration::from_millis(200), MAX_BACKOFF)
}
