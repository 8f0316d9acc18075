//! `match_models` (each tenant's matching models, versioned; the highest
//! version is in force) and `match_candidates` (pairs scored between the
//! review and auto thresholds, for the stewards' review queue).

use c360_matching::model::Model;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, QueryResult};
use uuid::Uuid;

use super::{MAX_BIND_PARAMS, db_error, sql::Sql};
use crate::domain::{
    DomainError, ProfileId, TenantId,
    review::{CandidateStatus, MatchCandidate, QueueKey},
};

/// The model in force for `tenant`, if one was ever stored.
pub async fn current_model(conn: &impl ConnectionTrait, tenant: &TenantId) -> Result<Option<Model>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT model FROM match_models WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" ORDER BY version DESC LIMIT 1");
    let Some(row) = conn.query_one_raw(sql.statement()).await.map_err(db_error)? else { return Ok(None) };
    let text: String = row.try_get("", "model").map_err(db_error)?;
    serde_json::from_str(&text).map(Some).map_err(|e| DomainError::Internal(format!("stored matching model: {e}")))
}

/// Stores `model` as `tenant`'s model in force; false (nothing written)
/// when its version was taken meanwhile.
pub async fn save_model(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    model: &Model,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<bool, DomainError> {
    let text = serde_json::to_string(model).map_err(|e| DomainError::Internal(format!("encoding a model: {e}")))?;
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("INSERT INTO match_models (tenant_id, version, model, created_by, created_at) VALUES (")
        .bind(tenant.as_str())
        .push(", ")
        .bind(model.version as i32)
        .push(", ")
        .bind(text)
        .push(", ")
        .bind(actor)
        .push(", ")
        .bind(at)
        .push(") ON CONFLICT (tenant_id, version) DO NOTHING");
    Ok(conn.execute_raw(sql.statement()).await.map_err(db_error)?.rows_affected() == 1)
}

/// The term frequencies a run counted, as stored for `tenant`.
#[derive(Debug, Clone)]
pub struct StoredFrequencies {
    /// The model version the run scored with.
    pub model_version: u32,
    /// How many profiles it counted.
    pub profiles: i64,
    /// When.
    pub counted_at: DateTime<Utc>,
    /// [`c360_matching::model::Frequencies::encode`]'s bytes.
    pub counts: Vec<u8>,
}

/// Replaces `tenant`'s stored term frequencies with a run's.
pub async fn save_frequencies(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    stored: &StoredFrequencies,
) -> Result<(), DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("INSERT INTO match_frequencies (tenant_id, model_version, profiles, counted_at, counts) VALUES (")
        .bind(tenant.as_str())
        .push(", ")
        .bind(stored.model_version as i32)
        .push(", ")
        .bind(stored.profiles)
        .push(", ")
        .bind(stored.counted_at)
        .push(", ")
        .bind(stored.counts.clone())
        .push(
            ") ON CONFLICT (tenant_id) DO UPDATE SET model_version = excluded.model_version, \
             profiles = excluded.profiles, counted_at = excluded.counted_at, counts = excluded.counts",
        );
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(())
}

/// When `tenant`'s stored term frequencies were counted, if ever, and the
/// model version they were counted for: a reader holding a copy of that
/// time need not read the counts again.
pub async fn frequencies_stamp(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<Option<(DateTime<Utc>, u32)>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT counted_at, model_version FROM match_frequencies WHERE tenant_id = ").bind(tenant.as_str());
    let Some(row) = conn.query_one_raw(sql.statement()).await.map_err(db_error)? else { return Ok(None) };
    let version: i32 = row.try_get("", "model_version").map_err(db_error)?;
    Ok(Some((row.try_get("", "counted_at").map_err(db_error)?, version as u32)))
}

/// `tenant`'s stored term frequencies, if a run ever counted them.
pub async fn frequencies(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<Option<StoredFrequencies>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT model_version, profiles, counted_at, counts FROM match_frequencies WHERE tenant_id = ")
        .bind(tenant.as_str());
    let Some(row) = conn.query_one_raw(sql.statement()).await.map_err(db_error)? else { return Ok(None) };
    let version: i32 = row.try_get("", "model_version").map_err(db_error)?;
    Ok(Some(StoredFrequencies {
        model_version: version as u32,
        profiles: row.try_get("", "profiles").map_err(db_error)?,
        counted_at: row.try_get("", "counted_at").map_err(db_error)?,
        counts: row.try_get("", "counts").map_err(db_error)?,
    }))
}

/// Puts pairs in the review queue as PENDING (each pair once, smaller id
/// first); a pair already there keeps its status, and a pending one takes
/// the new probability and model version. A rejected pair never returns.
pub async fn propose(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    pairs: &[(ProfileId, ProfileId, f64)],
    model_version: u32,
    at: DateTime<Utc>,
) -> Result<(), DomainError> {
    for chunk in pairs.chunks(MAX_BIND_PARAMS / 8) {
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push(
            "INSERT INTO match_candidates (tenant_id, left_id, right_id, probability, model_version, status, \
             created_at, updated_at) VALUES ",
        );
        for (i, &(a, b, probability)) in chunk.iter().enumerate() {
            let (left, right) = if a < b { (a, b) } else { (b, a) };
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .bind(tenant.as_str())
                .push(", ")
                .bind(left.as_uuid())
                .push(", ")
                .bind(right.as_uuid())
                .push(", ")
                .bind(probability)
                .push(", ")
                .bind(model_version as i32)
                .push(", 'PENDING', ")
                .bind(at)
                .push(", ")
                .bind(at)
                .push(")");
        }
        sql.push(
            " ON CONFLICT (tenant_id, left_id, right_id) DO UPDATE SET probability = excluded.probability, \
             model_version = excluded.model_version, updated_at = excluded.updated_at \
             WHERE match_candidates.status = 'PENDING'",
        );
        conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    }
    Ok(())
}

/// How many pairs of `tenant` wait for review.
pub async fn pending(conn: &impl ConnectionTrait, tenant: &TenantId) -> Result<u64, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT COUNT(*) AS n FROM match_candidates WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND status = 'PENDING'");
    let row = conn.query_one_raw(sql.statement()).await.map_err(db_error)?;
    let n: i64 = row.map(|r| r.try_get("", "n")).transpose().map_err(db_error)?.unwrap_or(0);
    Ok(n as u64)
}

/// Both profiles of a candidate row `c`, as `l` and `r`.
const BOTH_PROFILES: &str = "JOIN profiles l ON l.tenant_id = c.tenant_id AND l.id = c.left_id \
     JOIN profiles r ON r.tenant_id = c.tenant_id AND r.id = c.right_id";

/// Columns of a candidate row, from table alias `c`.
const CANDIDATE_COLUMNS: &str =
    "c.left_id, c.right_id, c.probability, c.model_version, c.status, c.created_at, c.updated_at, c.decided_by";

fn candidate(row: &QueryResult) -> Result<MatchCandidate, DomainError> {
    let status: String = row.try_get("", "status").map_err(db_error)?;
    let status = CandidateStatus::parse(&status)
        .ok_or_else(|| DomainError::Internal(format!("stored candidate status '{status}'")))?;
    let updated_at: DateTime<Utc> = row.try_get("", "updated_at").map_err(db_error)?;
    let decided_by: Option<String> = row.try_get("", "decided_by").map_err(db_error)?;
    Ok(MatchCandidate {
        left: ProfileId::from(row.try_get::<Uuid>("", "left_id").map_err(db_error)?),
        right: ProfileId::from(row.try_get::<Uuid>("", "right_id").map_err(db_error)?),
        probability: row.try_get("", "probability").map_err(db_error)?,
        model_version: row.try_get::<i32>("", "model_version").map_err(db_error)? as u32,
        status,
        created_at: row.try_get("", "created_at").map_err(db_error)?,
        decided: (status != CandidateStatus::Pending).then(|| (updated_at, decided_by.unwrap_or_default())),
    })
}

/// Up to `limit` pending pairs of `tenant` whose profiles are both live,
/// highest probability first, after `after`; only those of `profile` when
/// given.
pub async fn pending_page(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profile: Option<ProfileId>,
    after: Option<QueueKey>,
    limit: u64,
) -> Result<Vec<MatchCandidate>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT {CANDIDATE_COLUMNS} FROM match_candidates c {BOTH_PROFILES} WHERE c.tenant_id = "))
        .bind(tenant.as_str())
        .push(
            " AND c.status = 'PENDING' AND l.status IN ('PROSPECT', 'ACTIVE') AND r.status IN ('PROSPECT', 'ACTIVE')",
        );
    if let Some(profile) = profile {
        sql.push(" AND (c.left_id = ")
            .bind(profile.as_uuid())
            .push(" OR c.right_id = ")
            .bind(profile.as_uuid())
            .push(")");
    }
    if let Some((probability, left, right)) = after {
        sql.push(" AND (c.probability < ")
            .bind(probability)
            .push(" OR (c.probability = ")
            .bind(probability)
            .push(" AND (c.left_id > ")
            .bind(left.as_uuid())
            .push(" OR (c.left_id = ")
            .bind(left.as_uuid())
            .push(" AND c.right_id > ")
            .bind(right.as_uuid())
            .push("))))");
    }
    sql.push(" ORDER BY c.probability DESC, c.left_id, c.right_id LIMIT ").bind(limit as i64);
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    rows.iter().map(candidate).collect()
}

/// The pair `left`, `right` of `tenant` (smaller id first).
pub async fn find_candidate(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    left: ProfileId,
    right: ProfileId,
) -> Result<Option<MatchCandidate>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT {CANDIDATE_COLUMNS} FROM match_candidates c WHERE c.tenant_id = "))
        .bind(tenant.as_str())
        .push(" AND c.left_id = ")
        .bind(left.as_uuid())
        .push(" AND c.right_id = ")
        .bind(right.as_uuid());
    conn.query_one_raw(sql.statement()).await.map_err(db_error)?.as_ref().map(candidate).transpose()
}

/// Records a steward's decision on a pending pair; false when it was no
/// longer pending.
pub async fn decide(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    left: ProfileId,
    right: ProfileId,
    status: CandidateStatus,
    by: &str,
    at: DateTime<Utc>,
) -> Result<bool, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE match_candidates SET status = ")
        .bind(status.as_str())
        .push(", decided_by = ")
        .bind(by)
        .push(", updated_at = ")
        .bind(at)
        .push(" WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND left_id = ")
        .bind(left.as_uuid())
        .push(" AND right_id = ")
        .bind(right.as_uuid())
        .push(" AND status = 'PENDING'");
    Ok(conn.execute_raw(sql.statement()).await.map_err(db_error)?.rows_affected() == 1)
}

/// The pairs of `tenant` a steward rejected, each named by the profiles
/// its two now resolve to (a profile merged since answers for its target).
pub async fn rejected(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<Vec<(ProfileId, ProfileId)>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!(
        "SELECT COALESCE(l.merged_into, l.id) AS a, COALESCE(r.merged_into, r.id) AS b FROM match_candidates c \
         {BOTH_PROFILES} WHERE c.status = 'REJECTED' AND c.tenant_id = "
    ))
    .bind(tenant.as_str());
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let id = |column: &str| row.try_get::<Uuid>("", column).map(ProfileId::from).map_err(db_error);
            Ok((id("a")?, id("b")?))
        })
        .collect()
}
