//! Consent operations: record decisions, read the state in force and the
//! history, and check whether a purpose is allowed for a person or an address.
//!
//! Reads go to the database, not the profile cache: a consent answer must
//! reflect the last acknowledged decision on every instance, and each read
//! is one indexed round trip.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tracing::instrument;

use super::Audit;
use crate::{
    auth::{Caller, Permission, masking::Shape},
    batch::Batcher,
    domain::{
        DomainError, ProfileId, TenantId,
        audit::AuditRecord,
        consent::{
            ConsentDecision, ConsentInput, ConsentPurpose, ConsentReason, ConsentStatus, ContactKind, ContactPoint,
            MAX_BATCH_CHECKS, ValidConsent, evaluate, for_address, required_choice, same_state, supersedes,
        },
        error::Violations,
        events,
        identifiers::NormalizationPolicy,
        ids::truncate,
        page::PageTokens,
        profile::{Choice, ProfileContacts, ProfileStatus},
        view::{DecisionView, Disclosure},
    },
    store::{
        self, Store, UnitOfWork,
        consents::{CheckRow, CheckSubject},
    },
};

/// Consent write transactions that may run at once.
const WRITE_LANES: usize = 4;
/// Most decisions one write transaction records.
const MAX_WRITE_BATCH: usize = 64;

/// Consent operations over a store.
#[derive(Clone)]
pub struct Consents {
    store: Store,
    policy: NormalizationPolicy,
    writer: Batcher<WriteJob>,
    audit: Audit,
    pages: PageTokens,
}

/// One SetConsent waiting for a unit of work.
struct WriteJob {
    tenant: TenantId,
    actor: String,
    valid: ValidConsent,
    /// The write's audit record, committed with the decision.
    audit: AuditRecord,
    now: DateTime<Utc>,
    reply: oneshot::Sender<Result<SetOutcome, DomainError>>,
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
    /// What the caller's view of the decision masked or withheld.
    pub disclosure: Disclosure,
}

/// The states in force of one profile of a batch ([`Consents::in_force_of_many`]).
#[derive(Debug, Clone)]
pub struct InForceOf {
    /// The id as asked.
    pub requested: ProfileId,
    /// The profile it resolves to.
    pub profile_id: ProfileId,
    /// Its states in force, as in [`Consents::in_force`].
    pub states: Vec<ConsentState>,
}

impl ConsentState {
    /// The state `decision` leaves in force at `now`, for a profile that is
    /// `live` or not (a profile that is not live allows nothing).
    fn at(decision: ConsentDecision, now: DateTime<Utc>, live: bool) -> Self {
        let (allowed, reason) =
            if live { evaluate(Some(&decision), now) } else { (false, ConsentReason::ProfileNotLive) };
        Self { decision, allowed, reason, disclosure: Disclosure::default() }
    }

    /// The state as `shape` lets a caller see it.
    fn shaped(self, shape: &Shape) -> Self {
        let DecisionView { decision, disclosure, .. } = shape.decision(self.decision);
        Self { decision, disclosure, ..self }
    }
}

/// What SetConsent recorded (or, for a retried request id, had recorded).
#[derive(Debug, Clone)]
pub struct SetOutcome {
    /// The decision in history.
    pub decision: ConsentDecision,
    /// What the caller's view of the decision masked or withheld.
    pub disclosure: Disclosure,
    /// The state in force for its purpose and contact point afterwards.
    pub in_force: ConsentState,
}

/// A page of history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// Decisions, newest recorded first, as the caller may see them.
    pub decisions: Vec<DecisionView>,
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
    /// What the caller's view of the decision masked or withheld.
    pub disclosure: Disclosure,
}

impl ConsentCheck {
    /// The profile the subject resolved to, if any (a function, for
    /// iterator adapters held across an await).
    pub fn resolved(&self) -> Option<ProfileId> {
        self.profile_id
    }

    /// The answer as `shape` lets a caller see it.
    fn shaped(self, shape: &Shape) -> Self {
        match self.decision {
            Some(decision) => {
                let DecisionView { decision, disclosure, .. } = shape.decision(decision);
                Self { decision: Some(decision), disclosure, ..self }
            }
            None => self,
        }
    }
}

impl Consents {
    /// Consent operations on `store`, normalizing addresses by `policy`,
    /// audited in `audit`.
    pub fn new(store: Store, policy: NormalizationPolicy, audit: Audit, pages: PageTokens) -> Self {
        let writer = Batcher::spawn(WRITE_LANES, MAX_WRITE_BATCH, {
            let (store, policy) = (store.clone(), policy.clone());
            move |jobs| write(store.clone(), policy.clone(), jobs)
        });
        Self { store, policy, writer, audit, pages }
    }

    /// Records a decision. History always gains it (a retried request id
    /// excepted, which answers with the decision first recorded); it takes
    /// over the state in force only if captured later than the decision in
    /// force (ties: the more restrictive), and publishes
    /// `ConsentUpdatedEvent` only if that changed the state.
    ///
    /// Concurrent calls share units of work (see [`record`]); each still
    /// answers with its own outcome or error.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), profile_id = input.profile_id))]
    pub async fn set(&self, caller: &Caller, input: ConsentInput) -> Result<SetOutcome, DomainError> {
        caller.require(Permission::WriteConsents)?;
        let now = crate::domain::profile::now();
        let mut valid = input.validate(&self.policy, now, caller.subject())?;
        // A merged id records for the profile it resolves to: found by the
        // writer (no extra query on the common path), then sent once more.
        let outcome = match self.submit(caller, valid.clone(), now).await {
            Err(DomainError::Merged { id, into }) => {
                valid.profile_id = into;
                valid.decision.profile_id = into;
                valid.decision.addressed_to = Some(id);
                self.submit(caller, valid, now).await
            }
            other => other,
        }?;
        let shape = Shape::of(caller);
        let DecisionView { decision, disclosure, .. } = shape.decision(outcome.decision);
        Ok(SetOutcome { decision, disclosure, in_force: outcome.in_force.shaped(&shape) })
    }

    /// Hands one decision to the writer and waits for its outcome.
    async fn submit(
        &self,
        caller: &Caller,
        valid: ValidConsent,
        now: DateTime<Utc>,
    ) -> Result<SetOutcome, DomainError> {
        let (reply, answer) = oneshot::channel();
        let audit = Audit::write(caller, "consent.set", "profile", vec![valid.decision.profile_id.to_string()]);
        let job =
            WriteJob { tenant: caller.tenant().clone(), actor: caller.subject().to_owned(), valid, audit, now, reply };
        self.writer.submit(job).await.map_err(|_| DomainError::Unavailable("consent writer stopped".into()))?;
        answer.await.map_err(|_| DomainError::Internal("consent writer dropped a decision".into()))?
    }

    /// The state in force of every purpose (and contact point) with a
    /// decision on record; purposes never decided are absent.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), profile_id = profile_id))]
    pub async fn in_force(
        &self,
        caller: &Caller,
        profile_id: &str,
    ) -> Result<(ProfileId, Vec<ConsentState>), DomainError> {
        caller.require(Permission::ReadConsents)?;
        let (id, live) = self.existing_profile(caller, "profile_id", profile_id).await?;
        let now = Utc::now();
        let decisions = store::consents::all_in_force(self.store.db(), caller.tenant(), id).await?;
        let shape = Shape::of(caller);
        let states: Vec<ConsentState> =
            decisions.into_iter().map(|d| ConsentState::at(d, now, live).shaped(&shape)).collect();
        let revealed = states.iter().flat_map(|s| s.disclosure.revealed.iter().copied()).collect();
        self.audit.read(caller, "consent.read", [id], &revealed, false).await;
        Ok((id, states))
    }

    /// [`Self::in_force`] of up to [`super::profiles::MAX_BATCH_IDS`] profiles with one query
    /// for the profiles and one for their decisions: for each id found, in
    /// the order of its first mention, the id as asked, the profile it
    /// resolves to and its states; and the ids that found nothing.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), count = ids.len()))]
    pub async fn in_force_of_many(
        &self,
        caller: &Caller,
        ids: &[String],
    ) -> Result<(Vec<InForceOf>, Vec<String>), DomainError> {
        caller.require(Permission::ReadConsents)?;
        let asked = super::profiles::batch_ids("profile_ids", ids)?;
        let tenant = caller.tenant();
        let db = self.store.db();
        let mut found: HashMap<ProfileId, ProfileContacts> =
            store::profiles::contacts(db, tenant, &asked, false).await?.into_iter().map(|p| (p.id, p)).collect();
        let mut resolved = Vec::with_capacity(found.len());
        let mut missing = Vec::new();
        for id in asked {
            let Some(first) = found.remove(&id) else {
                missing.push(id.to_string());
                continue;
            };
            // Merged ids are rare in a batch: each follows its chain alone.
            let load =
                |id: ProfileId| async move { Ok(store::profiles::contacts(db, tenant, &[id], false).await?.pop()) };
            let (profile, _) = super::identity::canonical(id, first, load).await?;
            resolved.push((id, profile.id, profile.status.is_live()));
        }
        let mut targets: Vec<ProfileId> = resolved.iter().map(|(_, target, _)| *target).collect();
        targets.sort();
        targets.dedup();
        let mut decisions: HashMap<ProfileId, Vec<ConsentDecision>> = HashMap::new();
        for decision in store::consents::all_in_force_of_many(db, tenant, &targets).await? {
            decisions.entry(decision.profile_id).or_default().push(decision);
        }
        let (now, shape) = (Utc::now(), Shape::of(caller));
        let entries: Vec<InForceOf> = resolved
            .into_iter()
            .map(|(requested, profile_id, live)| InForceOf {
                requested,
                profile_id,
                states: decisions
                    .get(&profile_id)
                    .into_iter()
                    .flatten()
                    .map(|d| ConsentState::at(d.clone(), now, live).shaped(&shape))
                    .collect(),
            })
            .collect();
        let revealed =
            entries.iter().flat_map(|e| &e.states).flat_map(|s| s.disclosure.revealed.iter().copied()).collect();
        self.audit.read(caller, "consent.read", targets, &revealed, false).await;
        Ok((entries, missing))
    }

    /// The history of one profile, newest recorded first, optionally of one purpose.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), profile_id = profile_id))]
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
        let page = self.pages.request(
            page_size,
            page_token,
            caller.tenant(),
            serde_json::json!(["consents", profile_id, purpose.map(|p| p.as_str())]).to_string(),
        )?;
        let (id, _) = self.existing_profile(caller, "profile_id", profile_id).await?;
        let (decisions, more) =
            store::consents::history(self.store.db(), caller.tenant(), id, purpose, page.after, page.size).await?;
        let next_page_token = match decisions.last() {
            Some(last) if more => page.next_token(last.id),
            _ => String::new(),
        };
        let shape = Shape::of(caller);
        let decisions: Vec<DecisionView> = decisions
            .into_iter()
            .map(|mut d| {
                // A merged profile's decisions are its target's history now.
                let recorded_for = (d.profile_id != id).then_some(d.profile_id);
                d.profile_id = id;
                DecisionView { recorded_for, ..shape.decision(d) }
            })
            .collect();
        let revealed = decisions.iter().flat_map(|d| d.disclosure.revealed.iter().copied()).collect();
        // Every profile whose decisions were shown is named.
        let mut shown: Vec<ProfileId> = vec![id];
        shown.extend(decisions.iter().filter_map(|d| d.recorded_for));
        shown.sort();
        shown.dedup();
        self.audit.read(caller, "consent.history", shown, &revealed, false).await;
        Ok(HistoryPage { decisions, next_page_token })
    }

    /// Whether `purpose` is allowed for one profile or address, with the
    /// deciding record. An id or address that finds nothing in the caller's
    /// tenant is NOT_FOUND.
    #[instrument(skip_all, fields(tenant = %caller.tenant()))]
    pub async fn check(
        &self,
        caller: &Caller,
        subject: SubjectInput,
        purpose: Choice<ConsentPurpose>,
    ) -> Result<ConsentCheck, DomainError> {
        caller.require(Permission::ReadConsents)?;
        // A profile id may be repeated in an error; an address is named by
        // its kind only.
        let asked = match &subject {
            SubjectInput::ProfileId(raw) => truncate(raw),
            SubjectInput::Email(_) => "email".to_owned(),
            SubjectInput::Phone(_) => "phone".to_owned(),
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
    #[instrument(skip_all, fields(tenant = %caller.tenant(), count = subjects.len()))]
    pub async fn batch_check(
        &self,
        caller: &Caller,
        subjects: &[SubjectInput],
        purpose: Choice<ConsentPurpose>,
    ) -> Result<Vec<ConsentCheck>, DomainError> {
        caller.require(Permission::ReadConsents)?;
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
        unique.sort();
        unique.dedup();
        let rows = store::consents::check(self.store.db(), caller.tenant(), purpose, &unique).await?;
        let mut by_subject: HashMap<&CheckSubject, Vec<&CheckRow>> = HashMap::new();
        for row in &rows {
            by_subject.entry(&row.subject).or_default().push(row);
        }
        let now = Utc::now();
        let shape = Shape::of(caller);
        // No oracles: a caller that may not look profiles up by address
        // learns whether it may send, not whose address it is.
        let finds_by_contact = caller.require(Permission::FindByContact).is_ok();
        let checks: Vec<ConsentCheck> = subjects
            .iter()
            .map(|subject| {
                let check = decide(subject, by_subject.get(subject).map(Vec::as_slice), now);
                match subject {
                    CheckSubject::Contact(_) if !finds_by_contact => {
                        ConsentCheck { profile_id: None, decision: None, ..check }
                    }
                    _ => check.shaped(&shape),
                }
            })
            .collect();
        let revealed: std::collections::BTreeSet<_> =
            checks.iter().flat_map(|c| c.disclosure.revealed.iter().copied()).collect();
        let ids = checks.iter().filter_map(ConsentCheck::resolved);
        self.audit.read(caller, "consent.check", ids, &revealed, false).await;
        Ok(checks)
    }

    /// The id, and whether the profile is live, if a profile of the
    /// caller's tenant has it.
    async fn existing_profile(
        &self,
        caller: &Caller,
        field: &str,
        raw: &str,
    ) -> Result<(ProfileId, bool), DomainError> {
        let asked = ProfileId::parse(raw).map_err(|e| DomainError::invalid(field, e))?;
        // A merged id answers for the profile it resolves to.
        let load = |id: ProfileId| async move {
            Ok(store::profiles::contacts(self.store.db(), caller.tenant(), &[id], false).await?.pop())
        };
        let first = load(asked).await?.ok_or_else(|| DomainError::profile_not_found(asked))?;
        let (profile, _) = super::identity::canonical(asked, first, load).await?;
        Ok((profile.id, profile.status.is_live()))
    }
}

/// Records a batch of decisions in one unit of work; if that fails before
/// its commit (the database, or a request id another transaction took),
/// records each alone, so that one decision's failure is its own. A failed
/// commit is not retried: it may have landed, so every caller learns that.
async fn write(store: Store, policy: NormalizationPolicy, mut jobs: Vec<WriteJob>) {
    // A caller that gave up before its decision was taken up (a deadline, a
    // reset) was told it failed: record nothing for it.
    jobs.retain(|job| !job.reply.is_closed());
    if jobs.len() > 1 {
        let all: Vec<&WriteJob> = jobs.iter().collect();
        match record(&store, &policy, &all).await {
            Err(Failure::BeforeCommit(_)) => {}
            outcome => return answer(jobs, outcome),
        }
    }
    for job in jobs {
        let outcome = record(&store, &policy, &[&job]).await;
        answer(vec![job], outcome);
    }
}

/// Why a unit of work of [`record`] failed as a whole.
enum Failure {
    /// Nothing was committed: the jobs may be tried again.
    BeforeCommit(DomainError),
    /// The commit failed; it may have landed.
    Commit(DomainError),
}

/// Sends each job its outcome (a failure of the whole unit to all of them).
fn answer(jobs: Vec<WriteJob>, outcome: Result<Vec<Result<SetOutcome, DomainError>>, Failure>) {
    match outcome {
        Ok(outcomes) => {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                // A caller that gave up meanwhile no longer listens; its decision stands.
                let _ = job.reply.send(outcome);
            }
        }
        Err(Failure::BeforeCommit(e) | Failure::Commit(e)) => {
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Where a decision applies: profile, purpose, contact point.
type ConsentKey = (ProfileId, ConsentPurpose, Option<ContactPoint>);

fn key_of(decision: &ConsentDecision) -> ConsentKey {
    (decision.profile_id, decision.purpose, decision.contact_point.clone())
}

/// Records `jobs` in one unit of work, in order, as if each ran alone after
/// the one before: per tenant, one statement locks every profile named (in
/// id order), one reads what is in force and the earlier requests, one
/// inserts the history, one updates what is in force, and the commit appends
/// the events. The outer error is a failure of the whole unit; each job's own
/// refusal is its entry of the answer.
async fn record(
    store: &Store,
    policy: &NormalizationPolicy,
    jobs: &[&WriteJob],
) -> Result<Vec<Result<SetOutcome, DomainError>>, Failure> {
    let (work, outcomes) = prepare(store, policy, jobs).await.map_err(Failure::BeforeCommit)?;
    work.commit().await.map_err(Failure::Commit)?;
    Ok(outcomes)
}

/// Everything of [`record`] but the commit.
async fn prepare(
    store: &Store,
    policy: &NormalizationPolicy,
    jobs: &[&WriteJob],
) -> Result<(UnitOfWork, Vec<Result<SetOutcome, DomainError>>), DomainError> {
    let mut work = store.begin().await?;
    let mut outcomes: Vec<Result<SetOutcome, DomainError>> =
        jobs.iter().map(|_| Err(DomainError::Internal("not recorded".into()))).collect();
    let mut tenants: BTreeMap<&TenantId, Vec<usize>> = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate() {
        tenants.entry(&job.tenant).or_default().push(i);
    }
    for (tenant, indices) in tenants {
        let mut ids: Vec<ProfileId> = indices.iter().map(|&i| jobs[i].valid.profile_id).collect();
        ids.sort();
        ids.dedup();
        let request_ids: Vec<&str> =
            indices.iter().filter_map(|&i| jobs[i].valid.decision.request_id.as_deref()).collect();
        let profiles: HashMap<ProfileId, ProfileContacts> =
            store::profiles::contacts(work.conn(), tenant, &ids, true).await?.into_iter().map(|p| (p.id, p)).collect();
        let (in_force, earlier) =
            store::consents::in_force_and_requests(work.conn(), tenant, &ids, &request_ids).await?;
        let mut in_force: HashMap<ConsentKey, ConsentDecision> =
            in_force.into_iter().map(|d| (key_of(&d), d)).collect();
        let mut earlier: HashMap<String, ConsentDecision> =
            earlier.into_iter().filter_map(|d| Some((d.request_id.clone()?, d))).collect();
        let mut recorded = Vec::new();
        let mut changed: HashMap<ConsentKey, usize> = HashMap::new();
        for &i in &indices {
            let job = jobs[i];
            let profile = profiles.get(&job.valid.profile_id);
            let outcome = decide_write(job, profile, policy, &mut in_force, &mut earlier);
            outcomes[i] = match outcome {
                Ok(Decided::Retry(outcome)) => Ok(outcome),
                Ok(Decided::New { decision, takes_over, previous, state }) => {
                    if takes_over {
                        changed.insert(key_of(&decision), recorded.len());
                        if let Some(previous) = previous {
                            work.record(events::consent_updated(tenant, &decision, previous, &job.actor));
                        }
                    }
                    recorded.push(decision.clone());
                    work.audit(job.audit.clone());
                    Ok(SetOutcome {
                        decision,
                        disclosure: Disclosure::default(),
                        in_force: ConsentState::at(state, job.now, true),
                    })
                }
                Err(e) => Err(e),
            };
        }
        store::consents::insert_decisions(work.conn(), tenant, &recorded).await?;
        let mut now_in_force: Vec<&ConsentDecision> = changed.values().map(|&n| &recorded[n]).collect();
        now_in_force.sort_by_key(|d| (d.profile_id, d.purpose, d.contact_point.clone()));
        store::consents::put_in_force(work.conn(), tenant, &now_in_force).await?;
    }
    Ok((work, outcomes))
}

/// What one job comes to, against the state its predecessors left.
enum Decided {
    /// A retried request id: the decision first recorded.
    Retry(SetOutcome),
    /// A new decision to record.
    New {
        /// The decision.
        decision: ConsentDecision,
        /// Whether it is now in force.
        takes_over: bool,
        /// `Some(previous status)` when the state in force changed (and an
        /// event is due); the inner `None`: nothing was in force before.
        previous: Option<Option<ConsentStatus>>,
        /// The decision in force afterwards.
        state: ConsentDecision,
    },
}

fn decide_write(
    job: &WriteJob,
    profile: Option<&ProfileContacts>,
    policy: &NormalizationPolicy,
    in_force: &mut HashMap<ConsentKey, ConsentDecision>,
    earlier: &mut HashMap<String, ConsentDecision>,
) -> Result<Decided, DomainError> {
    let new = &job.valid.decision;
    let profile = profile.ok_or_else(|| DomainError::profile_not_found(new.profile_id))?;
    let key = key_of(new);
    let live = profile.status.is_live();
    if let Some(first) = new.request_id.as_ref().and_then(|id| earlier.get(id)) {
        if !first.same_request(&job.valid) {
            return Err(DomainError::invalid("request_id", "already used for a different consent decision"));
        }
        let state = in_force.get(&key).cloned().unwrap_or_else(|| first.clone());
        let outcome = SetOutcome {
            decision: first.clone(),
            disclosure: Disclosure::default(),
            in_force: ConsentState::at(state, job.now, live),
        };
        return Ok(Decided::Retry(outcome));
    }
    if let (ProfileStatus::Merged, Some(into)) = (profile.status, profile.merged_into) {
        return Err(DomainError::Merged { id: profile.id, into });
    }
    if !live {
        return Err(DomainError::FailedPrecondition(format!(
            "profile {} is {}: its consents cannot change",
            profile.id,
            profile.status.as_str()
        )));
    }
    if let Some(point) = &new.contact_point
        && !profile.holds(point, policy)
    {
        let why = format!("is not a contact point of profile {}", profile.id);
        return Err(DomainError::invalid(point.kind.request_field(), why));
    }
    if let Some(id) = &new.request_id {
        earlier.insert(id.clone(), new.clone());
    }
    let current = in_force.get(&key);
    let takes_over = current.is_none_or(|current| supersedes(new, current));
    if !takes_over {
        let state = current.cloned().unwrap_or_else(|| new.clone());
        return Ok(Decided::New { decision: new.clone(), takes_over, previous: None, state });
    }
    let previous = match current {
        Some(current) if same_state(current, new) => None,
        other => Some(other.map(|c| c.status)),
    };
    in_force.insert(key, new.clone());
    Ok(Decided::New { decision: new.clone(), takes_over, previous, state: new.clone() })
}

/// The answer for one subject from the rows the database returned for it.
fn decide(subject: &CheckSubject, rows: Option<&[&CheckRow]>, now: DateTime<Utc>) -> ConsentCheck {
    let Some(rows) = rows.filter(|rows| !rows.is_empty()) else {
        let reason = match subject {
            CheckSubject::Profile(_) => ConsentReason::ProfileNotFound,
            CheckSubject::Contact(_) => ConsentReason::UnknownContact,
        };
        return ConsentCheck {
            profile_id: None,
            allowed: false,
            reason,
            decision: None,
            disclosure: Disclosure::default(),
        };
    };
    let profile_id = rows[0].profile_id;
    if !rows[0].profile_status.is_live() {
        let reason = ConsentReason::ProfileNotLive;
        return ConsentCheck {
            profile_id: Some(profile_id),
            allowed: false,
            reason,
            decision: None,
            disclosure: Disclosure::default(),
        };
    }
    let decisions = rows.iter().filter_map(|row| row.decision.as_ref());
    let decision = match subject {
        CheckSubject::Profile(_) => decisions.clone().find(|d| d.contact_point.is_none()),
        CheckSubject::Contact(_) => {
            let own = decisions.clone().find(|d| d.contact_point.is_some());
            let whole = decisions.clone().find(|d| d.contact_point.is_none());
            for_address(own, whole)
        }
    }
    .cloned();
    let (allowed, reason) = evaluate(decision.as_ref(), now);
    ConsentCheck { profile_id: Some(profile_id), allowed, reason, decision, disclosure: Disclosure::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cache::ProfileCache,
        domain::{
            consent::{ConsentStatus as S, LegalBasis},
            profile::Profile,
        },
        seed::{Generator, SeedOptions},
        store::SqliteDurability,
    };
    use chrono::Duration;

    async fn store(dir: &tempfile::TempDir, name: &str) -> Store {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join(name).display());
        let store = Store::connect(&url, 1, SqliteDurability::Full, ProfileCache::none()).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    fn person(tenant: &str, seed: u64) -> Profile {
        let options =
            SeedOptions { tenant: TenantId::parse(tenant).expect("tenant"), seed, duplicates: 0.0, organizations: 0.0 };
        Generator::new(options, NormalizationPolicy::default()).next_record().profile
    }

    fn job(profile: &Profile, status: S, minute: i64, request: &str, contact: Option<String>) -> WriteJob {
        let now = crate::domain::profile::now();
        let base = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("base time");
        let input = ConsentInput {
            profile_id: profile.id.to_string(),
            purpose: Choice::Set(ConsentPurpose::EmailMarketing),
            status: Choice::Set(status),
            legal_basis: Choice::Set(LegalBasis::Consent),
            captured_at: Some(base + Duration::minutes(minute)),
            request_id: request.to_owned(),
            contact_point: contact.map(|address| (ContactKind::Email, address)),
            ..Default::default()
        };
        let valid = input.validate(&NormalizationPolicy::default(), now, "tester").expect("valid");
        let (reply, _) = oneshot::channel();
        let caller = Caller::system(profile.tenant.clone(), "test");
        let audit = Audit::write(&caller, "consent.set", "profile", vec![profile.id.to_string()]);
        WriteJob { tenant: profile.tenant.clone(), actor: "tester".into(), valid, audit, now, reply }
    }

    /// What a caller and a consumer see of a run: each answer, the events,
    /// and the decisions in force.
    async fn observed(store: &Store, outcomes: Vec<Result<SetOutcome, DomainError>>) -> Vec<String> {
        let mut seen: Vec<String> = outcomes
            .into_iter()
            .map(|o| match o {
                Ok(o) => format!("ok {} in force {} {:?}", o.decision.id, o.in_force.decision.id, o.in_force.reason),
                Err(e) => format!("error {e}"),
            })
            .collect();
        // Order is promised per customer only: sort by customer, stably.
        let mut events: Vec<(String, String)> = store::outbox::envelopes(store.db())
            .await
            .expect("outbox")
            .into_iter()
            .map(|e| (e["aggregateId"].to_string(), format!("event {}", e["payload"])))
            .collect();
        events.sort_by(|a, b| a.0.cmp(&b.0));
        seen.extend(events.into_iter().map(|(_, event)| event));
        seen
    }

    /// The decisions in force of `profiles`, as text.
    async fn in_force(store: &Store, profiles: &[&Profile]) -> Vec<String> {
        let mut lines = Vec::new();
        for profile in profiles {
            for d in store::consents::all_in_force(store.db(), &profile.tenant, profile.id).await.expect("in force") {
                lines.push(format!("in force {} {:?} {} {:?}", d.profile_id, d.contact_point, d.id, d.status));
            }
        }
        lines
    }

    #[tokio::test]
    async fn a_batch_records_exactly_what_one_decision_at_a_time_would() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (batched, one_by_one) = (store(&dir, "batched.db").await, store(&dir, "sequential.db").await);
        let (p1, p2, q1) = (person("a", 1), person("a", 2), person("b", 3));
        for store in [&batched, &one_by_one] {
            let work = store.begin().await.expect("begin");
            for profile in [&p1, &p2, &q1] {
                store::profiles::insert(work.conn(), profile).await.expect("insert");
            }
            work.commit().await.expect("commit");
        }
        let p2_email = p2.data.emails[0].address.clone();
        let stranger = person("a", 4); // never stored
        let jobs = [
            job(&p1, S::Granted, 10, "r1", None),
            job(&p1, S::Denied, 5, "", None),     // late: history only
            job(&p1, S::Revoked, 10, "", None),   // tie: the revocation wins
            job(&p1, S::Revoked, 12, "", None),   // the same state again: no event
            job(&p1, S::Granted, 10, "r1", None), // a retry of the first
            job(&p1, S::Denied, 10, "r1", None),  // the same id for another decision
            job(&stranger, S::Granted, 1, "", None),
            job(&q1, S::Granted, 3, "r1", None), // another tenant's r1
            job(&p2, S::Granted, 1, "", Some(p2_email)),
            job(&p2, S::Pending, 2, "", None),
        ];
        let policy = NormalizationPolicy::default();
        let all: Vec<&WriteJob> = jobs.iter().collect();
        let Ok(outcomes) = record(&batched, &policy, &all).await else { panic!("the batch failed as a whole") };
        let mut sequential = Vec::new();
        for job in &jobs {
            match record(&one_by_one, &policy, &[job]).await {
                Ok(mut outcome) => sequential.push(outcome.pop().expect("one outcome")),
                Err(_) => panic!("a single decision failed as a whole"),
            }
        }
        let profiles = [&p1, &p2, &q1];
        assert_eq!(in_force(&batched, &profiles).await, in_force(&one_by_one, &profiles).await);
        assert_eq!(in_force(&batched, &profiles).await.len(), 4, "p1, p2 and its address, q1");
        let (batched, sequential) = (observed(&batched, outcomes).await, observed(&one_by_one, sequential).await);
        assert_eq!(batched, sequential);

        let answers = &batched[..jobs.len()];
        assert!(answers[4].contains(&jobs[0].valid.decision.id.to_string()), "the retry answers with the first");
        assert!(answers[5].starts_with("error invalid request: request_id"), "{}", answers[5]);
        assert!(answers[6].starts_with("error profile"), "{}", answers[6]);
        assert!(answers[7].starts_with("ok"), "request ids are per tenant: {}", answers[7]);
        let events: Vec<&String> = batched.iter().filter(|line| line.starts_with("event")).collect();
        let p1_events: Vec<&&String> = events.iter().filter(|e| e.contains(&p1.id.to_string())).collect();
        assert_eq!(p1_events.len(), 2, "grant, then the revocation; not the late denial nor the repeat: {p1_events:?}");
        assert!(
            p1_events[1].contains("\"previousStatus\":\"GRANTED\"") && p1_events[1].contains("\"status\":\"REVOKED\"")
        );
    }
}
