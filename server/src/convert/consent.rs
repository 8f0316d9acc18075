//! Conversions of the consent messages.

use c360_proto::v1::{self as pb, consent_subject::Subject, contact_point::Point};

use super::{choice, from_timestamp, timestamp};
use crate::{
    domain::{
        DomainError,
        consent::{
            ConsentDecision, ConsentInput, ConsentPurpose, ConsentReason, ConsentStatus, ContactKind, ContactPoint,
            LegalBasis,
        },
        error::Violations,
        profile::Choice,
        view::{DecisionView, Disclosure},
    },
    service::{ConsentCheck, ConsentState, SubjectInput},
};

/// A `ConsentPurpose` number as sent by a caller.
pub fn consent_purpose(raw: i32) -> Choice<ConsentPurpose> {
    choice(raw, |n| match pb::ConsentPurpose::try_from(n) {
        Ok(pb::ConsentPurpose::EmailMarketing) => Some(ConsentPurpose::EmailMarketing),
        Ok(pb::ConsentPurpose::SmsMarketing) => Some(ConsentPurpose::SmsMarketing),
        Ok(pb::ConsentPurpose::PhoneMarketing) => Some(ConsentPurpose::PhoneMarketing),
        Ok(pb::ConsentPurpose::Push) => Some(ConsentPurpose::Push),
        Ok(pb::ConsentPurpose::Profiling) => Some(ConsentPurpose::Profiling),
        Ok(pb::ConsentPurpose::DataSharing) => Some(ConsentPurpose::DataSharing),
        _ => None,
    })
}

fn consent_status(raw: i32) -> Choice<ConsentStatus> {
    choice(raw, |n| match pb::ConsentStatus::try_from(n) {
        Ok(pb::ConsentStatus::Granted) => Some(ConsentStatus::Granted),
        Ok(pb::ConsentStatus::Denied) => Some(ConsentStatus::Denied),
        Ok(pb::ConsentStatus::Revoked) => Some(ConsentStatus::Revoked),
        Ok(pb::ConsentStatus::Pending) => Some(ConsentStatus::Pending),
        _ => None,
    })
}

fn legal_basis(raw: i32) -> Choice<LegalBasis> {
    choice(raw, |n| match pb::LegalBasis::try_from(n) {
        Ok(pb::LegalBasis::Consent) => Some(LegalBasis::Consent),
        Ok(pb::LegalBasis::Contract) => Some(LegalBasis::Contract),
        Ok(pb::LegalBasis::LegalObligation) => Some(LegalBasis::LegalObligation),
        Ok(pb::LegalBasis::VitalInterests) => Some(LegalBasis::VitalInterests),
        Ok(pb::LegalBasis::PublicTask) => Some(LegalBasis::PublicTask),
        Ok(pb::LegalBasis::LegitimateInterests) => Some(LegalBasis::LegitimateInterests),
        _ => None,
    })
}

/// A SetConsent request as domain input; a timestamp out of range is
/// INVALID_ARGUMENT naming it.
pub fn consent_input(request: pb::SetConsentRequest) -> Result<ConsentInput, DomainError> {
    let mut v = Violations::default();
    let mut time = |field: &str, t: Option<prost_types::Timestamp>| match t {
        None => None,
        Some(t) => v.check(field, from_timestamp(Some(t)).map_err(|_| "not a valid timestamp".to_owned())),
    };
    let captured_at = time("capture_time", request.capture_time);
    let expires_at = time("expire_time", request.expire_time);
    let contact_point = match request.contact_point.and_then(|c| c.point) {
        Some(Point::Email(raw)) => Some((ContactKind::Email, raw)),
        Some(Point::Phone(raw)) => Some((ContactKind::Phone, raw)),
        None => None,
    };
    v.into_result(ConsentInput {
        profile_id: request.profile_id,
        purpose: consent_purpose(request.purpose),
        status: consent_status(request.status),
        legal_basis: legal_basis(request.legal_basis),
        source: request.source,
        channel: request.channel,
        captured_at,
        expires_at,
        evidence: request.evidence,
        contact_point,
        request_id: request.request_id,
    })
}

/// Who a check is about, as sent.
pub fn subject_input(subject: Option<&pb::ConsentSubject>) -> SubjectInput {
    match subject.and_then(|s| s.subject.as_ref()) {
        Some(Subject::ProfileId(raw)) => SubjectInput::ProfileId(raw.clone()),
        Some(Subject::Email(raw)) => SubjectInput::Email(raw.clone()),
        Some(Subject::Phone(raw)) => SubjectInput::Phone(raw.clone()),
        None => SubjectInput::Missing,
    }
}

impl From<&ContactPoint> for pb::ContactPoint {
    fn from(point: &ContactPoint) -> Self {
        let point = match point.kind {
            ContactKind::Email => Point::Email(point.value.clone()),
            ContactKind::Phone => Point::Phone(point.value.clone()),
        };
        Self { point: Some(point) }
    }
}

impl From<ConsentPurpose> for pb::ConsentPurpose {
    fn from(purpose: ConsentPurpose) -> Self {
        match purpose {
            ConsentPurpose::EmailMarketing => Self::EmailMarketing,
            ConsentPurpose::SmsMarketing => Self::SmsMarketing,
            ConsentPurpose::PhoneMarketing => Self::PhoneMarketing,
            ConsentPurpose::Push => Self::Push,
            ConsentPurpose::Profiling => Self::Profiling,
            ConsentPurpose::DataSharing => Self::DataSharing,
        }
    }
}

impl From<ConsentStatus> for pb::ConsentStatus {
    fn from(status: ConsentStatus) -> Self {
        match status {
            ConsentStatus::Granted => Self::Granted,
            ConsentStatus::Denied => Self::Denied,
            ConsentStatus::Revoked => Self::Revoked,
            ConsentStatus::Pending => Self::Pending,
        }
    }
}

impl From<LegalBasis> for pb::LegalBasis {
    fn from(basis: LegalBasis) -> Self {
        match basis {
            LegalBasis::Consent => Self::Consent,
            LegalBasis::Contract => Self::Contract,
            LegalBasis::LegalObligation => Self::LegalObligation,
            LegalBasis::VitalInterests => Self::VitalInterests,
            LegalBasis::PublicTask => Self::PublicTask,
            LegalBasis::LegitimateInterests => Self::LegitimateInterests,
        }
    }
}

impl From<ConsentReason> for pb::ConsentReason {
    fn from(reason: ConsentReason) -> Self {
        match reason {
            ConsentReason::Granted => Self::Granted,
            ConsentReason::Expired => Self::Expired,
            ConsentReason::Denied => Self::Denied,
            ConsentReason::Revoked => Self::Revoked,
            ConsentReason::Pending => Self::Pending,
            ConsentReason::NoDecision => Self::NoDecision,
            ConsentReason::UnknownContact => Self::UnknownContact,
            ConsentReason::ProfileNotFound => Self::ProfileNotFound,
            ConsentReason::ProfileNotLive => Self::ProfileNotLive,
        }
    }
}

/// A decision as the caller may see it, with what its view masked or withheld.
pub fn consent_decision(d: &ConsentDecision, disclosure: &Disclosure) -> pb::ConsentDecision {
    pb::ConsentDecision {
        id: d.id.to_string(),
        profile_id: d.profile_id.to_string(),
        purpose: pb::ConsentPurpose::from(d.purpose) as i32,
        status: pb::ConsentStatus::from(d.status) as i32,
        legal_basis: pb::LegalBasis::from(d.legal_basis) as i32,
        source: d.source.clone(),
        channel: d.channel.clone().unwrap_or_default(),
        capture_time: Some(timestamp(d.captured_at)),
        expire_time: d.expires_at.map(timestamp),
        evidence: d.evidence.clone().unwrap_or_default(),
        contact_point: d.contact_point.as_ref().map(pb::ContactPoint::from),
        request_id: d.request_id.clone().unwrap_or_default(),
        recorded_by: d.recorded_by.clone(),
        record_time: Some(timestamp(d.recorded_at)),
        masked_fields: disclosure.masked.clone(),
        hidden_fields: disclosure.hidden.clone(),
        recorded_for: String::new(),
    }
}

impl From<&DecisionView> for pb::ConsentDecision {
    fn from(view: &DecisionView) -> Self {
        pb::ConsentDecision {
            recorded_for: view.recorded_for.map(|id| id.to_string()).unwrap_or_default(),
            ..consent_decision(&view.decision, &view.disclosure)
        }
    }
}

impl From<&ConsentState> for pb::ConsentState {
    fn from(state: &ConsentState) -> Self {
        let d = &state.decision;
        Self {
            purpose: pb::ConsentPurpose::from(d.purpose) as i32,
            contact_point: d.contact_point.as_ref().map(pb::ContactPoint::from),
            status: pb::ConsentStatus::from(d.status) as i32,
            allowed: state.allowed,
            reason: pb::ConsentReason::from(state.reason) as i32,
            decision: Some(consent_decision(d, &state.disclosure)),
        }
    }
}

/// One check's answer, echoing the subject as asked.
pub fn consent_check(check: &ConsentCheck, subject: Option<pb::ConsentSubject>) -> pb::ConsentCheck {
    pb::ConsentCheck {
        subject,
        profile_id: check.profile_id.map(|id| id.to_string()).unwrap_or_default(),
        allowed: check.allowed,
        reason: pb::ConsentReason::from(check.reason) as i32,
        explanation: check.reason.describe().to_owned(),
        decision: check.decision.as_ref().map(|d| consent_decision(d, &check.disclosure)),
    }
}
