//! Background jobs as callers see them: start a tenant's deduplication,
//! follow its progress, cancel it. The work itself is done by whichever
//! instance takes the job ([`crate::jobs`]).

use std::sync::Arc;

use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    auth::{Caller, Permission},
    domain::{
        DomainError,
        job::{Job, JobKind, JobOptions, JobProgress, JobState},
        profile::now,
    },
    store::{self, Store},
};

/// Jobs over a store.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    /// Tells this instance's runner a job was queued, so the instance
    /// asked takes it at once rather than at its next look.
    queued: Arc<Notify>,
}

impl Jobs {
    /// Jobs kept in `store`; `queued` is told of each job queued here.
    pub fn new(store: Store, queued: Arc<Notify>) -> Self {
        Self { store, queued }
    }

    /// Queues a deduplication of the caller's tenant. ALREADY_EXISTS naming
    /// the job when one is queued or running already.
    pub async fn start_deduplication(&self, caller: &Caller, dry_run: bool) -> Result<Job, DomainError> {
        caller.require(Permission::MergeProfiles)?;
        let job = Job {
            id: Uuid::now_v7(),
            tenant: caller.tenant().clone(),
            kind: JobKind::Deduplication,
            state: JobState::Queued,
            options: JobOptions { dry_run, ..JobOptions::default() },
            requested_by: caller.subject().to_owned(),
            created_at: now(),
            started_at: None,
            finished_at: None,
            owner: None,
            cancel_requested: false,
            progress: JobProgress { step: "queued".to_owned(), ..JobProgress::default() },
            error: None,
        };
        store::jobs::insert(self.store.db(), &job, None).await?;
        tracing::info!(job = %job.id, tenant = %job.tenant, dry_run, by = caller.subject(), "deduplication queued");
        self.queued.notify_one();
        Ok(job)
    }

    /// The caller's tenant's job `id`.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Job, DomainError> {
        caller.require(Permission::MergeProfiles)?;
        let id = parse(id)?;
        store::jobs::get(self.store.db(), caller.tenant(), id).await?.ok_or_else(|| not_found(id))
    }

    /// Asks the caller's tenant's job `id` to stop: a queued job is
    /// cancelled at once, a running one within its lease's renewal (the
    /// merges it made stay); a finished job is returned as it ended.
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<Job, DomainError> {
        caller.require(Permission::MergeProfiles)?;
        let id = parse(id)?;
        let job =
            store::jobs::cancel(self.store.db(), caller.tenant(), id, now()).await?.ok_or_else(|| not_found(id))?;
        tracing::info!(job = %job.id, state = job.state.as_str(), by = caller.subject(), "job cancel asked");
        Ok(job)
    }
}

fn parse(id: &str) -> Result<Uuid, DomainError> {
    Uuid::parse_str(id.trim()).map_err(|_| DomainError::invalid("job_id", "not a job id"))
}

fn not_found(id: Uuid) -> DomainError {
    DomainError::NotFound { resource: "job", id: id.to_string() }
}
