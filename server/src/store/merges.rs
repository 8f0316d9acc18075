//! `profile_merges` and `profile_merge_members`: each merge with its
//! decisions and every profile as it was before (what an exact unmerge will
//! restore), and `merged_into` chains kept one hop long.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{db_error, profiles::ProfileJson, sql::Sql};
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
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE profiles SET merged_into = ")
        .bind(target.as_uuid())
        .push(" WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND ")
        .in_list("merged_into", sources.iter().map(|id| id.as_uuid()));
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(())
}

/// The merges `profile` took part in (as target or source), newest first.
pub async fn history(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profile: ProfileId,
) -> Result<Vec<MergeRecord>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(
        "SELECT m.id, m.target_id, m.source_ids, m.reason, m.actor, m.created_at, m.decisions FROM profile_merges m \
         JOIN profile_merge_members p ON p.tenant_id = m.tenant_id AND p.merge_id = m.id WHERE p.tenant_id = ",
    )
    .bind(tenant.as_str())
    .push(" AND p.profile_id = ")
    .bind(profile.as_uuid())
    .push(" ORDER BY m.created_at DESC, m.id DESC");
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    let corrupt = |what: &str| DomainError::Internal(format!("stored merge {what}"));
    rows.iter()
        .map(|row| {
            let sources: String = row.try_get("", "source_ids").map_err(db_error)?;
            let sources: Vec<String> = serde_json::from_str(&sources).map_err(|_| corrupt("sources"))?;
            let decisions: String = row.try_get("", "decisions").map_err(db_error)?;
            let decisions: Vec<Value> = serde_json::from_str(&decisions).map_err(|_| corrupt("decisions"))?;
            let reason: String = row.try_get("", "reason").map_err(db_error)?;
            let target: Uuid = row.try_get("", "target_id").map_err(db_error)?;
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
            })
        })
        .collect()
}
