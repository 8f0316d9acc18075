//! Queries on `events`: customer interactions.

use c360_entity::event::{ActiveModel, Column, Entity};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, Iterable};
use serde_json::Value;

use super::{db_error, rows_per_statement};
use crate::domain::{DomainError, interaction::Interaction};

/// Inserts interactions known to be new (bulk loads), in as few statements
/// as the bind-parameter limit allows. An event id already stored fails the
/// whole call; the caller's transaction must then be rolled back.
pub async fn insert_many(conn: &impl ConnectionTrait, events: &[Interaction]) -> Result<(), DomainError> {
    for chunk in events.chunks(rows_per_statement(Column::iter().count())) {
        Entity::insert_many(chunk.iter().map(to_active)).exec_without_returning(conn).await.map_err(db_error)?;
    }
    Ok(())
}

fn to_active(event: &Interaction) -> ActiveModel {
    ActiveModel {
        tenant_id: Set(event.tenant.as_str().to_owned()),
        event_id: Set(event.event_id.clone()),
        profile_id: Set(event.profile_id.as_uuid()),
        event_type: Set(event.kind.as_str().to_owned()),
        channel: Set(event.channel.clone()),
        source: Set(event.source.clone()),
        occurred_at: Set(event.occurred_at),
        received_at: Set(event.received_at),
        amount_minor: Set(event.amount.as_ref().map(|m| m.minor_units)),
        currency: Set(event.amount.as_ref().map(|m| m.currency.clone())),
        properties: Set(Value::Object(event.properties.clone())),
    }
}
