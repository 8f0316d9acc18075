//! The audit trail: write audits are made here and committed with their
//! write (in its unit of work); read audits of responses that carried
//! unmasked personal data (and every page of a listing) are coalesced off
//! the request path, one record per subject, roles, action and class set per
//! flush interval, and never dropped: a full buffer makes readers wait, and
//! a graceful shutdown flushes. A chainer hash-chains new records per tenant
//! just after they commit; a pruner drops records past retention.
//!
//! A read pays for a short lock and a map update, no allocation once its
//! subject has read in this interval, and no task switch: the writer wakes
//! on its interval (or when the buffer fills), not per read.

use std::{
    collections::{BTreeSet, HashMap, HashSet, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    auth::{Caller, Permission, Role},
    domain::{
        DomainError, ProfileId, TenantId,
        audit::{AuditRecord, ChainedRecord, MAX_RESOURCE_IDS},
        page::PageTokens,
        privacy::FieldClass,
        profile::now,
    },
    store::{
        self, Store, UnitOfWork,
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
    /// Most profile ids held by coalesced reads; readers wait beyond it.
    pub buffer: usize,
    /// How long records are kept.
    pub retention: Duration,
}

/// The audit trail; clones share it.
#[derive(Clone)]
pub struct Audit {
    store: Store,
    reads: Arc<Reads>,
    pages: PageTokens,
}

/// Reads being coalesced, shared by the request path and the writer.
struct Reads {
    pending: Mutex<Pending>,
    /// Most ids `pending` may hold.
    capacity: usize,
    /// Wakes the writer early: the buffer is full.
    full: Notify,
    /// Wakes readers waiting for room: the writer took the buffer.
    drained: Notify,
}

/// The trail's background work: writing coalesced reads, chaining, pruning.
pub struct AuditJobs {
    store: Store,
    reads: Arc<Reads>,
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

fn role_names(roles: &[Role]) -> Vec<String> {
    roles.iter().map(|r| r.as_str().to_owned()).collect()
}

/// Audits a bulk write by `caller` (a CLI command) of `rows` rows about
/// the profiles `ids`: one record per [`MAX_RESOURCE_IDS`] profiles, the
/// first counting the rows; nothing when `ids` is empty.
pub fn audit_bulk(work: &mut UnitOfWork, caller: &Caller, action: &str, ids: Vec<String>, rows: usize) {
    for (i, chunk) in ids.chunks(MAX_RESOURCE_IDS).enumerate() {
        let mut record = Audit::write(caller, action, "profile", chunk.to_vec());
        record.count = if i == 0 { rows as i64 } else { 0 };
        work.audit(record);
    }
}

impl Audit {
    /// The trail over `store`, and its background work (run it with [`AuditJobs::run`]).
    pub fn new(store: Store, config: AuditConfig, pages: PageTokens) -> (Self, AuditJobs) {
        let reads = Arc::new(Reads {
            pending: Mutex::new(Pending::default()),
            capacity: config.buffer.max(MAX_RESOURCE_IDS),
            full: Notify::new(),
            drained: Notify::new(),
        });
        (Self { store: store.clone(), reads: Arc::clone(&reads), pages }, AuditJobs { store, reads, config })
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
            roles: role_names(caller.roles()),
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_ids: ids,
            count: 1,
            request_id: caller.request_id().to_owned(),
            revealed: Vec::new(),
        }
    }

    /// Audits a read by `caller` of the profiles `ids` that revealed
    /// `revealed` unmasked; a read that revealed nothing is audited only when
    /// `always` (a page of a listing), and then `ids` is never walked. Waits
    /// while the buffer is full rather than drop it.
    pub async fn read(
        &self,
        caller: &Caller,
        action: &'static str,
        ids: impl IntoIterator<Item = ProfileId>,
        revealed: &BTreeSet<FieldClass>,
        always: bool,
    ) {
        if revealed.is_empty() && !always {
            return;
        }
        let mut ids = ids.into_iter().peekable();
        if ids.peek().is_none() {
            return;
        }
        let reads = &self.reads;
        let at = now();
        loop {
            // Registered before the check, so a drain between the two is not missed.
            let drained = reads.drained.notified();
            {
                let mut pending = reads.pending.lock().unwrap_or_else(PoisonError::into_inner);
                if pending.ids < reads.capacity {
                    pending.add(caller, action, ids.by_ref(), revealed, at);
                    if pending.ids >= reads.capacity {
                        reads.full.notify_one();
                    }
                    return;
                }
            }
            reads.full.notify_one();
            drained.await;
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
        // JSON frames the fields: no two filters give the same text.
        let query = serde_json::json!([
            "audit",
            filter.subject,
            filter.resource_id,
            filter.from.map(|t| t.timestamp_micros()),
            filter.to.map(|t| t.timestamp_micros()),
        ])
        .to_string();
        let page = self.pages.request(page_size, page_token, caller.tenant(), query)?;
        let (records, more) =
            store::audit::list(self.store.db(), caller.tenant(), &filter, page.after, page.size).await?;
        let next_page_token = match records.last() {
            Some(last) if more => page.next_token(last.record.id),
            _ => String::new(),
        };
        Ok(AuditPage { records, next_page_token })
    }
}

/// Reads being coalesced: one entry per tenant, subject, roles, action and
/// class set, found by a fingerprint of those so that a repeated read
/// allocates nothing.
#[derive(Default)]
struct Pending {
    entries: HashMap<u64, Vec<Entry>>,
    /// Entries that reached [`MAX_RESOURCE_IDS`]: ready to write.
    ready: Vec<AuditRecord>,
    /// Ids held, in entries and in `ready`: what the capacity bounds.
    ids: usize,
}

struct Entry {
    tenant: TenantId,
    subject: String,
    roles: Vec<Role>,
    action: &'static str,
    revealed: BTreeSet<FieldClass>,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    request_id: Option<String>,
    ids: Vec<ProfileId>,
    seen: HashSet<ProfileId>,
    count: i64,
}

impl Entry {
    fn is_for(&self, caller: &Caller, action: &str, revealed: &BTreeSet<FieldClass>) -> bool {
        self.action == action
            && self.subject == caller.subject()
            && self.tenant == *caller.tenant()
            && self.roles == caller.roles()
            && self.revealed == *revealed
    }

    fn into_records(self) -> Vec<AuditRecord> {
        // A request that sent no id gets one here, for the record's first read.
        let request_id = self.request_id.unwrap_or_else(|| Uuid::now_v7().to_string());
        let roles = role_names(&self.roles);
        let revealed: Vec<String> = self.revealed.iter().map(|c| c.as_str().to_owned()).collect();
        self.ids
            .chunks(MAX_RESOURCE_IDS)
            .enumerate()
            .map(|(i, ids)| AuditRecord {
                id: Uuid::now_v7(),
                tenant: self.tenant.clone(),
                occurred_at: self.first,
                last_at: self.last,
                subject: self.subject.clone(),
                roles: roles.clone(),
                action: self.action.to_owned(),
                resource_type: "profile".to_owned(),
                resource_ids: ids.iter().map(ToString::to_string).collect(),
                // The reads are counted once, on the first part.
                count: if i == 0 { self.count } else { 0 },
                request_id: request_id.clone(),
                revealed: revealed.clone(),
            })
            .collect()
    }
}

impl Pending {
    fn add(
        &mut self,
        caller: &Caller,
        action: &'static str,
        ids: impl Iterator<Item = ProfileId>,
        revealed: &BTreeSet<FieldClass>,
        at: DateTime<Utc>,
    ) {
        let mut hasher = DefaultHasher::new();
        (caller.tenant().as_str(), caller.subject(), caller.roles(), action, revealed).hash(&mut hasher);
        let bucket = self.entries.entry(hasher.finish()).or_default();
        let index = match bucket.iter().position(|e| e.is_for(caller, action, revealed)) {
            Some(index) => index,
            None => {
                bucket.push(Entry {
                    tenant: caller.tenant().clone(),
                    subject: caller.subject().to_owned(),
                    roles: caller.roles().to_vec(),
                    action,
                    revealed: revealed.clone(),
                    first: at,
                    last: at,
                    request_id: caller.known_request_id().map(str::to_owned),
                    ids: Vec::new(),
                    seen: HashSet::new(),
                    count: 0,
                });
                bucket.len() - 1
            }
        };
        let entry = &mut bucket[index];
        entry.last = at;
        entry.count += 1;
        for id in ids {
            if entry.seen.insert(id) {
                entry.ids.push(id);
                self.ids += 1;
            }
        }
        if entry.ids.len() >= MAX_RESOURCE_IDS {
            // Its ids stay counted until the writer takes them.
            let entry = bucket.swap_remove(index);
            self.ready.extend(entry.into_records());
        }
    }

    fn take(&mut self) -> Vec<AuditRecord> {
        let mut records = std::mem::take(&mut self.ready);
        records.extend(self.entries.drain().flat_map(|(_, bucket)| bucket).flat_map(Entry::into_records));
        self.ids = 0;
        records
    }
}

impl AuditJobs {
    /// Writes coalesced read audits every flush interval (or when the buffer
    /// fills), chains and prunes, until `stop`; then writes what is buffered
    /// and chains it.
    pub async fn run(self, stop: CancellationToken) {
        let chainer = tokio::spawn(chain_loop(self.store.clone(), stop.clone()));
        let pruner = tokio::spawn(prune_loop(self.store.clone(), self.config.retention, stop.clone()));
        let mut tick = tokio::time::interval(self.config.flush_interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
                () = self.reads.full.notified() => {}
            }
            let records = self.take();
            self.write(records).await;
        }
        // Shutdown: requests have drained; write everything still buffered.
        let records = self.take();
        self.write(records).await;
        let _ = pruner.await;
        let _ = chainer.await;
        if let Err(error) = chain_all(&self.store).await {
            tracing::warn!(%error, "audit records left unchained at shutdown; the next instance chains them");
        }
    }

    fn take(&self) -> Vec<AuditRecord> {
        let records = self.reads.pending.lock().unwrap_or_else(PoisonError::into_inner).take();
        self.reads.drained.notify_waiters();
        records
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
        // Client request ids of profile writes live a day; this pruner keeps
        // them too, being the one that already runs on every instance.
        let requests = Utc::now()
            - chrono::Duration::from_std(super::profiles::REQUEST_ID_RETENTION).unwrap_or(chrono::Duration::MAX);
        loop {
            match crate::store::requests::prune(store.db(), requests, 10_000).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "pruning request ids failed");
                    break;
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}
