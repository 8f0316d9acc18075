//! One unit of work for every write.
//!
//! A write opens a [`UnitOfWork`], runs its queries on [`UnitOfWork::conn`],
//! records the domain events it causes and the cached copies it makes stale,
//! and calls [`UnitOfWork::commit`], which appends the events to the outbox,
//! commits, and only then invalidates the caches (this instance's tiers and,
//! through Redis, every other instance's) before returning. No writer places
//! those steps by hand, so none can forget one: RPCs, CLI commands and
//! background jobs all write this way. The write's audit records commit with
//! it, in the same transaction (they are chained just after, off the
//! write's path).
//!
//! Dropping a unit of work without committing rolls it back and touches no
//! cache.

use std::sync::Arc;

use sea_orm::DatabaseTransaction;
use tokio::sync::Notify;

use super::{audit, db_error, outbox};
use crate::{
    cache::{CacheChange, ProfileCache},
    domain::{DomainError, audit::AuditRecord, events::DomainEvent},
};

/// A transaction with the events and cache changes it will commit.
pub struct UnitOfWork {
    tx: DatabaseTransaction,
    cache: ProfileCache,
    events: Vec<DomainEvent>,
    changes: Vec<CacheChange>,
    audits: Vec<AuditRecord>,
    written: Arc<Notify>,
}

impl UnitOfWork {
    pub(super) fn new(tx: DatabaseTransaction, cache: ProfileCache, written: Arc<Notify>) -> Self {
        Self { tx, cache, events: Vec::new(), changes: Vec::new(), audits: Vec::new(), written }
    }

    /// The transaction, for the store's query functions.
    pub fn conn(&self) -> &DatabaseTransaction {
        &self.tx
    }

    /// Records a domain event: appended to the outbox at commit, in order.
    pub fn record(&mut self, event: DomainEvent) {
        self.events.push(event);
    }

    /// Records an audit record: written in this transaction at commit.
    pub fn audit(&mut self, record: AuditRecord) {
        self.audits.push(record);
    }

    /// Records a change that cached copies must not outlive.
    pub fn invalidate(&mut self, change: CacheChange) {
        self.changes.push(change);
    }

    /// Appends the events, commits, then invalidates every cached copy of what
    /// changed, so a read that starts after this returns sees the write.
    ///
    /// Commit and invalidation run as one task of their own: a caller that
    /// gives up (a deadline, a client reset) drops its future, and a commit
    /// must not then be left without its invalidation. A commit whose outcome
    /// is unknown (the connection died on COMMIT) invalidates too: dropping
    /// a copy that is still current costs one reload.
    pub async fn commit(self) -> Result<(), DomainError> {
        let Self { tx, cache, events, changes, audits, written } = self;
        outbox::append(&tx, &events).await?;
        audit::insert(&tx, &audits).await?;
        let wrote_events = !events.is_empty();
        let tail = tokio::spawn(async move {
            let committed = tx.commit().await.map_err(db_error);
            if wrote_events && committed.is_ok() {
                written.notify_one();
            }
            let invalidated = cache.changed(&changes).await;
            committed.and(invalidated)
        });
        tail.await.map_err(|e| DomainError::Internal(format!("commit task: {e}")))?
    }
}
