//! Consent: what a person allowed the business to do with their data, per
//! purpose, and the rules that derive the current state from the history.
//!
//! History is append-only: every decision a caller records is kept. The
//! current state of a purpose (and, optionally, one contact point) is the
//! decision in force: the latest by *captured* time, ties going to the more
//! restrictive status. A decision captured earlier than the one in force is
//! kept in history and changes nothing (late-arriving records are common). An
//! expired grant is not a grant; expiry is evaluated when the state is read,
//! so nothing is written when a grant lapses. The rules are the pure
//! functions [`supersedes`], [`same_state`] and [`evaluate`], tested as a
//! table below.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{
    DomainError, ProfileId,
    error::Violations,
    identifiers::{NormalizationPolicy, normalize_source},
    ids::truncate,
    profile::Choice,
};

/// How far in the future a captured time may lie (clock skew between the
/// capturing system and c360); anything later is refused.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// Largest evidence text, in bytes (UTF-8).
pub const MAX_EVIDENCE_BYTES: usize = 4096;
/// Longest channel name.
pub const MAX_CHANNEL_CHARS: usize = 40;
/// Most profiles or addresses in one BatchCheckConsent.
pub const MAX_BATCH_CHECKS: usize = 1000;

/// What the business wants to do with the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConsentPurpose {
    /// Marketing email.
    EmailMarketing,
    /// Marketing text messages.
    SmsMarketing,
    /// Marketing calls.
    PhoneMarketing,
    /// Push notifications.
    Push,
    /// Profiling and personalization.
    Profiling,
    /// Sharing data with third parties.
    DataSharing,
}

impl ConsentPurpose {
    /// Every purpose, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::EmailMarketing,
        Self::SmsMarketing,
        Self::PhoneMarketing,
        Self::Push,
        Self::Profiling,
        Self::DataSharing,
    ];

    /// The stored (and published) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmailMarketing => "EMAIL_MARKETING",
            Self::SmsMarketing => "SMS_MARKETING",
            Self::PhoneMarketing => "PHONE_MARKETING",
            Self::Push => "PUSH",
            Self::Profiling => "PROFILING",
            Self::DataSharing => "DATA_SHARING",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }

    /// The kind of contact point a decision for this purpose may name, when
    /// the purpose is tied to one channel.
    pub fn contact_kind(self) -> Option<ContactKind> {
        match self {
            Self::EmailMarketing => Some(ContactKind::Email),
            Self::SmsMarketing | Self::PhoneMarketing => Some(ContactKind::Phone),
            Self::Push | Self::Profiling | Self::DataSharing => None,
        }
    }
}

/// The person's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentStatus {
    /// Allowed (until its expiry, if any).
    Granted,
    /// Refused.
    Denied,
    /// Withdrawn after a grant.
    Revoked,
    /// Asked, not yet answered (e.g. awaiting a double opt-in).
    Pending,
}

impl ConsentStatus {
    /// Every status, in declaration order.
    pub const ALL: [Self; 4] = [Self::Granted, Self::Denied, Self::Revoked, Self::Pending];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "GRANTED",
            Self::Denied => "DENIED",
            Self::Revoked => "REVOKED",
            Self::Pending => "PENDING",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// How restrictive: of two decisions captured at the same instant, the
    /// higher wins. A withdrawal outranks a refusal, which outranks an open
    /// question, which outranks a grant.
    pub fn restrictiveness(self) -> u8 {
        match self {
            Self::Granted => 0,
            Self::Pending => 1,
            Self::Denied => 2,
            Self::Revoked => 3,
        }
    }
}

/// The legal ground for processing (GDPR art. 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegalBasis {
    /// The person consented.
    Consent,
    /// Needed for a contract with the person.
    Contract,
    /// Required by law.
    LegalObligation,
    /// Protects someone's life.
    VitalInterests,
    /// A task in the public interest.
    PublicTask,
    /// The business's legitimate interests.
    LegitimateInterests,
}

impl LegalBasis {
    /// Every basis, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::Consent,
        Self::Contract,
        Self::LegalObligation,
        Self::VitalInterests,
        Self::PublicTask,
        Self::LegitimateInterests,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consent => "CONSENT",
            Self::Contract => "CONTRACT",
            Self::LegalObligation => "LEGAL_OBLIGATION",
            Self::VitalInterests => "VITAL_INTERESTS",
            Self::PublicTask => "PUBLIC_TASK",
            Self::LegitimateInterests => "LEGITIMATE_INTERESTS",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == raw)
    }
}

/// The kind of a contact point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContactKind {
    /// An email address.
    Email,
    /// A phone number.
    Phone,
}

impl ContactKind {
    /// The stored name (the identity index's type name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "EMAIL",
            Self::Phone => "PHONE",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Email, Self::Phone].into_iter().find(|k| k.as_str() == raw)
    }

    /// The request field a contact point of this kind is sent in.
    pub fn request_field(self) -> &'static str {
        match self {
            Self::Email => "contact_point.email",
            Self::Phone => "contact_point.phone",
        }
    }
}

/// One email address or phone number of a profile, as its identity key
/// (normalized: docs/normalization.md), so a decision and a lookup agree on
/// what "the same address" is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContactPoint {
    /// Email or phone.
    pub kind: ContactKind,
    /// The normalized address or E.164 number.
    pub value: String,
}

impl ContactPoint {
    /// Normalizes a raw address of `kind` by `policy`.
    pub fn parse(kind: ContactKind, raw: &str, policy: &NormalizationPolicy) -> Result<Self, String> {
        let value = match kind {
            ContactKind::Email => policy.email(raw)?.key,
            ContactKind::Phone => policy.phone(raw)?,
        };
        Ok(Self { kind, value })
    }
}

/// One recorded decision: a row of the append-only history.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentDecision {
    /// UUID v7, assigned when recorded.
    pub id: Uuid,
    /// The person.
    pub profile_id: ProfileId,
    /// What it is about.
    pub purpose: ConsentPurpose,
    /// The answer.
    pub status: ConsentStatus,
    /// The legal ground.
    pub legal_basis: LegalBasis,
    /// The system that captured it ("api" when the caller named none).
    pub source: String,
    /// Where it was captured (WEB, EMAIL, STORE, …), if known.
    pub channel: Option<String>,
    /// When the person decided.
    pub captured_at: DateTime<Utc>,
    /// When a grant lapses.
    pub expires_at: Option<DateTime<Utc>>,
    /// Proof: form text, a URL, a call reference.
    pub evidence: Option<String>,
    /// The address it covers; `None`: the whole purpose.
    pub contact_point: Option<ContactPoint>,
    /// The client's idempotency key.
    pub request_id: Option<String>,
    /// Subject of the caller that recorded it.
    pub recorded_by: String,
    /// When c360 recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The merged id the caller named, when it was recorded for the profile
    /// that id resolved to: an unmerge gives it back to that profile.
    pub addressed_to: Option<ProfileId>,
}

impl ConsentDecision {
    /// Whether `retry` asks for the same decision as this recorded one, so a
    /// request with the same request id can be answered with it. A retry
    /// that sent no capture time ("now") is not compared on it.
    pub fn same_request(&self, retry: &ValidConsent) -> bool {
        let other = &retry.decision;
        self.profile_id == other.profile_id
            && self.purpose == other.purpose
            && self.status == other.status
            && self.legal_basis == other.legal_basis
            && self.source == other.source
            && self.channel == other.channel
            && (!retry.capture_time_sent || self.captured_at == other.captured_at)
            && self.contact_point == other.contact_point
            && self.expires_at == other.expires_at
            && self.evidence == other.evidence
    }
}

/// Whether `new` takes over from `current`: captured later, or at the same
/// instant and more restrictive.
pub fn supersedes(new: &ConsentDecision, current: &ConsentDecision) -> bool {
    match new.captured_at.cmp(&current.captured_at) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => new.status.restrictiveness() > current.status.restrictiveness(),
        std::cmp::Ordering::Less => false,
    }
}

/// Whether two decisions leave the same state in force: same status, legal
/// basis and expiry. Recording such a decision again changes the deciding
/// record but publishes no event.
pub fn same_state(a: &ConsentDecision, b: &ConsentDecision) -> bool {
    a.status == b.status && a.legal_basis == b.legal_basis && a.expires_at == b.expires_at
}

/// Which decision decides for one address, given the address's own decision
/// in force and the whole purpose's. The address's own comes first (a person
/// may opt in for one address and not another), except that a refusal or
/// withdrawal for the whole purpose captured *later* overrides it: someone
/// who unsubscribes from everything is unsubscribed everywhere.
pub fn for_address<'a>(
    own: Option<&'a ConsentDecision>,
    whole: Option<&'a ConsentDecision>,
) -> Option<&'a ConsentDecision> {
    match (own, whole) {
        (Some(own), Some(whole))
            if matches!(whole.status, ConsentStatus::Denied | ConsentStatus::Revoked)
                && whole.captured_at > own.captured_at =>
        {
            Some(whole)
        }
        (Some(own), _) => Some(own),
        (None, whole) => whole,
    }
}

/// Why a check answered as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentReason {
    /// A grant in force.
    Granted,
    /// A grant whose expiry has passed.
    Expired,
    /// The person refused.
    Denied,
    /// The person withdrew a grant.
    Revoked,
    /// The question is open.
    Pending,
    /// Nothing on record for the purpose.
    NoDecision,
    /// No live profile of the tenant holds the address.
    UnknownContact,
    /// No profile of the tenant has the id.
    ProfileNotFound,
    /// The profile is not live (deleted, merged or erased).
    ProfileNotLive,
}

impl ConsentReason {
    /// A sentence for humans.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Granted => "granted and in force",
            Self::Expired => "granted, but the grant has expired",
            Self::Denied => "the person denied it",
            Self::Revoked => "the person revoked it",
            Self::Pending => "the person has not answered yet",
            Self::NoDecision => "no decision on record for this purpose",
            Self::UnknownContact => "no live profile holds this address",
            Self::ProfileNotFound => "no such profile",
            Self::ProfileNotLive => "the profile is not live",
        }
    }
}

/// Whether `decision` (the one in force, if any) allows the purpose at `now`.
pub fn evaluate(decision: Option<&ConsentDecision>, now: DateTime<Utc>) -> (bool, ConsentReason) {
    let Some(decision) = decision else {
        return (false, ConsentReason::NoDecision);
    };
    match decision.status {
        ConsentStatus::Granted => match decision.expires_at {
            Some(expiry) if expiry <= now => (false, ConsentReason::Expired),
            _ => (true, ConsentReason::Granted),
        },
        ConsentStatus::Denied => (false, ConsentReason::Denied),
        ConsentStatus::Revoked => (false, ConsentReason::Revoked),
        ConsentStatus::Pending => (false, ConsentReason::Pending),
    }
}

/// A decision as a caller sends it, before validation.
#[derive(Debug, Clone, Default)]
pub struct ConsentInput {
    /// Profile id, as sent.
    pub profile_id: String,
    /// The purpose.
    pub purpose: Choice<ConsentPurpose>,
    /// The answer.
    pub status: Choice<ConsentStatus>,
    /// The legal ground; unset means CONSENT.
    pub legal_basis: Choice<LegalBasis>,
    /// Source system; empty means "api".
    pub source: String,
    /// Channel; may be empty.
    pub channel: String,
    /// When decided; `None` means now.
    pub captured_at: Option<DateTime<Utc>>,
    /// When a grant lapses.
    pub expires_at: Option<DateTime<Utc>>,
    /// Proof; may be empty.
    pub evidence: String,
    /// The address it covers, as sent (kind, raw value).
    pub contact_point: Option<(ContactKind, String)>,
    /// Idempotency key; may be empty.
    pub request_id: String,
}

/// A validated [`ConsentInput`], not yet checked against the profile.
#[derive(Debug, Clone)]
pub struct ValidConsent {
    /// The profile.
    pub profile_id: ProfileId,
    /// The decision to record (id and recording time already assigned).
    pub decision: ConsentDecision,
    /// Whether the caller sent a capture time (else it is the recording time).
    pub capture_time_sent: bool,
}

impl ConsentInput {
    /// Validates every field, reporting all violations at once; `now` is the
    /// recording time and `actor` the caller's subject.
    pub fn validate(
        self,
        policy: &NormalizationPolicy,
        now: DateTime<Utc>,
        actor: &str,
    ) -> Result<ValidConsent, DomainError> {
        let mut v = Violations::default();
        let profile_id = v.check("profile_id", ProfileId::parse(&self.profile_id));
        let purpose = required_choice(&mut v, "purpose", self.purpose);
        let status = required_choice(&mut v, "status", self.status);
        let legal_basis = match self.legal_basis {
            Choice::Unset => Some(LegalBasis::Consent),
            other => required_choice(&mut v, "legal_basis", other),
        };
        let source = if self.source.trim().is_empty() {
            Some("api".to_owned())
        } else {
            v.check("source", normalize_source(&self.source))
        };
        let channel = v.check("channel", normalize_channel(&self.channel));
        let capture_time_sent = self.captured_at.is_some();
        let captured_at = self.captured_at.unwrap_or(now);
        if captured_at > now + MAX_CLOCK_SKEW {
            v.add(
                "capture_time",
                format!("lies in the future (more than {} minutes ahead)", MAX_CLOCK_SKEW.num_minutes()),
            );
        }
        if captured_at.timestamp() < 0 {
            v.add("capture_time", "must be after 1970-01-01");
        }
        if let Some(expiry) = self.expires_at {
            if expiry <= captured_at {
                v.add("expire_time", "must be after the capture time");
            }
            if status.is_some_and(|s| s != ConsentStatus::Granted) {
                v.add("expire_time", "only a GRANTED decision expires");
            }
        }
        if self.evidence.len() > MAX_EVIDENCE_BYTES {
            v.add("evidence", format!("at most {MAX_EVIDENCE_BYTES} bytes, got {}", self.evidence.len()));
        }
        let request_id =
            v.check("request_id", super::ids::request_id(&self.request_id).map(|id| id.map(str::to_owned)));
        let contact_point = self.contact_point.and_then(|(kind, raw)| {
            let field = kind.request_field();
            if let Some(purpose) = purpose
                && let Some(expected) = purpose.contact_kind()
                && expected != kind
            {
                v.add(field, format!("{} decisions name an {} contact point", purpose.as_str(), expected.as_str()));
                return None;
            }
            v.check(field, ContactPoint::parse(kind, &raw, policy))
        });
        v.into_result(())?;
        let (
            Some(profile_id),
            Some(purpose),
            Some(status),
            Some(legal_basis),
            Some(source),
            Some(channel),
            Some(request_id),
        ) = (profile_id, purpose, status, legal_basis, source, channel, request_id)
        else {
            return Err(DomainError::Internal("consent validation".into()));
        };
        use chrono::SubsecRound;
        let decision = ConsentDecision {
            id: Uuid::now_v7(),
            profile_id,
            purpose,
            status,
            legal_basis,
            source,
            channel,
            // Stored with microseconds, as both databases keep them.
            captured_at: captured_at.trunc_subsecs(6),
            expires_at: self.expires_at.map(|t| t.trunc_subsecs(6)),
            evidence: Some(self.evidence).filter(|e| !e.is_empty()),
            contact_point,
            request_id,
            recorded_by: actor.to_owned(),
            recorded_at: now.trunc_subsecs(6),
            addressed_to: None,
        };
        Ok(ValidConsent { profile_id, decision, capture_time_sent })
    }
}

/// A required enum field: unset and unknown values are violations naming `field`.
pub fn required_choice<T>(v: &mut Violations, field: &str, choice: Choice<T>) -> Option<T> {
    match choice {
        Choice::Set(value) => Some(value),
        Choice::Unset => {
            v.add(field, "required");
            None
        }
        Choice::Unknown(n) => {
            v.add(field, format!("unknown value {n}"));
            None
        }
    }
}

/// Upper-cases a channel name; `None` when empty.
fn normalize_channel(raw: &str) -> Result<Option<String>, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.chars().count() > MAX_CHANNEL_CHARS {
        return Err(format!("at most {MAX_CHANNEL_CHARS} characters"));
    }
    if !trimmed.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
        return Err(format!("'{}' may hold only letters, digits, '_' and '-'", truncate(trimmed)));
    }
    Ok(Some(trimmed.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, minute, 0).single().expect("time")
    }

    fn decision(status: ConsentStatus, captured: u32, expires: Option<u32>) -> ConsentDecision {
        ConsentDecision {
            id: Uuid::now_v7(),
            profile_id: ProfileId::generate(),
            purpose: ConsentPurpose::EmailMarketing,
            status,
            legal_basis: LegalBasis::Consent,
            source: "api".into(),
            channel: None,
            captured_at: at(captured),
            expires_at: expires.map(at),
            evidence: None,
            contact_point: None,
            request_id: None,
            recorded_by: "test".into(),
            recorded_at: at(59),
            addressed_to: None,
        }
    }

    use ConsentStatus::*;

    #[test]
    fn the_latest_capture_wins_and_ties_go_to_the_more_restrictive() {
        // (in force, new, does the new one take over?)
        let table = [
            ((Granted, 10), (Denied, 11), true),
            ((Denied, 10), (Granted, 11), true),
            ((Granted, 10), (Revoked, 9), false),
            ((Revoked, 10), (Granted, 9), false),
            ((Granted, 10), (Denied, 10), true),
            ((Denied, 10), (Granted, 10), false),
            ((Denied, 10), (Revoked, 10), true),
            ((Revoked, 10), (Denied, 10), false),
            ((Granted, 10), (Pending, 10), true),
            ((Pending, 10), (Granted, 10), false),
            ((Granted, 10), (Granted, 10), false),
        ];
        for ((current_status, current_at), (new_status, new_at), expected) in table {
            let current = decision(current_status, current_at, None);
            let new = decision(new_status, new_at, None);
            assert_eq!(
                supersedes(&new, &current),
                expected,
                "{current_status:?}@{current_at} then {new_status:?}@{new_at}"
            );
        }
    }

    #[test]
    fn an_expired_grant_is_not_a_grant() {
        let now = at(30);
        let table = [
            (None, false, ConsentReason::NoDecision),
            (Some(decision(Granted, 10, None)), true, ConsentReason::Granted),
            (Some(decision(Granted, 10, Some(40))), true, ConsentReason::Granted),
            (Some(decision(Granted, 10, Some(30))), false, ConsentReason::Expired),
            (Some(decision(Granted, 10, Some(20))), false, ConsentReason::Expired),
            (Some(decision(Denied, 10, None)), false, ConsentReason::Denied),
            (Some(decision(Revoked, 10, None)), false, ConsentReason::Revoked),
            (Some(decision(Pending, 10, None)), false, ConsentReason::Pending),
        ];
        for (decision, allowed, reason) in table {
            assert_eq!(evaluate(decision.as_ref(), now), (allowed, reason), "{decision:?}");
        }
    }

    #[test]
    fn an_address_decides_for_itself_unless_the_whole_purpose_was_withdrawn_later() {
        // (the address's own decision, the whole purpose's, which decides)
        let table = [
            (None, None, None),
            (None, Some((Granted, 10)), Some("whole")),
            (Some((Granted, 10)), None, Some("own")),
            (Some((Granted, 10)), Some((Denied, 5)), Some("own")),
            (Some((Denied, 5)), Some((Granted, 10)), Some("own")),
            (Some((Granted, 5)), Some((Revoked, 10)), Some("whole")),
            (Some((Granted, 5)), Some((Denied, 10)), Some("whole")),
            (Some((Granted, 10)), Some((Revoked, 10)), Some("own")),
            (Some((Granted, 5)), Some((Pending, 10)), Some("own")),
        ];
        for (own, whole, expected) in table {
            let own_decision = own.map(|(status, at)| decision(status, at, None));
            let whole_decision = whole.map(|(status, at)| decision(status, at, None));
            let decided = for_address(own_decision.as_ref(), whole_decision.as_ref());
            let which = decided.map(|d| if Some(d) == own_decision.as_ref() { "own" } else { "whole" });
            assert_eq!(which, expected, "own {own:?}, whole {whole:?}");
        }
    }

    #[test]
    fn the_same_decision_again_leaves_the_same_state() {
        let first = decision(Granted, 10, Some(40));
        assert!(same_state(&first, &decision(Granted, 11, Some(40))), "a later identical grant");
        assert!(!same_state(&first, &decision(Granted, 11, Some(50))), "a renewal moves the expiry");
        assert!(!same_state(&first, &decision(Denied, 11, None)));
        let mut other_basis = decision(Granted, 11, Some(40));
        other_basis.legal_basis = LegalBasis::Contract;
        assert!(!same_state(&first, &other_basis));
    }

    #[test]
    fn input_violations_name_their_fields() {
        let policy = NormalizationPolicy::default();
        let now = at(0);
        let valid = || ConsentInput {
            profile_id: ProfileId::generate().to_string(),
            purpose: Choice::Set(ConsentPurpose::EmailMarketing),
            status: Choice::Set(Granted),
            ..Default::default()
        };
        assert!(valid().validate(&policy, now, "t").is_ok());
        let cases: Vec<(ConsentInput, &str)> = vec![
            (ConsentInput { profile_id: "nope".into(), ..valid() }, "profile_id"),
            (ConsentInput { purpose: Choice::Unset, ..valid() }, "purpose"),
            (ConsentInput { purpose: Choice::Unknown(99), ..valid() }, "purpose"),
            (ConsentInput { status: Choice::Unknown(99), ..valid() }, "status"),
            (ConsentInput { legal_basis: Choice::Unknown(99), ..valid() }, "legal_basis"),
            (ConsentInput { source: "Bad Source!".into(), ..valid() }, "source"),
            (ConsentInput { channel: "web shop".into(), ..valid() }, "channel"),
            (ConsentInput { captured_at: Some(now + Duration::minutes(6)), ..valid() }, "capture_time"),
            (ConsentInput { expires_at: Some(now - Duration::minutes(1)), ..valid() }, "expire_time"),
            (
                ConsentInput { status: Choice::Set(Denied), expires_at: Some(now + Duration::days(1)), ..valid() },
                "expire_time",
            ),
            (ConsentInput { evidence: "x".repeat(MAX_EVIDENCE_BYTES + 1), ..valid() }, "evidence"),
            (ConsentInput { request_id: "has space".into(), ..valid() }, "request_id"),
            (
                ConsentInput { contact_point: Some((ContactKind::Phone, "+14155552671".into())), ..valid() },
                "contact_point.phone",
            ),
            (
                ConsentInput { contact_point: Some((ContactKind::Email, "not an address".into())), ..valid() },
                "contact_point.email",
            ),
        ];
        for (input, field) in cases {
            let described = format!("{input:?}");
            match input.validate(&policy, now, "t") {
                Err(DomainError::InvalidArgument(violations)) => {
                    assert!(violations.iter().any(|v| v.field == field), "{field} in {violations:?}")
                }
                other => panic!("{described}: expected a violation of {field}, got {other:?}"),
            }
        }
        let skew_ok = ConsentInput { captured_at: Some(now + Duration::minutes(4)), ..valid() };
        assert!(skew_ok.validate(&policy, now, "t").is_ok(), "a few minutes of clock skew are accepted");
    }
}
