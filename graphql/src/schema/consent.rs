//! Consent as GraphQL shows it: states in force and recorded decisions.

use async_graphql::{ID, Object, SimpleObject};
use c360_proto::v1 as pb;
use chrono::{DateTime, Utc};

use super::types::{ConsentPurpose, ConsentReason, ConsentStatus, LegalBasis, time};

/// One email address or phone number a decision covers.
#[derive(SimpleObject)]
pub struct ContactPoint {
    /// The email address, if the point is one.
    pub email: Option<String>,
    /// The phone number (E.164), if the point is one.
    pub phone: Option<String>,
}

impl ContactPoint {
    fn of(point: Option<&pb::ContactPoint>) -> Option<Self> {
        use pb::contact_point::Point;
        match point?.point.as_ref()? {
            Point::Email(email) => Some(Self { email: Some(email.clone()), phone: None }),
            Point::Phone(phone) => Some(Self { email: None, phone: Some(phone.clone()) }),
        }
    }
}

/// The consent in force for one purpose (and contact point) of a customer.
pub struct ConsentState(pub pb::ConsentState);

/// The consent in force for one purpose (and contact point) of a customer.
#[Object]
impl ConsentState {
    /// The purpose.
    async fn purpose(&self) -> Option<ConsentPurpose> {
        ConsentPurpose::from_proto(self.0.purpose)
    }

    /// The address it covers; null: the whole purpose.
    async fn contact_point(&self) -> Option<ContactPoint> {
        ContactPoint::of(self.0.contact_point.as_ref())
    }

    /// The status of the decision in force (an expired grant stays GRANTED; `allowed` says it expired).
    async fn status(&self) -> Option<ConsentStatus> {
        ConsentStatus::from_proto(self.0.status)
    }

    /// Whether the purpose is allowed now.
    async fn allowed(&self) -> bool {
        self.0.allowed
    }

    /// Why.
    async fn reason(&self) -> Option<ConsentReason> {
        ConsentReason::from_proto(self.0.reason)
    }

    /// The decision in force.
    async fn decision(&self) -> Option<ConsentDecision> {
        self.0.decision.clone().map(ConsentDecision)
    }
}

/// One recorded consent decision (history is append-only).
pub struct ConsentDecision(pub pb::ConsentDecision);

/// One recorded consent decision (history is append-only).
#[Object]
impl ConsentDecision {
    /// The decision's id.
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    /// The customer's profile id.
    async fn profile_id(&self) -> ID {
        ID(self.0.profile_id.clone())
    }

    /// The purpose.
    async fn purpose(&self) -> Option<ConsentPurpose> {
        ConsentPurpose::from_proto(self.0.purpose)
    }

    /// The person's answer.
    async fn status(&self) -> Option<ConsentStatus> {
        ConsentStatus::from_proto(self.0.status)
    }

    /// The legal ground.
    async fn legal_basis(&self) -> Option<LegalBasis> {
        LegalBasis::from_proto(self.0.legal_basis)
    }

    /// The system that captured it.
    async fn source(&self) -> &str {
        &self.0.source
    }

    /// Where it was captured (WEB, EMAIL, STORE, …); may be empty.
    async fn channel(&self) -> &str {
        &self.0.channel
    }

    /// When the person decided.
    async fn capture_time(&self) -> Option<DateTime<Utc>> {
        time(self.0.capture_time.as_ref())
    }

    /// When a grant lapses; null: never.
    async fn expire_time(&self) -> Option<DateTime<Utc>> {
        time(self.0.expire_time.as_ref())
    }

    /// Proof of the decision.
    async fn evidence(&self) -> &str {
        &self.0.evidence
    }

    /// The address it covers; null: the whole purpose.
    async fn contact_point(&self) -> Option<ContactPoint> {
        ContactPoint::of(self.0.contact_point.as_ref())
    }

    /// Who recorded it (the caller's subject).
    async fn recorded_by(&self) -> &str {
        &self.0.recorded_by
    }

    /// When c360 recorded it.
    async fn record_time(&self) -> Option<DateTime<Utc>> {
        time(self.0.record_time.as_ref())
    }

    /// In a history: the profile it was recorded for, when that one was since merged into this customer.
    async fn recorded_for(&self) -> Option<ID> {
        (!self.0.recorded_for.is_empty()).then(|| ID(self.0.recorded_for.clone()))
    }

    /// Fields shown in masked form for the caller's role.
    async fn masked_fields(&self) -> &[String] {
        &self.0.masked_fields
    }

    /// Fields withheld from the caller's role.
    async fn hidden_fields(&self) -> &[String] {
        &self.0.hidden_fields
    }
}
