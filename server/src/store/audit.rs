//! Queries on `audit_events` and `audit_heads`: writing records (inside a
//! write's transaction, or in batches for coalesced reads), chaining them
//! per tenant after commit, reading the chain back for verification and
//! paging, and pruning past retention.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, QueryResult, TransactionTrait};
use uuid::Uuid;

use super::{db_error, sql::Sql};
use crate::domain::{
    DomainError, TenantId,
    audit::{AuditRecord, ChainedRecord, GENESIS, link_hash},
};

const COLUMNS: &str = "tenant_id, id, seq, occurred_at, last_at, subject, roles, action, resource_type, \
    resource_ids, count, request_id, revealed, prev_hash, hash";

/// Records chained per transaction.
const CHAIN_BATCH: u64 = 1000;

/// Appends `records` (unchained), in one statement.
pub async fn insert(conn: &impl ConnectionTrait, records: &[AuditRecord]) -> Result<(), DomainError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(
        "INSERT INTO audit_events (tenant_id, id, occurred_at, last_at, subject, roles, action, resource_type, \
         resource_ids, count, request_id, revealed) VALUES ",
    );
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        sql.push("(")
            .bind(r.tenant.as_str())
            .push(", ")
            .bind(r.id)
            .push(", ")
            .bind(r.occurred_at)
            .push(", ")
            .bind(r.last_at)
            .push(", ")
            .bind(r.subject.clone())
            .push(", ")
            .bind(json(&r.roles))
            .push(", ")
            .bind(r.action.clone())
            .push(", ")
            .bind(r.resource_type.clone())
            .push(", ")
            .bind(json(&r.resource_ids))
            .push(", ")
            .bind(r.count)
            .push(", ")
            .bind(r.request_id.clone())
            .push(", ")
            .bind(json(&r.revealed))
            .push(")");
    }
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(())
}

/// Tenants with records waiting to be chained.
pub async fn tenants_with_unchained(conn: &impl ConnectionTrait) -> Result<Vec<TenantId>, DomainError> {
    tenant_column(conn, "SELECT DISTINCT tenant_id FROM audit_events WHERE seq IS NULL").await
}

async fn tenant_column(conn: &impl ConnectionTrait, query: &str) -> Result<Vec<TenantId>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(query);
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let raw: String = row.try_get("", "tenant_id").map_err(db_error)?;
            TenantId::parse(&raw).map_err(|e| DomainError::Internal(format!("stored tenant: {e}")))
        })
        .collect()
}

/// Chains up to one batch of `tenant`'s unchained records, in written
/// order, after its head; one chainer per tenant at a time (the head row is
/// locked). Returns how many were chained.
pub async fn chain(db: &DatabaseConnection, tenant: &TenantId) -> Result<u64, DomainError> {
    let tx = db.begin().await.map_err(db_error)?;
    let backend = tx.get_database_backend();
    // Creating the head first also takes SQLite's write lock, so the read
    // below cannot race another chainer there.
    let mut sql = Sql::new(backend);
    sql.push("INSERT INTO audit_heads (tenant_id, seq, hash, pruned_through) VALUES (")
        .bind(tenant.as_str())
        .push(", 0, ")
        .bind(GENESIS)
        .push(", 0) ON CONFLICT (tenant_id) DO NOTHING");
    tx.execute_raw(sql.statement()).await.map_err(db_error)?;
    let mut sql = Sql::new(backend);
    sql.push("SELECT seq, hash FROM audit_heads WHERE tenant_id = ").bind(tenant.as_str());
    if backend == DbBackend::Postgres {
        sql.push(" FOR UPDATE");
    }
    let head = tx.query_one_raw(sql.statement()).await.map_err(db_error)?;
    let head = head.ok_or_else(|| DomainError::Internal("audit head vanished".into()))?;
    let mut seq: i64 = head.try_get("", "seq").map_err(db_error)?;
    let mut prev: String = head.try_get("", "hash").map_err(db_error)?;

    let mut sql = Sql::new(backend);
    sql.push(&format!("SELECT {COLUMNS} FROM audit_events WHERE tenant_id = "))
        .bind(tenant.as_str())
        .push(&format!(" AND seq IS NULL ORDER BY id LIMIT {CHAIN_BATCH}"));
    let rows = tx.query_all_raw(sql.statement()).await.map_err(db_error)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut links = Vec::with_capacity(rows.len());
    for row in &rows {
        let record = decode(row)?.record;
        seq += 1;
        let hash = link_hash(&prev, seq, &record);
        links.push((record.id, seq, prev.clone(), hash.clone()));
        prev = hash;
    }
    if backend == DbBackend::Postgres {
        let mut sql = Sql::new(backend);
        sql.push("UPDATE audit_events a SET seq = v.seq, prev_hash = v.prev, hash = v.hash FROM (SELECT unnest(")
            .bind_array(links.iter().map(|l| l.0))
            .push("::uuid[]) AS id, unnest(")
            .bind_array(links.iter().map(|l| l.1))
            .push("::bigint[]) AS seq, unnest(")
            .bind_array(links.iter().map(|l| l.2.clone()))
            .push("::text[]) AS prev, unnest(")
            .bind_array(links.iter().map(|l| l.3.clone()))
            .push("::text[]) AS hash) v WHERE a.tenant_id = ")
            .bind(tenant.as_str())
            .push(" AND a.id = v.id");
        tx.execute_raw(sql.statement()).await.map_err(db_error)?;
    } else {
        for (id, seq, prev, hash) in &links {
            let mut sql = Sql::new(backend);
            sql.push("UPDATE audit_events SET seq = ")
                .bind(*seq)
                .push(", prev_hash = ")
                .bind(prev.clone())
                .push(", hash = ")
                .bind(hash.clone())
                .push(" WHERE tenant_id = ")
                .bind(tenant.as_str())
                .push(" AND id = ")
                .bind(*id);
            tx.execute_raw(sql.statement()).await.map_err(db_error)?;
        }
    }
    let mut sql = Sql::new(backend);
    sql.push("UPDATE audit_heads SET seq = ")
        .bind(seq)
        .push(", hash = ")
        .bind(prev)
        .push(" WHERE tenant_id = ")
        .bind(tenant.as_str());
    tx.execute_raw(sql.statement()).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(links.len() as u64)
}

/// A tenant's chain head: last position, its hash, and the position
/// retention pruned through (all 0 before the first record is chained).
pub async fn head(conn: &impl ConnectionTrait, tenant: &TenantId) -> Result<(i64, String, i64), DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT seq, hash, pruned_through FROM audit_heads WHERE tenant_id = ").bind(tenant.as_str());
    match conn.query_one_raw(sql.statement()).await.map_err(db_error)? {
        None => Ok((0, GENESIS.to_owned(), 0)),
        Some(row) => Ok((
            row.try_get("", "seq").map_err(db_error)?,
            row.try_get("", "hash").map_err(db_error)?,
            row.try_get("", "pruned_through").map_err(db_error)?,
        )),
    }
}

/// Up to `limit` chained records after position `after`, in stored position order.
pub async fn chained_after(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    after: i64,
    limit: u64,
) -> Result<Vec<ChainedRecord>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT {COLUMNS} FROM audit_events WHERE tenant_id = "))
        .bind(tenant.as_str())
        .push(" AND seq > ")
        .bind(after)
        .push(&format!(" ORDER BY seq LIMIT {limit}"));
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    rows.iter().map(decode).collect()
}

/// Records written before `before` and still not chained (at most 10).
pub async fn unchained_before(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    before: DateTime<Utc>,
) -> Result<Vec<ChainedRecord>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT {COLUMNS} FROM audit_events WHERE tenant_id = "))
        .bind(tenant.as_str())
        .push(" AND seq IS NULL AND occurred_at < ")
        .bind(before)
        .push(" ORDER BY id LIMIT 10");
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    rows.iter().map(decode).collect()
}

/// What ListAuditEvents filters by.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this subject's records.
    pub subject: Option<String>,
    /// Only records naming this resource id.
    pub resource_id: Option<String>,
    /// Only records at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only records before this time.
    pub to: Option<DateTime<Utc>>,
}

/// A page of `tenant`'s records, newest written first, before id `before`.
pub async fn list(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    filter: &AuditFilter,
    before: Option<Uuid>,
    limit: u64,
) -> Result<(Vec<ChainedRecord>, bool), DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!("SELECT {COLUMNS} FROM audit_events WHERE tenant_id = ")).bind(tenant.as_str());
    if let Some(subject) = &filter.subject {
        sql.push(" AND subject = ").bind(subject.clone());
    }
    if let Some(resource) = &filter.resource_id {
        // Ids are stored as a JSON array of strings: match the quoted id.
        let quoted = serde_json::to_string(resource).unwrap_or_default();
        sql.push(" AND resource_ids LIKE ").bind(format!("%{}%", like_escape(&quoted))).push(" ESCAPE '\\'");
    }
    if let Some(from) = filter.from {
        sql.push(" AND last_at >= ").bind(from);
    }
    if let Some(to) = filter.to {
        sql.push(" AND occurred_at < ").bind(to);
    }
    if let Some(before) = before {
        sql.push(" AND id < ").bind(before);
    }
    sql.push(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    let mut records: Vec<ChainedRecord> = rows.iter().map(decode).collect::<Result<_, _>>()?;
    let more = records.len() as u64 > limit;
    records.truncate(limit as usize);
    Ok((records, more))
}

fn like_escape(raw: &str) -> String {
    raw.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Deletes `tenant`'s chained records last seen before `cutoff`, oldest
/// first, up to `limit`, and moves the head's pruned mark; returns how many.
pub async fn prune(
    db: &DatabaseConnection,
    tenant: &TenantId,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<u64, DomainError> {
    let tx = db.begin().await.map_err(db_error)?;
    let backend = tx.get_database_backend();
    // Lock the head first (a row lock on PostgreSQL, the write lock on
    // SQLite): two pruners must not move the pruned mark out of order.
    let mut sql = Sql::new(backend);
    sql.push("UPDATE audit_heads SET pruned_through = pruned_through WHERE tenant_id = ").bind(tenant.as_str());
    tx.execute_raw(sql.statement()).await.map_err(db_error)?;
    let (_, _, pruned) = head(&tx, tenant).await?;
    // The newest position of a contiguous run of old records from the start.
    let mut sql = Sql::new(backend);
    sql.push("SELECT seq, last_at FROM audit_events WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND seq > ")
        .bind(pruned)
        .push(&format!(" ORDER BY seq LIMIT {limit}"));
    let rows = tx.query_all_raw(sql.statement()).await.map_err(db_error)?;
    let mut through = pruned;
    for row in &rows {
        let last_at: DateTime<Utc> = row.try_get("", "last_at").map_err(db_error)?;
        if last_at >= cutoff {
            break;
        }
        through = row.try_get("", "seq").map_err(db_error)?;
    }
    if through == pruned {
        return Ok(0);
    }
    let mut sql = Sql::new(backend);
    sql.push("DELETE FROM audit_events WHERE tenant_id = ").bind(tenant.as_str()).push(" AND seq <= ").bind(through);
    let deleted = tx.execute_raw(sql.statement()).await.map_err(db_error)?.rows_affected();
    let mut sql = Sql::new(backend);
    sql.push("UPDATE audit_heads SET pruned_through = ")
        .bind(through)
        .push(" WHERE tenant_id = ")
        .bind(tenant.as_str());
    tx.execute_raw(sql.statement()).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(deleted)
}

/// Every tenant with a chain.
pub async fn tenants(conn: &impl ConnectionTrait) -> Result<Vec<TenantId>, DomainError> {
    tenant_column(conn, "SELECT tenant_id FROM audit_heads").await
}

fn decode(row: &QueryResult) -> Result<ChainedRecord, DomainError> {
    let text = |column: &str| -> Result<String, DomainError> { row.try_get::<String>("", column).map_err(db_error) };
    let list = |column: &str| -> Result<Vec<String>, DomainError> {
        serde_json::from_str(&text(column)?).map_err(|e| DomainError::Internal(format!("stored {column}: {e}")))
    };
    let tenant = text("tenant_id")?;
    Ok(ChainedRecord {
        record: AuditRecord {
            id: row.try_get("", "id").map_err(db_error)?,
            tenant: TenantId::parse(&tenant).map_err(|e| DomainError::Internal(format!("stored tenant: {e}")))?,
            occurred_at: row.try_get("", "occurred_at").map_err(db_error)?,
            last_at: row.try_get("", "last_at").map_err(db_error)?,
            subject: text("subject")?,
            roles: list("roles")?,
            action: text("action")?,
            resource_type: text("resource_type")?,
            resource_ids: list("resource_ids")?,
            count: row.try_get("", "count").map_err(db_error)?,
            request_id: text("request_id")?,
            revealed: list("revealed")?,
        },
        seq: row.try_get("", "seq").map_err(db_error)?,
        prev_hash: row.try_get("", "prev_hash").map_err(db_error)?,
        hash: row.try_get("", "hash").map_err(db_error)?,
    })
}
