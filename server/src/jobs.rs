//! Background jobs at work (docs/jobs.md). Every instance runs a
//! [`Runner`]: it takes a queued job (or one whose owner's lease lapsed)
//! by a conditional update of the job's row, so two instances never both
//! run one, and holds it with a lease it renews together with the job's
//! progress. A renewal also tells the owner a caller asked the job to stop.
//! `c360 dedupe` holds its run the same way, so a command-line dedupe and
//! a job never run over one tenant at once.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    auth::Caller,
    dedupe::{self, Found, Options, Progress, Tracker},
    domain::{
        DomainError, TenantId,
        identifiers::NormalizationPolicy,
        job::{Job, JobKind, JobOptions, JobState},
        profile::now,
    },
    outbox::AbortOnDrop,
    service::Profiles,
    store::{self, Store, jobs::Renewal},
};

/// How jobs are found and held.
#[derive(Debug, Clone, Copy)]
pub struct JobConfig {
    /// How often an idle instance looks for queued jobs.
    pub poll: Duration,
    /// How long a hold on a job lasts unless renewed.
    pub lease: Duration,
}

/// What a deduplication needs: the store, the service its merges go
/// through (so they invalidate caches and write events like any merge),
/// and how identifiers normalize.
#[derive(Clone)]
pub struct Deduplicator {
    store: Store,
    profiles: Profiles,
    policy: NormalizationPolicy,
    options: Options,
}

/// What a deduplication did.
#[derive(Debug)]
pub struct Report {
    /// What it found.
    pub found: Found,
    /// Clusters merged and refused (not for a dry run).
    pub merged: Option<(u64, u64)>,
    /// Pairs proposed for review, and how many wait in all (not for a dry run).
    pub queued: Option<(usize, u64)>,
}

impl Deduplicator {
    /// A deduplicator over `store` whose merges go through `profiles`.
    pub fn new(store: Store, profiles: Profiles, policy: NormalizationPolicy, options: Options) -> Self {
        Self { store, profiles, policy, options }
    }

    /// Finds `tenant`'s duplicate people; unless `job.dry_run`, merges the
    /// clusters found at the auto threshold (as `system:dedupe`, reason
    /// AUTO_MATCH), stores the model and queues the pairs between the
    /// thresholds for review. The job's limits override this
    /// deduplicator's. `None` when `cancel` stopped it.
    pub async fn run(
        &self,
        tenant: &TenantId,
        job: &JobOptions,
        progress: &mut dyn Progress,
        cancel: &CancellationToken,
    ) -> Result<Option<Report>, DomainError> {
        let mut options = self.options.clone();
        if let Some(max_block) = job.max_block {
            options.max_block = max_block as usize;
        }
        if let Some(max_cluster) = job.max_cluster {
            options.max_cluster = max_cluster as usize;
        }
        options.match_attributes.extend(job.match_attributes.iter().cloned());
        let Some(found) = dedupe::find(&self.store, tenant, &self.policy, &options, progress, cancel).await? else {
            return Ok(None);
        };
        if job.dry_run {
            progress.step("done");
            return Ok(Some(Report { found, merged: None, queued: None }));
        }
        let caller = Caller::system(tenant.clone(), "dedupe");
        let Some(merged) = dedupe::apply(&self.profiles, &caller, &found, progress, cancel).await? else {
            return Ok(None);
        };
        let queued = dedupe::keep(&self.store, tenant, &found, caller.subject(), progress).await?;
        progress.step("done");
        Ok(Some(Report { found, merged: Some(merged), queued: Some(queued) }))
    }
}

/// How a hold on a job ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// A caller asked the job to stop (and `cancel` was cancelled).
    pub cancelled: bool,
    /// Another instance took the job: this owner writes nothing more.
    pub lost: bool,
}

/// Runs `work` while holding `owner`'s lease on job `id`: renews it every
/// second (at most a third of `lease`) with `tracker`'s progress, and
/// cancels `cancel` when a caller asks the job to stop or the lease is lost.
///
/// The renewals run as a task of their own: awaited between polls of
/// `work`, one waiting for a connection would stall a `work` that holds
/// the last one (SQLite has one) until the pool gave up.
pub async fn hold<F: Future>(
    store: &Store,
    id: Uuid,
    owner: &str,
    lease: Duration,
    tracker: &Tracker,
    cancel: &CancellationToken,
    work: F,
) -> (F::Output, Held) {
    let held = Arc::new(std::sync::Mutex::new(Held::default()));
    // Aborted with this future too: a panic in the work must not leave a
    // job renewed forever by an orphaned task.
    let keeper = AbortOnDrop(tokio::spawn(keep(
        store.clone(),
        id,
        owner.to_owned(),
        lease,
        tracker.clone(),
        cancel.clone(),
        Arc::clone(&held),
    )));
    let output = work.await;
    drop(keeper);
    let held = *held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    (output, held)
}

async fn keep(
    store: Store,
    id: Uuid,
    owner: String,
    lease: Duration,
    tracker: Tracker,
    cancel: CancellationToken,
    held: Arc<std::sync::Mutex<Held>>,
) {
    // When the lease last moved on: the time a successful renewal was
    // asked at (its expiry is counted from then, not from its answer).
    let mut renewed = std::time::Instant::now();
    let ttl = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
    // Progress shows and a cancel is heard within a second; the lease
    // itself needs renewing only every third of its length.
    let period = (lease / 3).min(Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let asked = std::time::Instant::now();
        // A renewal that would answer only after the lease lapsed is as
        // good as failed: it is given up in time for this owner to stop.
        let budget = lease.saturating_sub(renewed.elapsed() + period);
        let progress = tracker.snapshot();
        let renewal = store::jobs::renew(store.db(), id, &owner, now() + ttl, &progress);
        let renewal = tokio::time::timeout(budget, renewal)
            .await
            .unwrap_or_else(|_| Err(DomainError::Unavailable("renewing the job's lease timed out".into())));
        if renewal.is_ok() {
            renewed = asked;
        }
        let mut state = held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match renewal {
            Ok(Renewal::Held { cancel: true }) if !state.cancelled => {
                tracing::info!(job = %id, "job cancelled by a caller");
                state.cancelled = true;
                cancel.cancel();
            }
            Ok(Renewal::Held { .. }) => {}
            Ok(Renewal::Lost) => {
                tracing::warn!(job = %id, "lost the job to another instance (lease lapsed); stopping");
                state.lost = true;
                cancel.cancel();
                return;
            }
            // Once the lease lapses another instance may take the job: two
            // owners must never both run it, so this one stops first.
            Err(error) if renewed.elapsed() + period >= lease => {
                tracing::error!(job = %id, %error, "could not renew the job's lease before it lapsed; stopping");
                state.lost = true;
                cancel.cancel();
                return;
            }
            // The lease runs on until it lapses; the next tick tries again.
            Err(error) => tracing::warn!(job = %id, %error, "could not renew the job's lease"),
        }
    }
}

/// Takes queued jobs and runs them, one at a time, on this instance.
pub struct Runner {
    deduplicator: Deduplicator,
    config: JobConfig,
    owner: String,
    queued: Arc<Notify>,
}

impl Runner {
    /// A runner for this instance; `queued` wakes it when a job is queued here.
    pub fn new(deduplicator: Deduplicator, config: JobConfig, queued: Arc<Notify>) -> Self {
        Self { deduplicator, config, owner: format!("instance:{}", Uuid::now_v7()), queued }
    }

    /// Runs jobs until `stop`; a job under way when it comes goes back to
    /// the queue for another instance.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            while !stop.is_cancelled() {
                let Some(job) = self.next().await else { break };
                let span = tracing::info_span!("job", id = %job.id, tenant = %job.tenant, kind = job.kind.as_str());
                self.execute(job, &stop).instrument(span).await;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.config.poll) => {}
                () = self.queued.notified() => {}
            }
        }
    }

    /// The next job this instance took, if any is waiting.
    async fn next(&self) -> Option<Job> {
        let db = self.deduplicator.store.db();
        let found = store::jobs::claimable(db, now(), 8).await;
        let ids = found.inspect_err(|error| tracing::warn!(%error, "cannot look for queued jobs")).ok()?;
        let ttl = chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::seconds(30));
        for id in ids {
            let at = now();
            match store::jobs::claim(db, id, &self.owner, at, at + ttl).await {
                Ok(Some(job)) => return Some(job),
                // Another instance was first.
                Ok(None) => {}
                Err(error) => tracing::warn!(job = %id, %error, "cannot take a queued job"),
            }
        }
        None
    }

    async fn execute(&self, job: Job, stop: &CancellationToken) {
        tracing::info!(owner = %self.owner, "job taken");
        let store = &self.deduplicator.store;
        if job.cancel_requested {
            // Cancelled while its previous owner ran it: nothing more to do.
            let finished =
                store::jobs::finish(store.db(), job.id, &self.owner, JobState::Cancelled, &job.progress, None, now());
            if let Err(error) = finished.await {
                tracing::warn!(%error, "could not record the job's end");
            }
            return;
        }
        let cancel = stop.child_token();
        let tracker = Tracker::default();
        let work = async {
            match job.kind {
                JobKind::Deduplication => {
                    let mut progress = tracker.clone();
                    self.deduplicator.run(&job.tenant, &job.options, &mut progress, &cancel).await
                }
            }
        };
        let (outcome, held) = hold(store, job.id, &self.owner, self.config.lease, &tracker, &cancel, work).await;
        if held.lost {
            return;
        }
        let (state, error) = match outcome {
            Ok(Some(_)) => (JobState::Succeeded, None),
            Ok(None) if held.cancelled || job.cancel_requested => (JobState::Cancelled, None),
            Ok(None) => {
                tracing::info!("stopping: the job goes back to the queue");
                if let Err(error) = store::jobs::release(store.db(), job.id, &self.owner).await {
                    tracing::warn!(%error, "could not give the job back; it is taken over when its lease lapses");
                }
                return;
            }
            Err(error) => {
                tracing::error!(%error, "job failed");
                (JobState::Failed, Some(error.to_string()))
            }
        };
        let progress = tracker.snapshot();
        match store::jobs::finish(store.db(), job.id, &self.owner, state, &progress, error.as_deref(), now()).await {
            Ok(true) => tracing::info!(state = state.as_str(), ?progress, "job ended"),
            Ok(false) => tracing::warn!("the job was taken over before it ended here"),
            Err(error) => tracing::warn!(%error, "could not record the job's end; it runs again when its lease lapses"),
        }
    }
}
