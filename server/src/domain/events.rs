//! Domain events: what changed, in the envelope other systems consume.
//!
//! One type per event, so a payload cannot lose a field to a typo in a `json!`
//! literal. Names, subjects and the envelope follow seed 004 (SPEC.md):
//! `{eventType, eventId, timestamp, aggregateId, tenantId, payload}`. Each
//! payload carries the fields of the seed's Avro schema for that event
//! (`CustomerProfileCreatedEvent`: customerId, name, status, segment — a
//! string, empty when the profile has none) and may add more; consumers that
//! read by schema ignore the extras.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    ProfileId, TenantId,
    consent::{ConsentDecision, ConsentStatus},
    profile::{Profile, ProfileField, ProfileKind},
};

/// Subject (topic) of `CustomerProfileCreatedEvent`.
pub const PROFILE_CREATED_SUBJECT: &str = "crm.customer360.profile.created";
/// Subject (topic) of `CustomerProfileUpdatedEvent`.
pub const PROFILE_UPDATED_SUBJECT: &str = "crm.customer360.profile.updated";
/// Subject (topic) of `ConsentUpdatedEvent`.
pub const CONSENT_UPDATED_SUBJECT: &str = "crm.customer360.consent.updated";
/// Subject (topic) of `CustomerMergedEvent`.
pub const PROFILE_MERGED_SUBJECT: &str = "crm.customer360.profile.merged";
/// Subject (topic) of `CustomerUnmergedEvent`.
pub const PROFILE_UNMERGED_SUBJECT: &str = "crm.customer360.profile.unmerged";
/// Subject (topic) of `CustomerErasedEvent`.
pub const PROFILE_ERASED_SUBJECT: &str = "crm.customer360.profile.erased";

/// Every topic c360 publishes to, with its partition count (seed 004; the
/// unmerged and erased topics follow the merged one). A customer's events go
/// to one partition of each topic, by the customer id as message key.
pub const TOPICS: [(&str, i32); 6] = [
    (PROFILE_CREATED_SUBJECT, 6),
    (PROFILE_UPDATED_SUBJECT, 6),
    (PROFILE_MERGED_SUBJECT, 6),
    (CONSENT_UPDATED_SUBJECT, 3),
    (PROFILE_UNMERGED_SUBJECT, 6),
    (PROFILE_ERASED_SUBJECT, 6),
];

/// `CustomerProfileCreatedEvent`: a new profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerProfileCreated {
    /// The new profile.
    pub customer_id: String,
    /// PERSON or ORGANIZATION.
    pub kind: &'static str,
    /// Company name of an organization, "given family" of a person.
    pub name: String,
    /// Lifecycle status.
    pub status: &'static str,
    /// For an organization: its primary contact person.
    pub primary_contact_id: Option<String>,
    /// Business segment; empty when none (the seed's schema has a string).
    pub segment: String,
    /// Subject of the caller (or the system principal) that created it.
    pub created_by: String,
}

/// `CustomerProfileUpdatedEvent`: fields of a profile changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerProfileUpdated {
    /// The profile.
    pub customer_id: String,
    /// Fields whose value changed, in lowerCamelCase.
    pub changed_fields: Vec<&'static str>,
    /// Lifecycle status after the change.
    pub status: &'static str,
    /// Version (etag) after the change.
    pub version: i64,
    /// Subject of the caller that changed it.
    pub updated_by: String,
}

/// `CustomerMergedEvent`: a source profile was merged into a target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerMerged {
    /// The profile that survived.
    pub target_customer_id: String,
    /// The profile merged into it (its id now resolves to the target).
    pub source_customer_id: String,
    /// DUPLICATE, MANUAL or AUTO_MATCH.
    pub merge_reason: &'static str,
}

/// `CustomerUnmergedEvent`: a merge was undone; the source is live again.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerUnmerged {
    /// The profile the source had been merged into.
    pub target_customer_id: String,
    /// The profile split off again (its id resolves to itself once more).
    pub source_customer_id: String,
    /// Why, as the caller said (MANUAL when it said nothing).
    pub unmerge_reason: String,
}

/// A contact point as events name it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactPointRef {
    /// EMAIL or PHONE.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The normalized address or E.164 number.
    pub value: String,
}

/// `ConsentUpdatedEvent`: the current consent state of a purpose (and
/// contact point) of one profile changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentUpdated {
    /// The profile.
    pub customer_id: String,
    /// The purpose, e.g. EMAIL_MARKETING (the seed's `consentType`).
    pub consent_type: &'static str,
    /// The status now in force.
    pub status: &'static str,
    /// The status in force before, if any decision was on record.
    pub previous_status: Option<&'static str>,
    /// Legal basis of the decision now in force.
    pub legal_basis: &'static str,
    /// The contact point the decision covers; absent: the whole purpose.
    pub contact_point: Option<ContactPointRef>,
    /// When the decision was captured, in epoch milliseconds (Avro's timestamp-millis).
    pub captured_at: i64,
    /// When a grant lapses, in epoch milliseconds, if it does.
    pub expires_at: Option<i64>,
    /// Source system of the decision.
    pub source: String,
    /// Channel it was captured on, if known.
    pub channel: Option<String>,
    /// The history record now in force.
    pub decision_id: String,
    /// Subject of the caller that recorded it.
    pub updated_by: String,
}

/// The payload of one domain event: one variant per event type.
#[derive(Debug, Clone, PartialEq)]
pub enum EventPayload {
    /// `CustomerProfileCreatedEvent`.
    ProfileCreated(CustomerProfileCreated),
    /// `CustomerProfileUpdatedEvent`.
    ProfileUpdated(CustomerProfileUpdated),
    /// `ConsentUpdatedEvent`.
    ConsentUpdated(ConsentUpdated),
    /// `CustomerMergedEvent`.
    ProfileMerged(CustomerMerged),
    /// `CustomerUnmergedEvent`.
    ProfileUnmerged(CustomerUnmerged),
}

impl EventPayload {
    /// The envelope's `eventType`.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::ProfileCreated(_) => "CustomerProfileCreatedEvent",
            Self::ProfileUpdated(_) => "CustomerProfileUpdatedEvent",
            Self::ConsentUpdated(_) => "ConsentUpdatedEvent",
            Self::ProfileMerged(_) => "CustomerMergedEvent",
            Self::ProfileUnmerged(_) => "CustomerUnmergedEvent",
        }
    }

    /// The broker subject (topic).
    pub fn subject(&self) -> &'static str {
        match self {
            Self::ProfileCreated(_) => PROFILE_CREATED_SUBJECT,
            Self::ProfileUpdated(_) => PROFILE_UPDATED_SUBJECT,
            Self::ConsentUpdated(_) => CONSENT_UPDATED_SUBJECT,
            Self::ProfileMerged(_) => PROFILE_MERGED_SUBJECT,
            Self::ProfileUnmerged(_) => PROFILE_UNMERGED_SUBJECT,
        }
    }

    fn to_json(&self) -> Value {
        let encoded = match self {
            Self::ProfileCreated(body) => serde_json::to_value(body),
            Self::ProfileUpdated(body) => serde_json::to_value(body),
            Self::ConsentUpdated(body) => serde_json::to_value(body),
            Self::ProfileMerged(body) => serde_json::to_value(body),
            Self::ProfileUnmerged(body) => serde_json::to_value(body),
        };
        // Plain structs of strings and numbers always encode.
        encoded.unwrap_or(Value::Null)
    }
}

/// One domain event, ready for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainEvent {
    /// Stable id (UUID v7): the consumers' and the broker's dedupe key.
    pub event_id: Uuid,
    /// The customer it is about: the aggregate, and the broker's ordering key.
    pub aggregate_id: ProfileId,
    /// Owning tenant.
    pub tenant: TenantId,
    /// When the change happened.
    pub timestamp: DateTime<Utc>,
    /// Event-specific body.
    pub payload: EventPayload,
}

impl DomainEvent {
    /// A new event about `customer` of `tenant`, at `timestamp`.
    pub fn new(tenant: TenantId, customer: ProfileId, timestamp: DateTime<Utc>, payload: EventPayload) -> Self {
        Self { event_id: Uuid::now_v7(), aggregate_id: customer, tenant, timestamp, payload }
    }

    /// The envelope's `eventType`.
    pub fn event_type(&self) -> &'static str {
        self.payload.event_type()
    }

    /// The broker subject (topic).
    pub fn subject(&self) -> &'static str {
        self.payload.subject()
    }

    /// Aggregate kind: every event today is about one customer profile.
    pub fn aggregate_type(&self) -> &'static str {
        "profile"
    }

    /// The envelope, exactly as published.
    pub fn envelope(&self) -> Value {
        json!({
            "eventType": self.event_type(),
            "eventId": self.event_id.to_string(),
            "timestamp": self.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
            "aggregateId": self.aggregate_id.to_string(),
            "tenantId": self.tenant.as_str(),
            "payload": self.payload.to_json(),
        })
    }
}

/// `CustomerProfileCreatedEvent` for a new profile, created by `actor`.
pub fn profile_created(profile: &Profile, actor: &str) -> DomainEvent {
    let data = &profile.data;
    let name = match (&data.company_name, &data.given_name, &data.family_name) {
        (Some(company), _, _) if data.kind == ProfileKind::Organization => company.clone(),
        (_, given, family) => [given.as_deref(), family.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" "),
    };
    let body = CustomerProfileCreated {
        customer_id: profile.id.to_string(),
        kind: data.kind.as_str(),
        name,
        status: data.status.as_str(),
        primary_contact_id: data.primary_contact_id.map(|id| id.to_string()),
        segment: data.segment.clone().unwrap_or_default(),
        created_by: actor.to_owned(),
    };
    DomainEvent::new(profile.tenant.clone(), profile.id, profile.created_at, EventPayload::ProfileCreated(body))
}

/// `CustomerProfileUpdatedEvent` naming the fields that changed, by `actor`.
pub fn profile_updated(profile: &Profile, changed: &[ProfileField], actor: &str) -> DomainEvent {
    let body = CustomerProfileUpdated {
        customer_id: profile.id.to_string(),
        changed_fields: changed.iter().map(|f| f.event_name()).collect(),
        status: profile.data.status.as_str(),
        version: profile.version,
        updated_by: actor.to_owned(),
    };
    DomainEvent::new(profile.tenant.clone(), profile.id, profile.updated_at, EventPayload::ProfileUpdated(body))
}

/// `CustomerMergedEvent`: `source` was merged into `target` of `tenant` at
/// `at`. Keyed by the target, so it is ordered with the target's own events.
pub fn profile_merged(
    tenant: &TenantId,
    target: ProfileId,
    source: ProfileId,
    reason: &'static str,
    at: DateTime<Utc>,
) -> DomainEvent {
    let body = CustomerMerged {
        target_customer_id: target.to_string(),
        source_customer_id: source.to_string(),
        merge_reason: reason,
    };
    DomainEvent::new(tenant.clone(), target, at, EventPayload::ProfileMerged(body))
}

/// `CustomerUnmergedEvent`: `source` was split off `target` again at `at`.
/// Keyed by the target, like the merge it undoes.
pub fn profile_unmerged(
    tenant: &TenantId,
    target: ProfileId,
    source: ProfileId,
    reason: &str,
    at: DateTime<Utc>,
) -> DomainEvent {
    let body = CustomerUnmerged {
        target_customer_id: target.to_string(),
        source_customer_id: source.to_string(),
        unmerge_reason: reason.to_owned(),
    };
    DomainEvent::new(tenant.clone(), target, at, EventPayload::ProfileUnmerged(body))
}

/// `ConsentUpdatedEvent`: `now_in_force` became the current decision of its
/// purpose (and contact point), replacing one of `previous` status, by `actor`.
pub fn consent_updated(
    tenant: &TenantId,
    now_in_force: &ConsentDecision,
    previous: Option<ConsentStatus>,
    actor: &str,
) -> DomainEvent {
    let millis = |t: DateTime<Utc>| t.timestamp_millis();
    let d = now_in_force;
    let body = ConsentUpdated {
        customer_id: d.profile_id.to_string(),
        consent_type: d.purpose.as_str(),
        status: d.status.as_str(),
        previous_status: previous.map(ConsentStatus::as_str),
        legal_basis: d.legal_basis.as_str(),
        contact_point: d
            .contact_point
            .as_ref()
            .map(|point| ContactPointRef { kind: point.kind.as_str(), value: point.value.clone() }),
        captured_at: millis(d.captured_at),
        expires_at: d.expires_at.map(millis),
        source: d.source.clone(),
        channel: d.channel.clone(),
        decision_id: d.id.to_string(),
        updated_by: actor.to_owned(),
    };
    DomainEvent::new(tenant.clone(), d.profile_id, d.recorded_at, EventPayload::ConsentUpdated(body))
}
