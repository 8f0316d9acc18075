//! Writes to `outbox`: each domain event in the transaction of its change.

use c360_entity::outbox::{ActiveModel, Entity};
use sea_orm::{ActiveValue::NotSet, ActiveValue::Set, ConnectionTrait, EntityTrait};

use super::db_error;
use crate::domain::{DomainError, events::DomainEvent};

/// Appends `event`; commits or rolls back with the caller's transaction.
pub async fn append(conn: &impl ConnectionTrait, event: &DomainEvent) -> Result<(), DomainError> {
    let row = ActiveModel {
        seq: NotSet,
        event_id: Set(event.event_id),
        tenant_id: Set(event.tenant.as_str().to_owned()),
        aggregate_type: Set(event.aggregate_type.to_owned()),
        aggregate_id: Set(event.aggregate_id.as_uuid()),
        event_type: Set(event.event_type.to_owned()),
        subject: Set(event.subject.to_owned()),
        payload: Set(event.envelope()),
        created_at: Set(event.timestamp),
        published_at: Set(None),
    };
    Entity::insert(row).exec_without_returning(conn).await.map_err(db_error)?;
    Ok(())
}
