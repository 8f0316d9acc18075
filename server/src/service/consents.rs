//! Consent operations: record decisions, read the state in force and the
//! history, and check whether a purpose is allowed for a person or an address.
//!
//! Reads go to the database, not the profile cache: a consent answer must
//! reflect the last acknowledged decision on every instance, and each read
//! is one indexed round trip.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tracing::instrument;

use crate::{
    auth::{Caller, Permission},
    domain::{
        DomainError, ProfileId,
        consent::{
            ConsentDecision, ConsentInput, ConsentPurpose, ConsentReason, ContactKind, ContactPoint, MAX_BATCH_CHECKS,
            evaluate, required_choice, same_state, supersedes,
        },
        error::Violations,
        events,
        identifiers::{IdentifierKey, IdentifierType, NormalizationPolicy},
        ids::truncate,
        page::PageRequest,
        profile::Choice,
    },
    store::{
        self, Store,
        consents::{CheckRow, CheckSubject},
    },
};

/// Consent operations over a store.
#[derive(Clone)]
pub struct Consents {
    store: Store,
    policy: NormalizationPolicy,
}

/// The state in force for one purpose (and contact point) of one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentState {
    /// The decision in force.
    pub decision: ConsentDecision,
    /// Whether it allows the purpose now.
    pub allowed: bool,
    /// Why.
    pub reason: ConsentReason,
}

impl ConsentState {
    fn at(decision: ConsentDecision, now: DateTime<Utc>) -> Self {
        let (allowed, reason) = evaluate(Some(&decision), now);
        Self { decision, allowed, reason }
    }
}

/// What SetConsent recorded (or, for a retried request id, had recorded).
#[derive(Debug, Clone)]
pub struct SetOutcome {
    /// The decision in history.
    pub decision: ConsentDecision,
    /// The state in force for its purpose and contact point afterwards.
    pub in_force: ConsentState,
}

/// A page of history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// Decisions, newest recorded first.
    pub decisions: Vec<ConsentDecision>,
    /// Token for the next page; empty on the last.
    pub next_page_token: String,
}

/// Who a check is about, as a caller sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectInput {
    /// A profile id.
    ProfileId(String),
    /// An email address.
    Email(String),
    /// A phone number.
    Phone(String),
    /// Nothing was set.
    Missing,
}

/// The answer of one consent check.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentCheck {
    /// The profile the subject resolved to, if any.
    pub profile_id: Option<ProfileId>,
    /// Whether the purpose is allowed.
    pub allowed: bool,
    /// Why.
    pub reason: ConsentReason,
    /// The decision that decided, if one did.
    pub decision: Option<ConsentDecision>,
}

impl Consents {
    /// Consent operations on `store`, normalizing addresses by `policy`.
    pub fn new(store: Store, policy: NormalizationPolicy) -> Self {
        Self { store, policy }
    }

    /// Records a decision. History always gains it (a retried request id
    /// excepted, which answers with the decision first recorded); it takes
    /// over the state in force only if captured later than the decision in
    /// force (ties: the more restrictive), and publishes
    /// `ConsentUpdatedEvent` only if that changed the state.
    #[instrument(skip_all, fields(tenant = %caller.tenant, profile_id = input.profile_id))]
    pub async fn set(&self, caller: &Caller, input: ConsentInput) -> Result<SetOutcome, DomainError> {
        caller.require(Permission::WriteConsents)?;
        let now = crate::domain::profile::now();
        let valid = input.validate(&self.policy, now, &caller.subject)?;
        let (tenant, new) = (&caller.tenant, valid.decision);

        let mut work = self.store.begin().await?;
        // The profile's row lock orders every consent write of the profile, so
        // "in force" cannot change between the read below and the commit.
        let profile = store::profiles::find(work.conn(), tenant, valid.profile_id, true)
            .await?
            .ok_or_else(|| DomainError::profile_not_found(valid.profile_id))?;
        let (in_force, earlier) = store::consents::in_force_and_request(
            work.conn(),
            tenant,
            profile.id,
            new.purpose,
            new.contact_point.as_ref(),
            new.request_id.as_deref(),
        )
        .await?;
        if let Some(earlier) = earlier {
            if !earlier.same_request(&new) {
                return Err(DomainError::invalid("request_id", "already used for a different consent decision"));
            }
            let in_force = in_force.unwrap_or_else(|| earlier.clone());
            return Ok(SetOutcome { decision: earlier, in_force: ConsentState::at(in_force, now) });
        }
        if !profile.data.status.is_live() {
            return Err(DomainError::FailedPrecondition(format!(
                "profile {} is {}: its consents cannot change",
                profile.id,
                profile.data.status.as_str()
            )));
        }
        if let Some(point) = &new.contact_point {
            let key = IdentifierKey {
                id_type: identifier_type(point.kind),
                namespace: String::new(),
                value: point.value.clone(),
            };
            if !profile.data.identity_keys(&self.policy).iter().any(|(k, _)| *k == key) {
                let field = match point.kind {
                    ContactKind::Email => "contact_point.email",
                    ContactKind::Phone => "contact_point.phone",
                };
                return Err(DomainError::invalid(field, format!("is not a contact point of profile {}", profile.id)));
            }
        }

        store::consents::insert_decision(work.conn(), tenant, &new).await?;
        let takes_over = in_force.as_ref().is_none_or(|current| supersedes(&new, current));
        if takes_over {
            store::consents::put_in_force(work.conn(), tenant, &new).await?;
            if in_force.as_ref().is_none_or(|current| !same_state(current, &new)) {
                let previous = in_force.as_ref().map(|current| current.status);
                work.record(events::consent_updated(tenant, &new, previous, &caller.subject));
            }
        }
        work.commit().await?;
        let state = match in_force {
            Some(current) if !takes_over => current,
            _ => new.clone(),
        };
        Ok(SetOutcome { decision: new, in_force: ConsentState::at(state, now) })
    }

    /// The state in force of every purpose (and contact point) with a
    /// decision on record; purposes never decided are absent.
    #[instrument(skip_all, fields(tenant = %caller.tenant, profile_id = profile_id))]
    pub async fn in_force(&self, caller: &Caller, profile_id: &str) -> Result<Vec<ConsentState>, DomainError> {
        caller.require(Permission::ReadConsents)?;
        let id = self.existing_profile(caller, "profile_id", profile_id).await?;
        let now = Utc::now();
        let decisions = store::consents::all_in_force(self.store.db(), &caller.tenant, id).await?;
        Ok(decisions.into_iter().map(|d| ConsentState::at(d, now)).collect())
    }

    /// The history of one profile, newest recorded first, optionally of one purpose.
    #[instrument(skip_all, fields(tenant = %caller.tenant, profile_id = profile_id))]
    pub async fn history(
        &self,
        caller: &Caller,
        profile_id: &str,
        purpose: Choice<ConsentPurpose>,
        page_size: i32,
        page_token: &str,
    ) -> Result<HistoryPage, DomainError> {
        caller.require(Permission::ReadConsents)?;
        let purpose = match purpose {
            Choice::Unset => None,
            other => {
                let mut v = Violations::default();
                let purpose = required_choice(&mut v, "purpose", other);
                v.into_result(purpose)?
            }
        };
        let page = PageRequest::parse(
            page_size,
            page_token,
            format!("consents:{profile_id}:{}", purpose.map_or("", |p| p.as_str())),
        )?;
        let id = self.existing_profile(caller, "profile_id", profile_id).await?;
        let (decisions, more) =
            store::consents::history(self.store.db(), &caller.tenant, id, purpose, page.after, page.size).await?;
        let next_page_token = match decisions.last() {
            Some(last) if more => page.next_token(last.id),
            _ => String::new(),
        };
        Ok(HistoryPage { decisions, next_page_token })
    }

    /// Whether `purpose` is allowed for one profile or address, with the
    /// deciding record. An id or address that finds nothing in the caller's
    /// tenant is NOT_FOUND.
    #[instrument(skip_all, fields(tenant = %caller.tenant))]
    pub async fn check(
        &self,
        caller: &Caller,
        subject: SubjectInput,
        purpose: Choice<ConsentPurpose>,
    ) -> Result<ConsentCheck, DomainError> {
        let asked = match &subject {
            SubjectInput::ProfileId(raw) | SubjectInput::Email(raw) | SubjectInput::Phone(raw) => truncate(raw),
            SubjectInput::Missing => String::new(),
        };
        let mut checks = self.check_all(caller, &[subject], purpose, "subject").await?;
        let check = checks.pop().ok_or_else(|| DomainError::Internal("one check, no answer".into()))?;
        match check.reason {
            ConsentReason::ProfileNotFound => Err(DomainError::profile_not_found(asked)),
            ConsentReason::UnknownContact => Err(DomainError::NotFound { resource: "contact point", id: asked }),
            _ => Ok(check),
        }
    }

    /// [`Consents::check`] for up to [`MAX_BATCH_CHECKS`] subjects and one
    /// purpose, in one database round trip; answers in request order, and a
    /// subject that finds nothing answers "not allowed" with its reason.
    #[instrument(skip_all, fields(tenant = %caller.tenant, count = subjects.len()))]
    pub async fn batch_check(
        &self,
        caller: &Caller,
        subjects: &[SubjectInput],
        purpose: Choice<ConsentPurpose>,
    ) -> Result<Vec<ConsentCheck>, DomainError> {
        if subjects.len() > MAX_BATCH_CHECKS {
            return Err(DomainError::invalid(
                "subjects",
                format!("at most {MAX_BATCH_CHECKS} subjects, got {}", subjects.len()),
            ));
        }
        self.check_all(caller, subjects, purpose, "subjects").await
    }

    async fn check_all(
        &self,
        caller: &Caller,
        subjects: &[SubjectInput],
        purpose: Choice<ConsentPurpose>,
        field: &str,
    ) -> Result<Vec<ConsentCheck>, DomainError> {
        caller.require(Permission::ReadConsents)?;
        let mut v = Violations::default();
        let purpose = required_choice(&mut v, "purpose", purpose);
        let parsed: Vec<Option<CheckSubject>> = subjects
            .iter()
            .enumerate()
            .map(|(i, subject)| {
                let path = |leaf: &str| {
                    if field == "subject" { format!("subject.{leaf}") } else { format!("{field}[{i}].{leaf}") }
                };
                match subject {
                    SubjectInput::ProfileId(raw) => {
                        v.check(path("profile_id"), ProfileId::parse(raw)).map(CheckSubject::Profile)
                    }
                    SubjectInput::Email(raw) => v
                        .check(path("email"), ContactPoint::parse(ContactKind::Email, raw, &self.policy))
                        .map(CheckSubject::Contact),
                    SubjectInput::Phone(raw) => v
                        .check(path("phone"), ContactPoint::parse(ContactKind::Phone, raw, &self.policy))
                        .map(CheckSubject::Contact),
                    SubjectInput::Missing => {
                        let at = if field == "subject" { "subject".to_owned() } else { format!("{field}[{i}]") };
                        v.add(at, "one of profile_id, email or phone is required");
                        None
                    }
                }
            })
            .collect();
        let purpose = v.into_result(purpose)?.ok_or_else(|| DomainError::Internal("purpose".into()))?;
        let subjects: Vec<CheckSubject> = parsed.into_iter().flatten().collect();

        let mut unique = subjects.clone();
        unique.sort_by_key(subject_order);
        unique.dedup();
        let rows = store::consents::check(self.store.db(), &caller.tenant, purpose, &unique).await?;
        let mut by_subject: HashMap<&CheckSubject, Vec<&CheckRow>> = HashMap::new();
        for row in &rows {
            by_subject.entry(&row.subject).or_default().push(row);
        }
        let now = Utc::now();
        Ok(subjects.iter().map(|subject| decide(subject, by_subject.get(subject).map(Vec::as_slice), now)).collect())
    }

    /// The id, if a profile of the caller's tenant has it.
    async fn existing_profile(&self, caller: &Caller, field: &str, raw: &str) -> Result<ProfileId, DomainError> {
        let id = ProfileId::parse(raw).map_err(|e| DomainError::invalid(field, e))?;
        store::profiles::find(self.store.db(), &caller.tenant, id, false)
            .await?
            .map(|p| p.id)
            .ok_or_else(|| DomainError::profile_not_found(id))
    }
}

/// The answer for one subject from the rows the database returned for it.
fn decide(subject: &CheckSubject, rows: Option<&[&CheckRow]>, now: DateTime<Utc>) -> ConsentCheck {
    let Some(rows) = rows.filter(|rows| !rows.is_empty()) else {
        let reason = match subject {
            CheckSubject::Profile(_) => ConsentReason::ProfileNotFound,
            CheckSubject::Contact(_) => ConsentReason::UnknownContact,
        };
        return ConsentCheck { profile_id: None, allowed: false, reason, decision: None };
    };
    let profile_id = rows[0].profile_id;
    if !rows[0].profile_status.is_live() {
        let reason = ConsentReason::ProfileNotLive;
        return ConsentCheck { profile_id: Some(profile_id), allowed: false, reason, decision: None };
    }
    // An address's own decision comes first, then the whole purpose's.
    let decision = rows
        .iter()
        .filter_map(|row| row.decision.as_ref())
        .max_by_key(|decision| decision.contact_point.is_some())
        .cloned();
    let (allowed, reason) = evaluate(decision.as_ref(), now);
    ConsentCheck { profile_id: Some(profile_id), allowed, reason, decision }
}

fn subject_order(subject: &CheckSubject) -> (u8, String) {
    match subject {
        CheckSubject::Profile(id) => (0, id.to_string()),
        CheckSubject::Contact(point) => (1 + point.kind as u8, point.value.clone()),
    }
}

fn identifier_type(kind: ContactKind) -> IdentifierType {
    match kind {
        ContactKind::Email => IdentifierType::Email,
        ContactKind::Phone => IdentifierType::Phone,
    }
}
