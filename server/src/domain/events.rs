//! Domain events: what changed, in the envelope other systems consume.
//!
//! Names, subjects and the envelope follow the integration contract in SPEC.md:
//! `{eventType, eventId, timestamp, aggregateId, tenantId, payload}`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    ProfileId, TenantId,
    profile::{Profile, ProfileField},
};

/// Subject (topic) of `CustomerProfileCreatedEvent`.
pub const PROFILE_CREATED_SUBJECT: &str = "crm.customer360.profile.created";
/// Subject (topic) of `CustomerProfileUpdatedEvent`.
pub const PROFILE_UPDATED_SUBJECT: &str = "crm.customer360.profile.updated";

/// One domain event, ready for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainEvent {
    /// Stable id (UUID v7): the consumers' and the broker's dedupe key.
    pub event_id: Uuid,
    /// e.g. `CustomerProfileCreatedEvent`.
    pub event_type: &'static str,
    /// Broker subject / topic.
    pub subject: &'static str,
    /// Aggregate kind, e.g. "profile".
    pub aggregate_type: &'static str,
    /// The aggregate: the ordering key.
    pub aggregate_id: ProfileId,
    /// Owning tenant.
    pub tenant: TenantId,
    /// When the change happened.
    pub timestamp: DateTime<Utc>,
    /// Event-specific body.
    pub payload: Value,
}

impl DomainEvent {
    /// The envelope, exactly as published.
    pub fn envelope(&self) -> Value {
        json!({
            "eventType": self.event_type,
            "eventId": self.event_id.to_string(),
            "timestamp": self.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
            "aggregateId": self.aggregate_id.to_string(),
            "tenantId": self.tenant.as_str(),
            "payload": self.payload,
        })
    }
}

/// `CustomerProfileCreatedEvent` for a new profile, created by `actor`.
pub fn profile_created(profile: &Profile, actor: &str) -> DomainEvent {
    let data = &profile.data;
    let name = match (&data.company_name, &data.given_name, &data.family_name) {
        (Some(company), _, _) if data.kind == super::profile::ProfileKind::Organization => company.clone(),
        (_, given, family) => [given.as_deref(), family.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" "),
    };
    DomainEvent {
        event_id: Uuid::now_v7(),
        event_type: "CustomerProfileCreatedEvent",
        subject: PROFILE_CREATED_SUBJECT,
        aggregate_type: "profile",
        aggregate_id: profile.id,
        tenant: profile.tenant.clone(),
        timestamp: profile.created_at,
        payload: json!({
            "customerId": profile.id.to_string(),
            "kind": data.kind.as_str(),
            "name": name,
            "status": data.status.as_str(),
            "primaryContactId": data.primary_contact_id.map(|id| id.to_string()),
            "segment": data.segment,
            "createdBy": actor,
        }),
    }
}

/// `CustomerProfileUpdatedEvent` naming the fields that changed, by `actor`.
pub fn profile_updated(profile: &Profile, changed: &[ProfileField], actor: &str) -> DomainEvent {
    DomainEvent {
        event_id: Uuid::now_v7(),
        event_type: "CustomerProfileUpdatedEvent",
        subject: PROFILE_UPDATED_SUBJECT,
        aggregate_type: "profile",
        aggregate_id: profile.id,
        tenant: profile.tenant.clone(),
        timestamp: profile.updated_at,
        payload: json!({
            "customerId": profile.id.to_string(),
            "changedFields": changed.iter().map(|f| f.event_name()).collect::<Vec<_>>(),
            "status": profile.data.status.as_str(),
            "version": profile.version,
            "updatedBy": actor,
        }),
    }
}
