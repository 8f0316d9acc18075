//! `jobs`: background jobs and who runs them (docs/jobs.md). An instance
//! takes a job by a conditional update (queued, or running under a lease
//! that lapsed), so two instances never both hold one; the owner renews its
//! lease with the progress, and each renewal tells it whether a caller asked
//! the job to stop.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, QueryResult, SqlErr};
use uuid::Uuid;

use super::{db_error, sql::Sql};
use crate::domain::{
    DomainError, TenantId,
    job::{Job, JobKind, JobOptions, JobProgress, JobState},
};

const COLUMNS: &str = "id, tenant_id, kind, state, options, requested_by, created_at, started_at, finished_at, \
                       owner, cancel_requested, progress, error";

/// Stores a new job (queued, or running under `owner`'s lease until
/// `lease_until` when both are set). ALREADY_EXISTS naming the job when one
/// of its kind is queued or running for its tenant.
pub async fn insert(
    conn: &impl ConnectionTrait,
    job: &Job,
    lease_until: Option<DateTime<Utc>>,
) -> Result<(), DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(
        "INSERT INTO jobs (id, tenant_id, kind, state, options, requested_by, created_at, started_at, owner, \
         lease_until, cancel_requested, progress) VALUES (",
    )
    .bind(job.id)
    .push(", ")
    .bind(job.tenant.as_str())
    .push(", ")
    .bind(job.kind.as_str())
    .push(", ")
    .bind(job.state.as_str())
    .push(", ")
    .bind(encode(&job.options)?)
    .push(", ")
    .bind(job.requested_by.as_str())
    .push(", ")
    .bind(job.created_at)
    .push(", ")
    .bind(job.started_at)
    .push(", ")
    .bind(job.owner.clone())
    .push(", ")
    .bind(lease_until)
    .push(", ")
    .bind(false)
    .push(", ")
    .bind(encode(&job.progress)?)
    .push(")");
    match conn.execute_raw(sql.statement()).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            let running = active(conn, &job.tenant, job.kind).await?;
            Err(DomainError::AlreadyExists(match running {
                Some(other) => format!(
                    "a {} job is already {} for tenant {}: job {}",
                    job.kind.as_str().to_lowercase(),
                    other.state.as_str().to_lowercase(),
                    job.tenant,
                    other.id
                ),
                None => format!("a {} job is already under way for tenant {}", job.kind.as_str(), job.tenant),
            }))
        }
        Err(e) => Err(db_error(e)),
    }
}

/// `tenant`'s job `id`.
pub async fn get(conn: &impl ConnectionTrait, tenant: &TenantId, id: Uuid) -> Result<Option<Job>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT {COLUMNS} FROM jobs WHERE id = "))
        .bind(id)
        .push(" AND tenant_id = ")
        .bind(tenant.as_str());
    conn.query_one_raw(sql.statement()).await.map_err(db_error)?.map(|row| decode(&row)).transpose()
}

/// `tenant`'s queued or running job of `kind`, if any.
pub async fn active(conn: &impl ConnectionTrait, tenant: &TenantId, kind: JobKind) -> Result<Option<Job>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT {COLUMNS} FROM jobs WHERE tenant_id = "))
        .bind(tenant.as_str())
        .push(" AND kind = ")
        .bind(kind.as_str())
        .push(" AND state IN ('QUEUED', 'RUNNING')");
    conn.query_one_raw(sql.statement()).await.map_err(db_error)?.map(|row| decode(&row)).transpose()
}

/// Jobs an instance may take at `now`: queued, or running under a lease
/// that lapsed (their owner died or stalled), oldest first.
pub async fn claimable(conn: &impl ConnectionTrait, now: DateTime<Utc>, limit: u64) -> Result<Vec<Uuid>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT id FROM jobs WHERE state = 'QUEUED' OR (state = 'RUNNING' AND lease_until < ")
        .bind(now)
        .push(&format!(") ORDER BY created_at LIMIT {limit}"));
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    rows.iter().map(|row| row.try_get::<Uuid>("", "id").map_err(db_error)).collect()
}

/// Takes job `id` for `owner` until `until`, if it is still claimable at
/// `now`; the job as taken, or `None` when another instance was first.
pub async fn claim(
    conn: &impl ConnectionTrait,
    id: Uuid,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Option<Job>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE jobs SET state = 'RUNNING', owner = ")
        .bind(owner)
        .push(", lease_until = ")
        .bind(until)
        .push(", started_at = COALESCE(started_at, ")
        .bind(now)
        .push(") WHERE id = ")
        .bind(id)
        .push(" AND (state = 'QUEUED' OR (state = 'RUNNING' AND lease_until < ")
        .bind(now)
        .push("))");
    if conn.execute_raw(sql.statement()).await.map_err(db_error)?.rows_affected() != 1 {
        return Ok(None);
    }
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ")).bind(id);
    conn.query_one_raw(sql.statement()).await.map_err(db_error)?.map(|row| decode(&row)).transpose()
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease runs on; `cancel` when a caller asked the job to stop.
    Held {
        /// A caller asked the job to stop.
        cancel: bool,
    },
    /// Another instance took the job (this owner's lease had lapsed): this
    /// owner must stop and write nothing more about it.
    Lost,
}

/// Renews `owner`'s lease on job `id` until `until` and records `progress`.
pub async fn renew(
    conn: &impl ConnectionTrait,
    id: Uuid,
    owner: &str,
    until: DateTime<Utc>,
    progress: &JobProgress,
) -> Result<Renewal, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE jobs SET lease_until = ")
        .bind(until)
        .push(", progress = ")
        .bind(encode(progress)?)
        .push(" WHERE id = ")
        .bind(id)
        .push(" AND owner = ")
        .bind(owner)
        .push(" AND state = 'RUNNING'");
    if conn.execute_raw(sql.statement()).await.map_err(db_error)?.rows_affected() != 1 {
        return Ok(Renewal::Lost);
    }
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT cancel_requested FROM jobs WHERE id = ").bind(id);
    let row = conn.query_one_raw(sql.statement()).await.map_err(db_error)?;
    let cancel = row.map(|row| row.try_get::<bool>("", "cancel_requested")).transpose().map_err(db_error)?;
    Ok(Renewal::Held { cancel: cancel.unwrap_or(false) })
}

/// Ends `owner`'s job `id` in `state` (final) with its last progress;
/// false when the job was no longer this owner's.
pub async fn finish(
    conn: &impl ConnectionTrait,
    id: Uuid,
    owner: &str,
    state: JobState,
    progress: &JobProgress,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, DomainError> {
    debug_assert!(state.is_final());
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE jobs SET state = ")
        .bind(state.as_str())
        .push(", progress = ")
        .bind(encode(progress)?)
        .push(", error = ")
        .bind(error.map(str::to_owned))
        .push(", finished_at = ")
        .bind(now)
        .push(", lease_until = NULL WHERE id = ")
        .bind(id)
        .push(" AND owner = ")
        .bind(owner)
        .push(" AND state = 'RUNNING'");
    Ok(conn.execute_raw(sql.statement()).await.map_err(db_error)?.rows_affected() == 1)
}

/// Asks `tenant`'s job `id` to stop: a queued job is cancelled at once, a
/// running one when its owner next renews its lease; a finished one stays
/// as it ended. The job as it is now, `None` when there is no such job.
pub async fn cancel(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<Job>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE jobs SET cancel_requested = ")
        .bind(true)
        .push(", state = CASE WHEN state = 'QUEUED' THEN 'CANCELLED' ELSE state END")
        .push(", finished_at = CASE WHEN state = 'QUEUED' THEN ")
        .bind(now)
        .push(" ELSE finished_at END WHERE id = ")
        .bind(id)
        .push(" AND tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND state IN ('QUEUED', 'RUNNING')");
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    get(conn, tenant, id).await
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, DomainError> {
    serde_json::to_string(value).map_err(|e| DomainError::Internal(format!("encoding a job: {e}")))
}

fn decode(row: &QueryResult) -> Result<Job, DomainError> {
    let text = |column: &str| row.try_get::<String>("", column).map_err(db_error);
    let corrupt = |what: &str| DomainError::Internal(format!("stored job: {what}"));
    let tenant = TenantId::parse(&text("tenant_id")?).map_err(|_| corrupt("tenant"))?;
    Ok(Job {
        id: row.try_get("", "id").map_err(db_error)?,
        tenant,
        kind: JobKind::parse(&text("kind")?).ok_or_else(|| corrupt("kind"))?,
        state: JobState::parse(&text("state")?).ok_or_else(|| corrupt("state"))?,
        options: serde_json::from_str::<JobOptions>(&text("options")?).map_err(|_| corrupt("options"))?,
        requested_by: text("requested_by")?,
        created_at: row.try_get("", "created_at").map_err(db_error)?,
        started_at: row.try_get("", "started_at").map_err(db_error)?,
        finished_at: row.try_get("", "finished_at").map_err(db_error)?,
        owner: row.try_get("", "owner").map_err(db_error)?,
        cancel_requested: row.try_get("", "cancel_requested").map_err(db_error)?,
        progress: serde_json::from_str::<JobProgress>(&text("progress")?).map_err(|_| corrupt("progress"))?,
        error: row.try_get("", "error").map_err(db_error)?,
    })
}

/// Gives `owner`'s job `id` back to the queue (its instance is stopping):
/// another instance takes it at once and runs it again from the start.
pub async fn release(conn: &impl ConnectionTrait, id: Uuid, owner: &str) -> Result<(), DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE jobs SET state = 'QUEUED', owner = NULL, lease_until = NULL WHERE id = ")
        .bind(id)
        .push(" AND owner = ")
        .bind(owner)
        .push(" AND state = 'RUNNING'");
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(())
}
