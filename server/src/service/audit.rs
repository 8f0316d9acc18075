//! The audit trail: write audits are made here and committed with their
//! write (in its unit of work); read audits of responses that carried
//! unmasked personal data (and every page of a listing) are coalesced off
//! the request path, one record per subject, action and class set per flush
//! interval, and never dropped: a full buffer makes readers wait, and a
//! graceful shutdown flushes. A chainer hash-chains new records per tenant
//! just after they commit; a pruner drops records past retention.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    auth::{Caller, Permission},
    domain::{
        DomainError, TenantId,
        audit::{AuditRecord, ChainedRecord, MAX_RESOURCE_IDS},
        page::PageRequest,
        privacy::FieldClass,
        profile::now,
    },
    store::{
        self, Store,
        audit::{AuditFilter, chain, prune, tenants, tenants_with_unchained},
    },
};

/// How often the chainer looks for new records.
const CHAIN_EVERY: Duration = Duration::from_millis(500);
/// How often the pruner runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Records written per statement.
const INSERT_CHUNK: usize = 200;

/// Audit settings.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// How long read audits are coalesced before they are written.
    pub flush_interval: Duration,
    /// Read audits waiting to be coalesced.
    pub buffer: usize,
    /// How long records are kept.
    pub retention: Duration,
}

/// One read to audit, as a request reports it.
#[derive(Debug)]
struct Read {
    tenant: TenantId,
    subject: String,
    roles: Vec<String>,
    action: &'static str,
    resource_type: &'static str,
    ids: Vec<String>,
    revealed: Vec<String>,
    request_id: String,
    at: DateTime<Utc>,
}

/// The audit trail; clones share it.
#[derive(Clone)]
pub struct Audit {
    store: Store,
    reads: mpsc::Sender<Read>,
}

/// The trail's background work: coalescing reads, chaining, pruning.
pub struct AuditJobs {
    store: Store,
    reads: mpsc::Receiver<Read>,
    config: AuditConfig,
}

/// A page of audit records.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// Records, newest written first.
    pub records: Vec<ChainedRecord>,
    /// Token for the next page; empty on the last.
    pub next_page_token: String,
}

fn role_names(caller: &Caller) -> Vec<String> {
    caller.roles().iter().map(|r| r.as_str().to_owned()).collect()
}

fn class_names(classes: &BTreeSet<FieldClass>) -> Vec<String> {
    classes.iter().map(|c| c.as_str().to_owned()).collect()
}

impl Audit {
    /// The trail over `store`, and its background work (run it with [`AuditJobs::run`]).
    pub fn new(store: Store, config: AuditConfig) -> (Self, AuditJobs) {
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        (Self { store: store.clone(), reads: tx }, AuditJobs { store, reads: rx, config })
    }

    /// The record of a write by `caller`: add it to the write's unit of work.
    pub fn write(caller: &Caller, action: &str, resource_type: &str, ids: Vec<String>) -> AuditRecord {
        let at = now();
        AuditRecord {
            id: Uuid::now_v7(),
            tenant: caller.tenant().clone(),
            occurred_at: at,
            last_at: at,
            subject: caller.subject().to_owned(),
            roles: role_names(caller),
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_ids: ids,
            count: 1,
            request_id: caller.request_id().to_owned(),
            revealed: Vec::new(),
        }
    }

    /// Audits a read by `caller` of `ids` that revealed `revealed` unmasked;
    /// a read that revealed nothing is audited only when `always` (a page
    /// of a listing). Waits while the buffer is full rather than drop it.
    pub async fn read(
        &self,
        caller: &Caller,
        action: &'static str,
        resource_type: &'static str,
        ids: Vec<String>,
        revealed: &BTreeSet<FieldClass>,
        always: bool,
    ) {
        if (revealed.is_empty() && !always) || ids.is_empty() {
            return;
        }
        let read = Read {
            tenant: caller.tenant().clone(),
            subject: caller.subject().to_owned(),
            roles: role_names(caller),
            action,
            resource_type,
            ids,
            revealed: class_names(revealed),
            request_id: caller.request_id().to_owned(),
            at: now(),
        };
        if self.reads.send(read).await.is_err() {
            // Only after shutdown: the request was served; say so loudly.
            tracing::error!("read audit after the audit trail stopped");
        }
    }

    /// A page of the caller's tenant's trail (admins), newest first.
    pub async fn list(
        &self,
        caller: &Caller,
        filter: AuditFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<AuditPage, DomainError> {
        caller.require(Permission::ReadAudit)?;
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && from >= to
        {
            return Err(DomainError::invalid("end_time", "must be after start_time"));
        }
        let query = format!(
            "audit:{}:{}:{:?}:{:?}",
            filter.subject.as_deref().unwrap_or(""),
            filter.resource_id.as_deref().unwrap_or(""),
            filter.from.map(|t| t.timestamp_micros()),
            filter.to.map(|t| t.timestamp_micros()),
        );
        let page = PageRequest::parse(page_size, page_token, query)?;
        let (records, more) =
            store::audit::list(self.store.db(), caller.tenant(), &filter, page.after, page.size).await?;
        let next_page_token = match records.last() {
            Some(last) if more => page.next_token(last.record.id),
            _ => String::new(),
        };
        Ok(AuditPage { records, next_page_token })
    }
}

/// Reads being coalesced: one entry per subject, roles, action and class set.
#[derive(Default)]
struct Pending {
    entries: HashMap<Key, Entry>,
    ids: usize,
}

struct Entry {
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    request_id: String,
    ids: Vec<String>,
    seen: HashSet<String>,
    count: i64,
}

/// Most ids held in memory before a flush is forced.
const MAX_PENDING_IDS: usize = 100_000;

impl Pending {
    fn add(&mut self, read: Read, full: &mut Vec<AuditRecord>) {
        let key = (read.tenant, read.subject, read.roles, read.action, read.resource_type, read.revealed);
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
            first: read.at,
            last: read.at,
            request_id: read.request_id,
            ids: Vec::new(),
            seen: HashSet::new(),
            count: 0,
        });
        entry.last = read.at;
        entry.count += 1;
        for id in read.ids {
            if entry.seen.insert(id.clone()) {
                entry.ids.push(id);
                self.ids += 1;
            }
        }
        if entry.ids.len() >= MAX_RESOURCE_IDS
            && let Some(entry) = self.entries.remove(&key)
        {
            self.ids -= entry.ids.len();
            full.extend(records(key, entry));
        }
    }

    fn drain(&mut self) -> Vec<AuditRecord> {
        self.ids = 0;
        self.entries.drain().flat_map(|(key, entry)| records(key, entry)).collect()
    }
}

type Key = (TenantId, String, Vec<String>, &'static str, &'static str, Vec<String>);

/// One entry as records of at most [`MAX_RESOURCE_IDS`] ids each.
fn records(key: Key, entry: Entry) -> Vec<AuditRecord> {
    let (tenant, subject, roles, action, resource_type, revealed) = key;
    let chunks: Vec<Vec<String>> = entry.ids.chunks(MAX_RESOURCE_IDS).map(<[String]>::to_vec).collect();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, ids)| AuditRecord {
            id: Uuid::now_v7(),
            tenant: tenant.clone(),
            occurred_at: entry.first,
            last_at: entry.last,
            subject: subject.clone(),
            roles: roles.clone(),
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_ids: ids,
            // The reads are counted once, on the first part.
            count: if i == 0 { entry.count } else { 0 },
            request_id: entry.request_id.clone(),
            revealed: revealed.clone(),
        })
        .collect()
}

impl AuditJobs {
    /// Coalesces and writes read audits, chains and prunes, until `stop`;
    /// then writes what is buffered and chains it.
    pub async fn run(mut self, stop: CancellationToken) {
        let chainer = tokio::spawn(chain_loop(self.store.clone(), stop.clone()));
        let pruner = tokio::spawn(prune_loop(self.store.clone(), self.config.retention, stop.clone()));
        let mut pending = Pending::default();
        let mut tick = tokio::time::interval(self.config.flush_interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut full = Vec::new();
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => full.extend(pending.drain()),
                read = self.reads.recv() => match read {
                    Some(read) => {
                        pending.add(read, &mut full);
                        if pending.ids >= MAX_PENDING_IDS {
                            full.extend(pending.drain());
                        }
                    }
                    None => break,
                },
            }
            self.write(full).await;
        }
        // Shutdown: what is still in the channel, then everything pending.
        self.reads.close();
        let mut full = Vec::new();
        while let Ok(read) = self.reads.try_recv() {
            pending.add(read, &mut full);
        }
        full.extend(pending.drain());
        self.write(full).await;
        let _ = pruner.await;
        let _ = chainer.await;
        if let Err(error) = chain_all(&self.store).await {
            tracing::warn!(%error, "audit records left unchained at shutdown; the next instance chains them");
        }
    }

    /// Writes `records`, retrying while the database is unavailable: a
    /// read audit is never dropped while the process lives.
    async fn write(&self, records: Vec<AuditRecord>) {
        for chunk in records.chunks(INSERT_CHUNK) {
            let mut backoff = Duration::from_millis(100);
            loop {
                match store::audit::insert(self.store.db(), chunk).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, records = chunk.len(), "cannot write read audits; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }
}

/// Chains every tenant's new records, batch by batch.
pub async fn chain_all(store: &Store) -> Result<u64, DomainError> {
    let mut total = 0;
    for tenant in tenants_with_unchained(store.db()).await? {
        loop {
            let chained = chain(store.db(), &tenant).await?;
            total += chained;
            if chained == 0 {
                break;
            }
        }
    }
    Ok(total)
}

async fn chain_loop(store: Store, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHAIN_EVERY) => {}
        }
        if let Err(error) = chain_all(&store).await {
            tracing::warn!(%error, "chaining audit records failed; retrying");
        }
    }
}

async fn prune_loop(store: Store, retention: Duration, stop: CancellationToken) {
    loop {
        let cutoff = Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        match tenants(store.db()).await {
            Ok(tenants) => {
                for tenant in tenants {
                    while let Ok(n) = prune(store.db(), &tenant, cutoff, 10_000).await {
                        if n == 0 {
                            break;
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "pruning audit records failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}
