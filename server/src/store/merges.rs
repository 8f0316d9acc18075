//! `profile_merges` and `profile_merge_members`: each merge with its
//! decisions and every profile as it was before (what an exact unmerge will
//! restore), `merged_into` chains kept one hop long, and the writes
//! addressed to merged ids (`profile_redirects`) an unmerge replays.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    db_error,
    profiles::{ProfileJson, from_json},
    sql::Sql,
    supports_row_locks,
};
use crate::domain::{
    DomainError, ProfileId, TenantId,
    merge::{FieldDecision, MergeReason, MergeRecord, Rule},
    profile::Profile,
};

fn decisions_json(decisions: &[FieldDecision]) -> String {
    let list: Vec<Value> = decisions
        .iter()
        .map(|d| json!({"field": d.field, "profile_id": d.from.to_string(), "rule": d.rule.as_str()}))
        .collect();
    Value::Array(list).to_string()
}

/// Records `merge`, with `before`: its profiles as they were.
pub async fn insert(conn: &impl ConnectionTrait, merge: &MergeRecord, before: &[&Profile]) -> Result<(), DomainError> {
    let encode = |value: Result<String, serde_json::Error>| {
        value.map_err(|e| DomainError::Internal(format!("encoding a merge: {e}")))
    };
    let sources: Vec<String> = merge.sources.iter().map(ToString::to_string).collect();
    let snapshots: Vec<ProfileJson> = before.iter().map(|p| ProfileJson::of(p)).collect();
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(
        "INSERT INTO profile_merges (tenant_id, id, target_id, source_ids, reason, actor, created_at, decisions, \
         before) VALUES (",
    )
    .bind(merge.tenant.as_str())
    .push(", ")
    .bind(merge.id)
    .push(", ")
    .bind(merge.target.as_uuid())
    .push(", ")
    .bind(encode(serde_json::to_string(&sources))?)
    .push(", ")
    .bind(merge.reason.as_str())
    .push(", ")
    .bind(merge.actor.clone())
    .push(", ")
    .bind(merge.at)
    .push(", ")
    .bind(decisions_json(&merge.decisions))
    .push(", ")
    .bind(encode(serde_json::to_string(&snapshots))?)
    .push(")");
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("INSERT INTO profile_merge_members (tenant_id, profile_id, merge_id) VALUES ");
    for (i, member) in std::iter::once(&merge.target).chain(&merge.sources).enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(").bind(merge.tenant.as_str()).push(", ").bind(member.as_uuid()).push(", ").bind(merge.id).push(")");
    }
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(())
}

/// Points every profile merged into one of `sources` at `target` instead,
/// so chains stay one hop long.
pub async fn repoint(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    sources: &[ProfileId],
    target: ProfileId,
) -> Result<(), DomainError> {
    set_merged_into(conn, tenant, "merged_into", sources, target, false).await
}

/// Sets `merged_into` to `target` on the profiles whose `column` is one of
/// `ids`; with `bump`, moves their versions on (cached copies keep the
/// highest version: one that resolves elsewhere now must be dropped).
async fn set_merged_into(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    column: &str,
    ids: &[ProfileId],
    target: ProfileId,
    bump: bool,
) -> Result<(), DomainError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE profiles SET merged_into = ")
        .bind(target.as_uuid())
        .push(if bump { ", version = version + 1" } else { "" })
        .push(" WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND ")
        .in_list(column, ids.iter().map(|id| id.as_uuid()));
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(())
}

/// Columns of a merge record, from table alias `m`.
const RECORD_COLUMNS: &str =
    "m.id, m.target_id, m.source_ids, m.reason, m.actor, m.created_at, m.decisions, m.undone_at, m.undone_by";

/// The merges `profile` took part in (as target or source), newest first.
pub async fn history(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profile: ProfileId,
) -> Result<Vec<MergeRecord>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!(
        "SELECT {RECORD_COLUMNS} FROM profile_merges m JOIN profile_merge_members p ON p.tenant_id = m.tenant_id \
         AND p.merge_id = m.id WHERE p.tenant_id = "
    ))
    .bind(tenant.as_str())
    .push(" AND p.profile_id = ")
    .bind(profile.as_uuid())
    .push(" ORDER BY m.created_at DESC, m.id DESC");
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    rows.iter().map(|row| decode_record(row, tenant)).collect()
}

/// A merge as recorded, with its profiles as they were before it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The merge.
    pub record: MergeRecord,
    /// The target and every source, before the merge.
    pub before: Vec<Profile>,
}

/// The merge `id` of `tenant` with its snapshots; with `for_update`, its
/// row locked until the transaction ends (PostgreSQL), so two unmerges of
/// one merge queue.
pub async fn find(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    id: Uuid,
    for_update: bool,
) -> Result<Option<Stored>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT {RECORD_COLUMNS}, m.before FROM profile_merges m WHERE m.tenant_id = "))
        .bind(tenant.as_str())
        .push(" AND m.id = ")
        .bind(id);
    if for_update && supports_row_locks(conn) {
        sql.push(" FOR UPDATE");
    }
    let Some(row) = conn.query_one_raw(sql.statement()).await.map_err(db_error)? else { return Ok(None) };
    let record = decode_record(&row, tenant)?;
    let before: String = row.try_get("", "before").map_err(db_error)?;
    let before: Vec<Value> =
        serde_json::from_str(&before).map_err(|_| DomainError::Internal("stored merge snapshots".into()))?;
    let before = before.into_iter().map(|value| from_json(tenant, value)).collect::<Result<_, _>>()?;
    Ok(Some(Stored { record, before }))
}

/// Marks merge `id` undone by `actor` at `at`.
pub async fn mark_undone(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    id: Uuid,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(), DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE profile_merges SET undone_at = ")
        .bind(at)
        .push(", undone_by = ")
        .bind(actor)
        .push(" WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND id = ")
        .bind(id)
        .push(" AND undone_at IS NULL");
    let done = conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    if done.rows_affected() != 1 {
        return Err(DomainError::Aborted(format!("merge {id} was undone concurrently")));
    }
    Ok(())
}

/// The standing merge that made `profile` a source, if any.
pub async fn absorbing(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profile: ProfileId,
) -> Result<Option<MergeRecord>, DomainError> {
    let merges = history(conn, tenant, profile).await?;
    Ok(merges.into_iter().find(|m| m.undone.is_none() && m.sources.contains(&profile)))
}

/// The profiles whose id resolves to `target` (merged into it).
pub async fn merged_into(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    target: ProfileId,
) -> Result<Vec<ProfileId>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT id FROM profiles WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND merged_into = ")
        .bind(target.as_uuid())
        .push(" ORDER BY id");
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    rows.iter().map(|row| Ok(ProfileId::from(row.try_get::<Uuid>("", "id").map_err(db_error)?))).collect()
}

/// Points `ids` (MERGED profiles) at `target`.
pub async fn point(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[ProfileId],
    target: ProfileId,
) -> Result<(), DomainError> {
    set_merged_into(conn, tenant, "id", ids, target, true).await
}

/// Records a write addressed to the merged id `addressed_to`: the profile
/// it wrote (the one that id resolved to) before and after it.
pub async fn record_redirect(
    conn: &impl ConnectionTrait,
    addressed_to: ProfileId,
    before: &Profile,
    after: &Profile,
) -> Result<(), DomainError> {
    let encode = |p: &Profile| {
        serde_json::to_string(&ProfileJson::of(p)).map_err(|e| DomainError::Internal(format!("encoding: {e}")))
    };
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(
        "INSERT INTO profile_redirects (tenant_id, id, addressed_to, target_id, before, after, created_at) VALUES (",
    )
    .bind(after.tenant.as_str())
    .push(", ")
    .bind(Uuid::now_v7())
    .push(", ")
    .bind(addressed_to.as_uuid())
    .push(", ")
    .bind(after.id.as_uuid())
    .push(", ")
    .bind(encode(before)?)
    .push(", ")
    .bind(encode(after)?)
    .push(", ")
    .bind(after.updated_at)
    .push(")");
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(())
}

/// The writes addressed to any of `addressed` that landed on `target`
/// since `since`, oldest first: (the id addressed, before, after).
pub async fn redirects(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    target: ProfileId,
    addressed: &[ProfileId],
    since: DateTime<Utc>,
) -> Result<Vec<(ProfileId, Profile, Profile)>, DomainError> {
    if addressed.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT addressed_to, before, after FROM profile_redirects WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND target_id = ")
        .bind(target.as_uuid())
        .push(" AND created_at >= ")
        .bind(since)
        .push(" AND ")
        .in_list("addressed_to", addressed.iter().map(|id| id.as_uuid()))
        .push(" ORDER BY id");
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    let corrupt = || DomainError::Internal("stored redirect".into());
    rows.iter()
        .map(|row| {
            let addressed: Uuid = row.try_get("", "addressed_to").map_err(db_error)?;
            let decode = |column: &str| -> Result<Profile, DomainError> {
                let text: String = row.try_get("", column).map_err(db_error)?;
                from_json(tenant, serde_json::from_str(&text).map_err(|_| corrupt())?)
            };
            Ok((ProfileId::from(addressed), decode("before")?, decode("after")?))
        })
        .collect()
}

fn decode_record(row: &sea_orm::QueryResult, tenant: &TenantId) -> Result<MergeRecord, DomainError> {
    let corrupt = |what: &str| DomainError::Internal(format!("stored merge {what}"));
    let sources: String = row.try_get("", "source_ids").map_err(db_error)?;
    let sources: Vec<String> = serde_json::from_str(&sources).map_err(|_| corrupt("sources"))?;
    let decisions: String = row.try_get("", "decisions").map_err(db_error)?;
    let decisions: Vec<Value> = serde_json::from_str(&decisions).map_err(|_| corrupt("decisions"))?;
    let reason: String = row.try_get("", "reason").map_err(db_error)?;
    let target: Uuid = row.try_get("", "target_id").map_err(db_error)?;
    let undone_at: Option<DateTime<Utc>> = row.try_get("", "undone_at").map_err(db_error)?;
    let undone_by: Option<String> = row.try_get("", "undone_by").map_err(db_error)?;
    Ok(MergeRecord {
        id: row.try_get("", "id").map_err(db_error)?,
        tenant: tenant.clone(),
        target: ProfileId::from(target),
        sources: sources
            .iter()
            .map(|s| ProfileId::parse(s).map_err(|_| corrupt("source id")))
            .collect::<Result<_, _>>()?,
        reason: MergeReason::parse(&reason).ok_or_else(|| corrupt("reason"))?,
        actor: row.try_get("", "actor").map_err(db_error)?,
        at: row.try_get("", "created_at").map_err(db_error)?,
        decisions: decisions
            .iter()
            .map(|d| {
                Some(FieldDecision {
                    field: d["field"].as_str()?.to_owned(),
                    from: ProfileId::parse(d["profile_id"].as_str()?).ok()?,
                    rule: Rule::parse(d["rule"].as_str()?)?,
                })
            })
            .collect::<Option<_>>()
            .ok_or_else(|| corrupt("decisions"))?,
        undone: undone_at.map(|at| (at, undone_by.unwrap_or_default())),
    })
}
