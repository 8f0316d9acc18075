//! The outbox: each domain event is written in the transaction of its change,
//! then stamped with its position in commit order, published by the relay of
//! its lane, and read by the change stream.
//!
//! **Positions.** `seq` is assigned at insert, so a row with a lower `seq`
//! can commit after one with a higher `seq`, and a reader resuming "after seq
//! N" would miss it. [`stamp`] gives committed rows a `pos` after the fact:
//! one stamper at a time (the `outbox_state` row is its lock), every stamp
//! greater than every earlier one, committed before the next stamp begins. A
//! row is stamped only once it is visible, that is committed, so a reader
//! that has seen position P has seen every row it will ever see below P: no
//! position is skipped. One customer's events are written while its profile
//! row is locked (at the end of the transaction), so their `seq` order is
//! their commit order, and the stamps keep it.
//!
//! **Lanes.** A customer's events go to one of [`LANES`] lanes; each lane is
//! leased to one relay at a time and published in position order, so two
//! relays never interleave one customer's events (`FOR UPDATE SKIP LOCKED`
//! over rows would: the second relay skips a locked row and publishes the
//! customer's next event first). A lane's `published_pos` records how far the
//! broker acknowledged it: one write per batch, not one per row.

use std::collections::HashSet;

use c360_entity::{
    outbox::{ActiveModel, Column, Entity},
    outbox_parked,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, Iterable, QueryFilter, QueryOrder,
    QueryResult, Statement, TransactionTrait,
};
use serde_json::Value;
use uuid::Uuid;

use super::{db_error, rows_per_statement, sql::Sql};
use crate::domain::{DomainError, ProfileId, TenantId, events::DomainEvent};

/// Lanes of the relay. Fixed: a customer's lane must never change, or two
/// relays could publish its events at once.
pub const LANES: i16 = 16;

/// The lane of `customer`'s events: the low four bits of the id's last byte
/// (random in UUID v4 and v7). The migration computes the same in SQL.
pub fn lane_of(customer: ProfileId) -> i16 {
    i16::from(customer.as_uuid().as_bytes()[15] & 0x0f)
}

/// Appends `events` in order, in as few statements as the bind-parameter
/// limit allows; they commit or roll back with the caller's transaction.
pub async fn append(conn: &impl ConnectionTrait, events: &[DomainEvent]) -> Result<(), DomainError> {
    for chunk in events.chunks(rows_per_statement(Column::iter().count())) {
        Entity::insert_many(chunk.iter().map(row)).exec_without_returning(conn).await.map_err(db_error)?;
    }
    Ok(())
}

fn row(event: &DomainEvent) -> ActiveModel {
    ActiveModel {
        seq: NotSet,
        pos: Set(None),
        lane: Set(lane_of(event.aggregate_id)),
        event_id: Set(event.event_id),
        tenant_id: Set(event.tenant.as_str().to_owned()),
        aggregate_type: Set(event.aggregate_type().to_owned()),
        aggregate_id: Set(event.aggregate_id.as_uuid()),
        event_type: Set(event.event_type().to_owned()),
        subject: Set(event.subject().to_owned()),
        payload: Set(event.envelope()),
        created_at: Set(event.timestamp),
    }
}

/// Every envelope of the outbox, in the order written.
pub async fn envelopes(conn: &impl ConnectionTrait) -> Result<Vec<Value>, DomainError> {
    let rows = Entity::find().order_by_asc(Column::Seq).all(conn).await.map_err(db_error)?;
    Ok(rows.into_iter().map(|row| row.payload).collect())
}

/// What one [`stamp`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Rows stamped.
    pub count: u64,
    /// The last position stamped, when any row was.
    pub last_pos: Option<i64>,
}

/// Stamps up to `limit` committed rows that have no position yet with the
/// next positions, in `seq` order.
pub async fn stamp(db: &DatabaseConnection, limit: u64) -> Result<Stamp, DomainError> {
    let backend = db.get_database_backend();
    // Cheap when idle: no lock is taken unless something waits.
    let waiting = Entity::find().filter(Column::Pos.is_null()).one(db).await.map_err(db_error)?;
    if waiting.is_none() {
        return Ok(Stamp { count: 0, last_pos: None });
    }
    let tx = db.begin().await.map_err(db_error)?;
    // The state row is the stampers' lock. On PostgreSQL the next statement
    // takes a fresh snapshot, so it sees every row the previous stamper saw.
    let locked = tx
        .query_one_raw(Statement::from_string(
            backend,
            "UPDATE outbox_state SET last_pos = last_pos WHERE id = 1 RETURNING last_pos",
        ))
        .await
        .map_err(db_error)?
        .ok_or_else(|| DomainError::Internal("outbox_state has no row".into()))?;
    let last: i64 = locked.try_get("", "last_pos").map_err(db_error)?;
    let mut sql = Sql::new(backend);
    sql.push("UPDATE outbox SET pos = ")
        .bind(last)
        .push(
            " + r.n FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS n FROM outbox \
             WHERE pos IS NULL ORDER BY seq LIMIT ",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .push(") r WHERE outbox.seq = r.seq");
    let count = tx.execute_raw(sql.statement()).await.map_err(db_error)?.rows_affected();
    let top = last + i64::try_from(count).unwrap_or(i64::MAX);
    let mut sql = Sql::new(backend);
    sql.push("UPDATE outbox_state SET last_pos = ").bind(top).push(" WHERE id = 1");
    tx.execute_raw(sql.statement()).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(Stamp { count, last_pos: (count > 0).then_some(top) })
}

/// One stamped outbox row, as the relay and the change stream read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped {
    /// Insertion order (the row's key).
    pub seq: i64,
    /// Position in commit order.
    pub pos: i64,
    /// Relay lane.
    pub lane: i16,
    /// Owning tenant.
    pub tenant: String,
    /// The customer (the broker's message key).
    pub aggregate_id: Uuid,
    /// The envelope's eventId.
    pub event_id: Uuid,
    /// The envelope's eventType.
    pub event_type: String,
    /// Topic.
    pub subject: String,
    /// The envelope as JSON text, exactly as stored.
    pub envelope: String,
    /// When the change happened.
    pub created_at: DateTime<Utc>,
}

fn stamped_columns(backend: DbBackend) -> &'static str {
    match backend {
        // jsonb's text form, so the relay sends the stored bytes without a
        // parse and re-encode per row.
        DbBackend::Postgres => {
            "seq, pos, lane, tenant_id, aggregate_id, event_id, event_type, subject, payload::text AS envelope, created_at"
        }
        _ => "seq, pos, lane, tenant_id, aggregate_id, event_id, event_type, subject, payload AS envelope, created_at",
    }
}

fn decode_stamped(row: &QueryResult) -> Result<Stamped, DomainError> {
    let get_i64 = |column: &str| row.try_get::<i64>("", column).map_err(db_error);
    Ok(Stamped {
        seq: get_i64("seq")?,
        pos: get_i64("pos")?,
        lane: row.try_get("", "lane").map_err(db_error)?,
        tenant: row.try_get("", "tenant_id").map_err(db_error)?,
        aggregate_id: row.try_get("", "aggregate_id").map_err(db_error)?,
        event_id: row.try_get("", "event_id").map_err(db_error)?,
        event_type: row.try_get("", "event_type").map_err(db_error)?,
        subject: row.try_get("", "subject").map_err(db_error)?,
        envelope: row.try_get("", "envelope").map_err(db_error)?,
        created_at: row.try_get("", "created_at").map_err(db_error)?,
    })
}

/// Up to `limit` stamped rows after position `after`, in position order:
/// all tenants when `tenant` is `None`, else that tenant's (and one
/// customer's, when given).
pub async fn after(
    conn: &impl ConnectionTrait,
    after: i64,
    tenant: Option<&TenantId>,
    customer: Option<ProfileId>,
    limit: u64,
) -> Result<Vec<Stamped>, DomainError> {
    let backend = conn.get_database_backend();
    let mut sql = Sql::new(backend);
    sql.push(&format!("SELECT {} FROM outbox WHERE pos > ", stamped_columns(backend))).bind(after);
    if let Some(tenant) = tenant {
        sql.push(" AND tenant_id = ").bind(tenant.as_str());
    }
    if let Some(customer) = customer {
        sql.push(" AND aggregate_id = ").bind(customer.as_uuid());
    }
    sql.push(" ORDER BY pos LIMIT ").bind(i64::try_from(limit).unwrap_or(i64::MAX));
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    rows.iter().map(decode_stamped).collect()
}

/// Rows of `lanes` (lane, acknowledged position) above each lane's position,
/// in position order, up to `limit`.
pub async fn pending(
    conn: &impl ConnectionTrait,
    lanes: &[(i16, i64)],
    limit: u64,
) -> Result<Vec<Stamped>, DomainError> {
    let Some(lowest) = lanes.iter().map(|(_, pos)| *pos).min() else {
        return Ok(Vec::new());
    };
    let backend = conn.get_database_backend();
    let mut sql = Sql::new(backend);
    sql.push(&format!("SELECT {} FROM outbox WHERE pos > ", stamped_columns(backend)))
        .bind(lowest)
        .push(" AND ")
        .in_list("lane", lanes.iter().map(|(lane, _)| *lane))
        .push(" ORDER BY pos LIMIT ")
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let stamped = decode_stamped(row)?;
        // A lane claimed later may start below the others: skip what its
        // own position already covers.
        if lanes.iter().any(|(lane, pos)| *lane == stamped.lane && stamped.pos > *pos) {
            out.push(stamped);
        }
    }
    Ok(out)
}

/// The rows with these `seq`s, in position order.
pub async fn by_seq(conn: &impl ConnectionTrait, seqs: &[i64]) -> Result<Vec<Stamped>, DomainError> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let backend = conn.get_database_backend();
    let mut sql = Sql::new(backend);
    sql.push(&format!("SELECT {} FROM outbox WHERE ", stamped_columns(backend)))
        .in_list("seq", seqs.iter().copied())
        .push(" ORDER BY pos");
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    rows.iter().map(decode_stamped).collect()
}

/// The last position stamped and the highest position pruned.
pub async fn positions(conn: &impl ConnectionTrait) -> Result<(i64, i64), DomainError> {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT last_pos, pruned_through FROM outbox_state WHERE id = 1",
        ))
        .await
        .map_err(db_error)?
        .ok_or_else(|| DomainError::Internal("outbox_state has no row".into()))?;
    Ok((row.try_get("", "last_pos").map_err(db_error)?, row.try_get("", "pruned_through").map_err(db_error)?))
}

/// Records that relay `relay` is alive at `now`; returns how many relays
/// (itself included) were seen since `since`.
pub async fn heartbeat(
    conn: &impl ConnectionTrait,
    relay: &str,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
) -> Result<u64, DomainError> {
    let backend = conn.get_database_backend();
    let mut sql = Sql::new(backend);
    sql.push("INSERT INTO outbox_relays (id, seen_at) VALUES (")
        .bind(relay)
        .push(", ")
        .bind(now)
        .push(") ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at");
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    let mut sql = Sql::new(backend);
    // Relays gone for a long while are forgotten.
    sql.push("DELETE FROM outbox_relays WHERE seen_at < ").bind(since - chrono::Duration::hours(1));
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    let mut sql = Sql::new(backend);
    sql.push("SELECT COUNT(*) AS live FROM outbox_relays WHERE seen_at >= ").bind(since);
    let row = conn.query_one_raw(sql.statement()).await.map_err(db_error)?;
    let live: i64 = row.map(|r| r.try_get("", "live")).transpose().map_err(db_error)?.unwrap_or(1);
    Ok(u64::try_from(live.max(1)).unwrap_or(1))
}

/// Removes relay `relay` from the live set and frees its lanes (on shutdown).
pub async fn leave(conn: &impl ConnectionTrait, relay: &str) -> Result<(), DomainError> {
    let backend = conn.get_database_backend();
    let mut sql = Sql::new(backend);
    sql.push("UPDATE outbox_lanes SET owner = NULL, lease_until = NULL WHERE owner = ").bind(relay);
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    let mut sql = Sql::new(backend);
    sql.push("DELETE FROM outbox_relays WHERE id = ").bind(relay);
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(())
}

/// Extends `relay`'s leases to `until`; returns the lanes it still holds
/// with their acknowledged positions.
pub async fn renew(
    conn: &impl ConnectionTrait,
    relay: &str,
    until: DateTime<Utc>,
) -> Result<Vec<(i16, i64)>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE outbox_lanes SET lease_until = ")
        .bind(until)
        .push(" WHERE owner = ")
        .bind(relay)
        .push(" RETURNING lane, published_pos");
    lanes(conn, sql).await
}

/// Takes up to `max` lanes whose lease lapsed before `now` (or that nobody
/// holds) for `relay` until `until`; returns them with their positions.
pub async fn claim(
    conn: &impl ConnectionTrait,
    relay: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    max: u64,
) -> Result<Vec<(i16, i64)>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    // The lapse is tested on the row itself too: on PostgreSQL a second
    // claimer that waited for the row re-checks it against the new version.
    sql.push("UPDATE outbox_lanes SET owner = ")
        .bind(relay)
        .push(", lease_until = ")
        .bind(until)
        .push(" WHERE (owner IS NULL OR lease_until IS NULL OR lease_until < ")
        .bind(now)
        .push(
            ") AND lane IN (SELECT lane FROM outbox_lanes WHERE owner IS NULL OR lease_until IS NULL OR lease_until < ",
        )
        .bind(now)
        .push(" ORDER BY lane LIMIT ")
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .push(") RETURNING lane, published_pos");
    lanes(conn, sql).await
}

/// Gives up `lanes` held by `relay`.
pub async fn release(conn: &impl ConnectionTrait, relay: &str, lanes: &[i16]) -> Result<(), DomainError> {
    if lanes.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE outbox_lanes SET owner = NULL, lease_until = NULL WHERE owner = ")
        .bind(relay)
        .push(" AND ")
        .in_list("lane", lanes.iter().copied());
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(())
}

async fn lanes(conn: &impl ConnectionTrait, sql: Sql) -> Result<Vec<(i16, i64)>, DomainError> {
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    let mut lanes: Vec<(i16, i64)> = rows
        .iter()
        .map(|row| {
            Ok((row.try_get("", "lane").map_err(db_error)?, row.try_get("", "published_pos").map_err(db_error)?))
        })
        .collect::<Result<_, DomainError>>()?;
    lanes.sort_unstable();
    Ok(lanes)
}

/// Records that `lane` is acknowledged through `pos`, if `relay` still holds
/// it; `false` when it lost the lease (another relay now owns the lane).
pub async fn advance(conn: &impl ConnectionTrait, relay: &str, lane: i16, pos: i64) -> Result<bool, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE outbox_lanes SET published_pos = ")
        .bind(pos)
        .push(" WHERE lane = ")
        .bind(lane)
        .push(" AND owner = ")
        .bind(relay)
        .push(" AND published_pos < ")
        .bind(pos);
    let result = conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(result.rows_affected() > 0)
}

/// Takes `row` out of the flow: refused by the broker for `reason` when
/// `waits_for` is `None`, else held behind the refused row `waits_for`.
pub async fn park(
    conn: &impl ConnectionTrait,
    row: &Stamped,
    reason: &str,
    waits_for: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), DomainError> {
    let model = outbox_parked::ActiveModel {
        seq: Set(row.seq),
        pos: Set(row.pos),
        lane: Set(row.lane),
        tenant_id: Set(row.tenant.clone()),
        aggregate_id: Set(row.aggregate_id),
        event_type: Set(row.event_type.clone()),
        reason: Set(reason.to_owned()),
        waits_for: Set(waits_for),
        retry_requested: Set(false),
        parked_at: Set(now),
    };
    outbox_parked::Entity::insert(model)
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(outbox_parked::Column::Seq)
                .update_columns([
                    outbox_parked::Column::Reason,
                    outbox_parked::Column::WaitsFor,
                    outbox_parked::Column::RetryRequested,
                ])
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Parked rows, oldest position first: all of them, or those of `lanes`.
pub async fn parked(
    conn: &impl ConnectionTrait,
    lanes: Option<&[i16]>,
) -> Result<Vec<outbox_parked::Model>, DomainError> {
    let mut query = outbox_parked::Entity::find().order_by_asc(outbox_parked::Column::Pos);
    if let Some(lanes) = lanes {
        query = query.filter(outbox_parked::Column::Lane.is_in(lanes.iter().copied()));
    }
    query.all(conn).await.map_err(db_error)
}

/// The customers (tenant, id) with parked rows among `parked`.
pub fn blocked(parked: &[outbox_parked::Model]) -> HashSet<(String, Uuid)> {
    parked.iter().map(|row| (row.tenant_id.clone(), row.aggregate_id)).collect()
}

/// Releases parked rows: they leave the parked set (after the relay
/// published them, or when an operator skips one).
pub async fn unpark(conn: &impl ConnectionTrait, seqs: &[i64]) -> Result<u64, DomainError> {
    if seqs.is_empty() {
        return Ok(0);
    }
    let result = outbox_parked::Entity::delete_many()
        .filter(outbox_parked::Column::Seq.is_in(seqs.iter().copied()))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(result.rows_affected)
}

/// Asks the relay to publish the refused row `seq` again, with the rows held
/// behind it; `false` if no such row is parked.
pub async fn request_retry(conn: &impl ConnectionTrait, seq: i64) -> Result<bool, DomainError> {
    let result = outbox_parked::Entity::update_many()
        .col_expr(outbox_parked::Column::RetryRequested, sea_orm::sea_query::Expr::value(true))
        .filter(
            sea_orm::Condition::any()
                .add(outbox_parked::Column::Seq.eq(seq))
                .add(outbox_parked::Column::WaitsFor.eq(seq)),
        )
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(result.rows_affected > 0)
}

/// Drops the refused row `seq` from the flow for good (it stays in the
/// outbox until pruned, never published) and lets the rows held behind it
/// go; `false` if `seq` is not a refused row.
pub async fn skip(conn: &impl ConnectionTrait, seq: i64) -> Result<bool, DomainError> {
    let refused = outbox_parked::Entity::find_by_id(seq).one(conn).await.map_err(db_error)?;
    if refused.is_none_or(|row| row.waits_for.is_some()) {
        return Ok(false);
    }
    unpark(conn, &[seq]).await?;
    outbox_parked::Entity::update_many()
        .col_expr(outbox_parked::Column::RetryRequested, sea_orm::sea_query::Expr::value(true))
        .filter(outbox_parked::Column::WaitsFor.eq(seq))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(true)
}

/// Deletes stamped rows older than `cutoff`; with `published_only`, only
/// those the broker acknowledged (parked rows stay). Records the highest
/// position deleted, so a change stream asked to resume below it can say
/// the events are gone. Returns how many rows went.
pub async fn prune(db: &DatabaseConnection, cutoff: DateTime<Utc>, published_only: bool) -> Result<u64, DomainError> {
    let backend = db.get_database_backend();
    let condition = |sql: &mut Sql| {
        sql.push(" WHERE pos IS NOT NULL AND created_at < ").bind(cutoff);
        if published_only {
            sql.push(
                " AND pos <= (SELECT l.published_pos FROM outbox_lanes l WHERE l.lane = outbox.lane) \
                 AND seq NOT IN (SELECT seq FROM outbox_parked)",
            );
        }
    };
    let tx = db.begin().await.map_err(db_error)?;
    let mut sql = Sql::new(backend);
    sql.push("SELECT MAX(pos) AS top FROM outbox");
    condition(&mut sql);
    let top: Option<i64> = tx
        .query_one_raw(sql.statement())
        .await
        .map_err(db_error)?
        .map(|row| row.try_get("", "top"))
        .transpose()
        .map_err(db_error)?
        .flatten();
    let Some(top) = top else {
        return Ok(0);
    };
    let mut sql = Sql::new(backend);
    sql.push("UPDATE outbox_state SET pruned_through = ")
        .bind(top)
        .push(" WHERE id = 1 AND pruned_through < ")
        .bind(top);
    tx.execute_raw(sql.statement()).await.map_err(db_error)?;
    let mut sql = Sql::new(backend);
    sql.push("DELETE FROM outbox");
    condition(&mut sql);
    sql.push(" AND pos <= ").bind(top);
    let deleted = tx.execute_raw(sql.statement()).await.map_err(db_error)?.rows_affected();
    tx.commit().await.map_err(db_error)?;
    Ok(deleted)
}

/// When the oldest committed row not yet acknowledged by the broker was
/// written (parked rows excepted: they are counted apart); `None` when
/// everything is acknowledged.
pub async fn oldest_unpublished(conn: &impl ConnectionTrait) -> Result<Option<DateTime<Utc>>, DomainError> {
    let backend = conn.get_database_backend();
    let unstamped = Entity::find()
        .filter(Column::Pos.is_null())
        .order_by_asc(Column::Seq)
        .one(conn)
        .await
        .map_err(db_error)?
        .map(|row| row.created_at);
    let sql = Statement::from_string(
        backend,
        "SELECT o.created_at AS created_at FROM outbox o JOIN outbox_lanes l ON l.lane = o.lane \
         WHERE o.pos > (SELECT MIN(published_pos) FROM outbox_lanes) AND o.pos > l.published_pos \
         AND o.seq NOT IN (SELECT seq FROM outbox_parked) ORDER BY o.pos LIMIT 1",
    );
    let stamped: Option<DateTime<Utc>> = conn
        .query_one_raw(sql)
        .await
        .map_err(db_error)?
        .map(|row| row.try_get("", "created_at"))
        .transpose()
        .map_err(db_error)?;
    Ok(match (unstamped, stamped) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}
