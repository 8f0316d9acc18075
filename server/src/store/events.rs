//! Queries on `events`: customer interactions.
//!
//! An interaction stays recorded against the profile it landed on. A
//! profile's interactions are its own and those of every profile merged
//! into it (`merged_into` is one hop: a merge repoints earlier chains), so
//! they follow a merge and come back with an unmerge without a write.

use c360_entity::{
    event::{ActiveModel, Column, Entity, Model},
    profile,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, Iterable, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};
use serde_json::Value;

use super::{db_error, rows_per_statement};
use crate::domain::{
    DomainError, ProfileId, TenantId,
    interaction::{Interaction, InteractionType, Money},
};

/// The newest `limit` interactions of `profile` (a live profile's id, not
/// a merged one) and of the profiles merged into it, newest first.
pub async fn of_profile(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profile: ProfileId,
    limit: u64,
) -> Result<Vec<Interaction>, DomainError> {
    let members = profile::Entity::find()
        .select_only()
        .column(profile::Column::Id)
        .filter(profile::Column::TenantId.eq(tenant.as_str()))
        .filter(
            Condition::any()
                .add(profile::Column::Id.eq(profile.as_uuid()))
                .add(profile::Column::MergedInto.eq(profile.as_uuid())),
        )
        .into_query();
    let rows = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_str()))
        .filter(Column::ProfileId.in_subquery(members))
        .order_by_desc(Column::OccurredAt)
        .order_by_asc(Column::EventId)
        .limit(limit)
        .all(conn)
        .await
        .map_err(db_error)?;
    rows.into_iter().map(|row| from_row(tenant, row)).collect()
}

fn from_row(tenant: &TenantId, row: Model) -> Result<Interaction, DomainError> {
    let kind = InteractionType::parse(&row.event_type)
        .ok_or_else(|| DomainError::Internal(format!("stored event type '{}'", row.event_type)))?;
    let amount = match (row.amount_minor, row.currency) {
        (Some(minor_units), Some(currency)) => Some(Money { minor_units, currency }),
        _ => None,
    };
    let properties = match row.properties {
        Value::Object(map) => map,
        _ => Default::default(),
    };
    Ok(Interaction {
        tenant: tenant.clone(),
        event_id: row.event_id,
        profile_id: ProfileId::from(row.profile_id),
        kind,
        channel: row.channel,
        source: row.source,
        occurred_at: row.occurred_at,
        received_at: row.received_at,
        amount,
        properties,
    })
}

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
