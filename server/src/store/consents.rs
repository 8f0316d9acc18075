//! Queries on `consent_decisions` (the history) and `consents` (the decision
//! in force per purpose and contact point).
//!
//! `consents` holds a copy of each decision in force, so the reads of the
//! state never join the history. They are SQL written here, with
//! placeholders for the backend at hand, so each answer costs one round trip:
//! a whole BatchCheckConsent of 1,000 profiles or addresses is one statement.

use c360_entity::{consent, consent_decision};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait, QueryResult, SqlErr, sea_query::OnConflict};
use uuid::Uuid;

use super::{db_error, sql::Sql};
use crate::domain::{
    DomainError, ProfileId, TenantId,
    consent::{ConsentDecision, ConsentPurpose, ConsentStatus, ContactKind, ContactPoint, LegalBasis},
    profile::ProfileStatus,
};

/// Columns of a decision in force, as the same `d_*` aliases, from table alias `c`.
const IN_FORCE_COLUMNS: &str = "c.decision_id AS d_id, c.profile_id AS d_profile_id, c.purpose AS d_purpose, \
    c.contact_type AS d_contact_type, c.contact_value AS d_contact_value, c.status AS d_status, \
    c.legal_basis AS d_legal_basis, c.source AS d_source, c.channel AS d_channel, c.captured_at AS d_captured_at, \
    c.expires_at AS d_expires_at, c.evidence AS d_evidence, c.request_id AS d_request_id, \
    c.recorded_by AS d_recorded_by, c.recorded_at AS d_recorded_at";

/// Columns of a decision, as `d_*` aliases of table alias `d`.
const DECISION_COLUMNS: &str = "d.id AS d_id, d.profile_id AS d_profile_id, d.purpose AS d_purpose, \
    d.contact_type AS d_contact_type, d.contact_value AS d_contact_value, d.status AS d_status, \
    d.legal_basis AS d_legal_basis, d.source AS d_source, d.channel AS d_channel, d.captured_at AS d_captured_at, \
    d.expires_at AS d_expires_at, d.evidence AS d_evidence, d.request_id AS d_request_id, \
    d.recorded_by AS d_recorded_by, d.recorded_at AS d_recorded_at";

/// Records `decisions` in the history, in one statement. A request id
/// already used fails with INVALID_ARGUMENT naming `request_id` (the caller
/// looked for retries of the same request first).
pub async fn insert_decisions(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    decisions: &[ConsentDecision],
) -> Result<(), DomainError> {
    if decisions.is_empty() {
        return Ok(());
    }
    let rows = decisions.iter().map(|decision| {
        let (contact_type, contact_value) = contact_columns(decision.contact_point.as_ref());
        consent_decision::ActiveModel {
            tenant_id: Set(tenant.as_str().to_owned()),
            id: Set(decision.id),
            profile_id: Set(decision.profile_id.as_uuid()),
            purpose: Set(decision.purpose.as_str().to_owned()),
            contact_type: Set(contact_type),
            contact_value: Set(contact_value),
            status: Set(decision.status.as_str().to_owned()),
            legal_basis: Set(decision.legal_basis.as_str().to_owned()),
            source: Set(decision.source.clone()),
            channel: Set(decision.channel.clone()),
            captured_at: Set(decision.captured_at),
            expires_at: Set(decision.expires_at),
            evidence: Set(decision.evidence.clone()),
            request_id: Set(decision.request_id.clone()),
            recorded_by: Set(decision.recorded_by.clone()),
            recorded_at: Set(decision.recorded_at),
            addressed_to: Set(decision.addressed_to.map(|id| id.as_uuid())),
        }
    });
    match consent_decision::Entity::insert_many(rows).exec_without_returning(conn).await {
        Ok(_) => Ok(()),
        // Only the request-id index: any other duplicate is a bug, not the caller's.
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(m)) if m.contains("request")) => {
            Err(DomainError::invalid("request_id", "already used for a different consent decision"))
        }
        Err(e) => Err(db_error(e)),
    }
}

/// Makes each of `decisions` the one in force for its profile, purpose and
/// contact point, in one statement (at most one decision per key).
pub async fn put_in_force(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    decisions: &[&ConsentDecision],
) -> Result<(), DomainError> {
    if decisions.is_empty() {
        return Ok(());
    }
    let rows = decisions.iter().map(|decision| {
        let (contact_type, contact_value) = contact_columns(decision.contact_point.as_ref());
        consent::ActiveModel {
            tenant_id: Set(tenant.as_str().to_owned()),
            profile_id: Set(decision.profile_id.as_uuid()),
            purpose: Set(decision.purpose.as_str().to_owned()),
            contact_type: Set(contact_type),
            contact_value: Set(contact_value),
            decision_id: Set(decision.id),
            status: Set(decision.status.as_str().to_owned()),
            legal_basis: Set(decision.legal_basis.as_str().to_owned()),
            source: Set(decision.source.clone()),
            channel: Set(decision.channel.clone()),
            captured_at: Set(decision.captured_at),
            expires_at: Set(decision.expires_at),
            evidence: Set(decision.evidence.clone()),
            request_id: Set(decision.request_id.clone()),
            recorded_by: Set(decision.recorded_by.clone()),
            recorded_at: Set(decision.recorded_at),
        }
    });
    let on_conflict = OnConflict::columns([
        consent::Column::TenantId,
        consent::Column::ProfileId,
        consent::Column::Purpose,
        consent::Column::ContactType,
        consent::Column::ContactValue,
    ])
    .update_columns([
        consent::Column::DecisionId,
        consent::Column::Status,
        consent::Column::LegalBasis,
        consent::Column::Source,
        consent::Column::Channel,
        consent::Column::CapturedAt,
        consent::Column::ExpiresAt,
        consent::Column::Evidence,
        consent::Column::RequestId,
        consent::Column::RecordedBy,
        consent::Column::RecordedAt,
    ])
    .to_owned();
    consent::Entity::insert_many(rows).on_conflict(on_conflict).exec_without_returning(conn).await.map_err(db_error)?;
    Ok(())
}

/// Every decision in force for `profiles`, and the decisions recorded
/// earlier under any of `request_ids`: one round trip for a write's two
/// questions.
pub async fn in_force_and_requests(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profiles: &[ProfileId],
    request_ids: &[&str],
) -> Result<(Vec<ConsentDecision>, Vec<ConsentDecision>), DomainError> {
    if profiles.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT 'F' AS via, {IN_FORCE_COLUMNS} FROM consents c WHERE c.tenant_id = "))
        .bind(tenant.as_str())
        .push(" AND ")
        .in_list("c.profile_id", profiles.iter().map(|id| id.as_uuid()));
    if !request_ids.is_empty() {
        let ids = request_ids.iter().map(|id| (*id).to_owned());
        if conn.get_database_backend() == DbBackend::Postgres {
            // One probe of the unique request index per id: an equality on
            // it estimates one row whatever the statistics say, where
            // `= ANY(list)` lost to a scan of the tenant's whole history
            // while the table's statistics were young.
            sql.push(&format!(" UNION ALL SELECT 'R' AS via, {DECISION_COLUMNS} FROM unnest("))
                .bind_array(ids)
                .push(") AS r(request_id) JOIN LATERAL (SELECT * FROM consent_decisions x WHERE x.tenant_id = ")
                .bind(tenant.as_str())
                .push(" AND x.request_id IS NOT NULL AND x.request_id = r.request_id) d ON true");
        } else {
            sql.push(&format!(
                " UNION ALL SELECT 'R' AS via, {DECISION_COLUMNS} FROM consent_decisions d WHERE d.tenant_id = "
            ))
            .bind(tenant.as_str())
            .push(" AND ")
            .in_list("d.request_id", ids);
        }
    }
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    let (mut in_force, mut earlier) = (Vec::new(), Vec::new());
    for row in &rows {
        let via: String = row.try_get("", "via").map_err(db_error)?;
        if let Some(decision) = decode_decision(row)? {
            if via == "F" { in_force.push(decision) } else { earlier.push(decision) }
        }
    }
    Ok((in_force, earlier))
}

/// Removes every decision in force for `profile` (merged away: its
/// decisions now count for the profile it was merged into). History stays.
pub async fn clear_in_force(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profile: ProfileId,
) -> Result<(), DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("DELETE FROM consents WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND profile_id = ")
        .bind(profile.as_uuid());
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(())
}

/// Every decision in force for `profile`, by purpose, whole-purpose decisions
/// before contact points.
pub async fn all_in_force(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profile: ProfileId,
) -> Result<Vec<ConsentDecision>, DomainError> {
    all_in_force_of_many(conn, tenant, &[profile]).await
}

/// [`all_in_force`] of many profiles in one query, ordered by profile, then
/// as there.
pub async fn all_in_force_of_many(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profiles: &[ProfileId],
) -> Result<Vec<ConsentDecision>, DomainError> {
    if profiles.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT {IN_FORCE_COLUMNS} FROM consents c WHERE c.tenant_id = "))
        .bind(tenant.as_str())
        .push(" AND ")
        .in_list("c.profile_id", profiles.iter().map(|id| id.as_uuid()));
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    let mut decisions: Vec<ConsentDecision> =
        rows.iter().map(decode_decision).filter_map(Result::transpose).collect::<Result<_, _>>()?;
    // Ordered here, not in SQL: stored names sort alphabetically, and callers
    // read purposes in their declared order.
    decisions
        .sort_by(|a, b| (a.profile_id, a.purpose, &a.contact_point).cmp(&(b.profile_id, b.purpose, &b.contact_point)));
    Ok(decisions)
}

/// One page of `profile`'s history, newest recorded first: up to `limit`
/// decisions recorded before `before`, optionally of one purpose, and whether
/// more follow. The decisions of profiles merged into it are its history too
/// (each keeps the id that recorded it, so an unmerge can take it back).
pub async fn history(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profile: ProfileId,
    purpose: Option<ConsentPurpose>,
    before: Option<Uuid>,
    limit: u64,
) -> Result<(Vec<ConsentDecision>, bool), DomainError> {
    // Chains are one hop long in the database: every profile that resolves
    // to `profile` names it in `merged_into`. Read first, so the history is
    // an index scan per profile (a subquery under OR would filter the
    // tenant's whole history).
    let mut members = super::merges::merged_into(conn, tenant, profile).await?;
    members.push(profile);
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT {DECISION_COLUMNS} FROM consent_decisions d WHERE d.tenant_id = "))
        .bind(tenant.as_str())
        .push(" AND ")
        .in_list("d.profile_id", members.iter().map(|id| id.as_uuid()));
    if let Some(purpose) = purpose {
        sql.push(" AND d.purpose = ").bind(purpose.as_str());
    }
    if let Some(before) = before {
        sql.push(" AND d.id < ").bind(before);
    }
    sql.push(&format!(" ORDER BY d.id DESC LIMIT {}", limit + 1));
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    let mut decisions: Vec<ConsentDecision> =
        rows.iter().map(decode_decision).filter_map(Result::transpose).collect::<Result<_, _>>()?;
    let more = decisions.len() as u64 > limit;
    decisions.truncate(limit as usize);
    Ok((decisions, more))
}

/// Who a consent check asks about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckSubject {
    /// A profile by id: whole-purpose decisions only.
    Profile(ProfileId),
    /// Whoever holds this address: its own decision first, then the whole purpose's.
    Contact(ContactPoint),
}

/// What the database knows about one subject of a check.
#[derive(Debug, Clone)]
pub struct CheckRow {
    /// The subject this row answers.
    pub subject: CheckSubject,
    /// The profile found.
    pub profile_id: ProfileId,
    /// Its status.
    pub profile_status: ProfileStatus,
    /// A decision in force (for an address, there may be a row for its own
    /// decision and one for the whole purpose's); `None`: none on record.
    pub decision: Option<ConsentDecision>,
}

/// The decisions in force for `purpose` of every subject, in one statement.
/// Subjects that match no profile have no row.
pub async fn check(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    purpose: ConsentPurpose,
    subjects: &[CheckSubject],
) -> Result<Vec<CheckRow>, DomainError> {
    let profiles: Vec<ProfileId> = subjects
        .iter()
        .filter_map(|s| match s {
            CheckSubject::Profile(id) => Some(*id),
            CheckSubject::Contact(_) => None,
        })
        .collect();
    let by_kind = |kind: ContactKind| -> Vec<&str> {
        subjects
            .iter()
            .filter_map(|s| match s {
                CheckSubject::Contact(point) if point.kind == kind => Some(point.value.as_str()),
                _ => None,
            })
            .collect()
    };
    let (emails, phones) = (by_kind(ContactKind::Email), by_kind(ContactKind::Phone));
    let mut sql = Sql::new(conn.get_database_backend());
    if !profiles.is_empty() {
        // On PostgreSQL a LATERAL join with LIMIT 1 (which keeps the planner
        // from flattening it) probes the decision in force per profile by
        // primary key, whatever the table statistics say: a plan made while
        // `consents` was small would otherwise scan it whole. SQLite probes
        // by index anyway and has no LATERAL.
        let postgres = conn.get_database_backend() == DbBackend::Postgres;
        let (open, close) = if postgres {
            (
                "LEFT JOIN LATERAL (SELECT * FROM consents c WHERE c.tenant_id = q.tenant_id \
                 AND c.profile_id = q.id AND c.purpose = ",
                " AND c.contact_type = '' LIMIT 1) c ON true",
            )
        } else {
            (
                "LEFT JOIN consents c ON c.tenant_id = q.tenant_id AND c.profile_id = q.id AND c.purpose = ",
                " AND c.contact_type = ''",
            )
        };
        // A merged id (`p`) answers for the profile it resolves to (`q`).
        sql.push(&format!(
            "SELECT p.id AS asked_id, q.id AS profile_id, q.status AS profile_status, '' AS id_type, '' AS id_value, \
             {IN_FORCE_COLUMNS} FROM profiles p JOIN profiles q ON q.tenant_id = p.tenant_id \
             AND q.id = COALESCE(p.merged_into, p.id) {open}"
        ))
        .bind(purpose.as_str())
        .push(close)
        .push(" WHERE p.tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND ")
        .in_list("p.id", profiles.iter().map(|id| id.as_uuid()));
    }
    if !emails.is_empty() || !phones.is_empty() {
        if !profiles.is_empty() {
            sql.push(" UNION ALL ");
        }
        sql.push(&format!(
            "SELECT p.id AS asked_id, p.id AS profile_id, p.status AS profile_status, i.id_type AS id_type, \
             i.value AS id_value, \
             {IN_FORCE_COLUMNS} FROM identities i JOIN profiles p ON p.tenant_id = i.tenant_id AND p.id = i.profile_id \
             LEFT JOIN consents c ON c.tenant_id = i.tenant_id AND c.profile_id = i.profile_id AND c.purpose = "
        ))
        .bind(purpose.as_str())
        .push(
            " AND (c.contact_type = '' OR (c.contact_type = i.id_type AND c.contact_value = i.value)) \
             WHERE i.tenant_id = ",
        )
        .bind(tenant.as_str())
        .push(" AND i.namespace = '' AND (");
        let mut first = true;
        for (kind, values) in [(ContactKind::Email, &emails), (ContactKind::Phone, &phones)] {
            if values.is_empty() {
                continue;
            }
            if !first {
                sql.push(" OR ");
            }
            first = false;
            sql.push("(i.id_type = ")
                .bind(kind.as_str())
                .push(" AND ")
                .in_list("i.value", values.iter().map(|v| (*v).to_owned()))
                .push(")");
        }
        sql.push(")");
    }
    if sql.is_empty() {
        return Ok(Vec::new());
    }
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let profile_id: Uuid = row.try_get("", "profile_id").map_err(db_error)?;
            let status: String = row.try_get("", "profile_status").map_err(db_error)?;
            let id_type: String = row.try_get("", "id_type").map_err(db_error)?;
            let subject = match ContactKind::parse(&id_type) {
                Some(kind) => {
                    CheckSubject::Contact(ContactPoint { kind, value: row.try_get("", "id_value").map_err(db_error)? })
                }
                None => {
                    let asked: Uuid = row.try_get("", "asked_id").map_err(db_error)?;
                    CheckSubject::Profile(ProfileId::from(asked))
                }
            };
            Ok(CheckRow {
                subject,
                profile_id: ProfileId::from(profile_id),
                profile_status: ProfileStatus::parse(&status)
                    .ok_or_else(|| DomainError::Internal(format!("stored status '{status}'")))?,
                decision: decode_decision(row)?,
            })
        })
        .collect()
}

fn contact_columns(contact: Option<&ContactPoint>) -> (String, String) {
    match contact {
        Some(point) => (point.kind.as_str().to_owned(), point.value.clone()),
        None => (String::new(), String::new()),
    }
}

/// The `d_*` columns of `row`; `None` when they are NULL (no decision joined).
fn decode_decision(row: &QueryResult) -> Result<Option<ConsentDecision>, DomainError> {
    let Some(id) = row.try_get::<Option<Uuid>>("", "d_id").map_err(db_error)? else {
        return Ok(None);
    };
    let text = |column: &str| -> Result<String, DomainError> { row.try_get::<String>("", column).map_err(db_error) };
    let stored = |column: &str, value: &str| DomainError::Internal(format!("stored {column} '{value}'"));
    let purpose = text("d_purpose")?;
    let status = text("d_status")?;
    let basis = text("d_legal_basis")?;
    let contact_type = text("d_contact_type")?;
    let contact_point = match contact_type.as_str() {
        "" => None,
        other => Some(ContactPoint {
            kind: ContactKind::parse(other).ok_or_else(|| stored("contact_type", other))?,
            value: text("d_contact_value")?,
        }),
    };
    Ok(Some(ConsentDecision {
        id,
        profile_id: ProfileId::from(row.try_get::<Uuid>("", "d_profile_id").map_err(db_error)?),
        purpose: ConsentPurpose::parse(&purpose).ok_or_else(|| stored("purpose", &purpose))?,
        status: ConsentStatus::parse(&status).ok_or_else(|| stored("status", &status))?,
        legal_basis: LegalBasis::parse(&basis).ok_or_else(|| stored("legal_basis", &basis))?,
        source: text("d_source")?,
        channel: row.try_get("", "d_channel").map_err(db_error)?,
        captured_at: row.try_get("", "d_captured_at").map_err(db_error)?,
        expires_at: row.try_get("", "d_expires_at").map_err(db_error)?,
        evidence: row.try_get("", "d_evidence").map_err(db_error)?,
        contact_point,
        request_id: row.try_get("", "d_request_id").map_err(db_error)?,
        recorded_by: text("d_recorded_by")?,
        recorded_at: row.try_get("", "d_recorded_at").map_err(db_error)?,
        // Written, and used by unmerges in SQL only: reads leave it out (the
        // copies in force have no such column).
        addressed_to: None,
    }))
}

/// Every decision in the history of `profiles`, in the order recorded.
pub async fn decisions_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profiles: &[ProfileId],
) -> Result<Vec<ConsentDecision>, DomainError> {
    if profiles.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT {DECISION_COLUMNS} FROM consent_decisions d WHERE d.tenant_id = "))
        .bind(tenant.as_str())
        .push(" AND ")
        .in_list("d.profile_id", profiles.iter().map(|id| id.as_uuid()))
        .push(" ORDER BY d.id");
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    rows.iter().map(decode_decision).filter_map(Result::transpose).collect()
}

/// Gives the decisions recorded for `from` through one of the merged ids
/// `addressed` to `to` (an unmerge: they arrived for that profile).
pub async fn give_back(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    from: ProfileId,
    addressed: &[ProfileId],
    to: ProfileId,
) -> Result<(), DomainError> {
    if addressed.is_empty() {
        return Ok(());
    }
    reassign(conn, tenant, to, |sql| {
        sql.push("profile_id = ")
            .bind(from.as_uuid())
            .push(" AND ")
            .in_list("addressed_to", addressed.iter().map(|id| id.as_uuid()));
    })
    .await
}

/// Moves the decisions `ids` into the history of `to` (an unmerge: they are
/// about a contact point `to` holds).
pub async fn hand_over(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[Uuid],
    to: ProfileId,
) -> Result<(), DomainError> {
    if ids.is_empty() {
        return Ok(());
    }
    reassign(conn, tenant, to, |sql| {
        sql.in_list("id", ids.iter().copied());
    })
    .await
}

/// Moves the decisions of `tenant` that `filter` selects into the history
/// of `to`.
async fn reassign(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    to: ProfileId,
    filter: impl FnOnce(&mut Sql),
) -> Result<(), DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE consent_decisions SET profile_id = ")
        .bind(to.as_uuid())
        .push(" WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND ");
    filter(&mut sql);
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(())
}
