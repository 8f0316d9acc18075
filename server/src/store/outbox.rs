//! Writes to `outbox`: each domain event in the transaction of its change.

use c360_entity::outbox::{ActiveModel, Column, Entity};
use sea_orm::{ActiveValue::NotSet, ActiveValue::Set, ConnectionTrait, EntityTrait, Iterable, QueryOrder};
use serde_json::Value;

use super::{db_error, rows_per_statement};
use crate::domain::{DomainError, events::DomainEvent};

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
        event_id: Set(event.event_id),
        tenant_id: Set(event.tenant.as_str().to_owned()),
        aggregate_type: Set(event.aggregate_type().to_owned()),
        aggregate_id: Set(event.aggregate_id.as_uuid()),
        event_type: Set(event.event_type().to_owned()),
        subject: Set(event.subject().to_owned()),
        payload: Set(event.envelope()),
        created_at: Set(event.timestamp),
        published_at: Set(None),
    }
}

/// Every envelope of the outbox, in the order written.
pub async fn envelopes(conn: &impl ConnectionTrait) -> Result<Vec<Value>, DomainError> {
    let rows = Entity::find().order_by_asc(Column::Seq).all(conn).await.map_err(db_error)?;
    Ok(rows.into_iter().map(|row| row.payload).collect())
}
