//! Identity resolution one pair at a time (docs/identity-resolution.md):
//! ExplainMatch scores two profiles as a deduplication run does, with every
//! field's evidence and what else decides the pair (a steward's decision,
//! a placeholder value, a deleted profile); ResolveIdentity scores a
//! partial record against the profiles that share an identifier or the
//! name with it, writing nothing. Both use the tenant's model in force,
//! its thresholds, and the term frequencies its last run counted, so they
//! score a pair as that run did.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use c360_matching::{
    Record,
    compare::Field,
    model::{Decision, Explanation, Frequencies, Model, Thresholds},
};
use chrono::{DateTime, Utc};
use tracing::instrument;

use super::{Profiles, parse_id};
use crate::{
    auth::{
        Caller, Permission,
        masking::{Rule, Shape},
    },
    dedupe::{self, Junk},
    domain::{
        DomainError, ProfileId, TenantId,
        error::Violations,
        identifiers::{IdentifierKey, NormalizationPolicy},
        merge::MergeReason,
        privacy::FieldClass,
        profile::{Profile, ProfileData, ProfileField, ProfileInput, ProfileKind, ProfileStatus},
        review::{CandidateStatus, MatchCandidate},
        settings::TenantSettings,
        view::ProfileView,
    },
    store::{self, profiles::ProfileFilter},
};

/// Most candidates one ResolveIdentity answers with.
pub const MAX_RESOLVE_RESULTS: usize = 100;
/// Candidates ResolveIdentity answers with when the caller names no number.
const DEFAULT_RESOLVE_RESULTS: usize = 10;
/// Most profiles one name brings in as candidates: a common name's
/// namesakes beyond these are left out (identifiers still find theirs).
const NAME_CANDIDATES: u64 = 200;
/// The same for a profile matched as it is written: fewer, since every
/// write reads them.
const ONLINE_NAMESAKES: u64 = 50;

/// How long a write is matched with the model and counts read before: a
/// model set or estimated since applies to writes within this long. The
/// RPCs that explain and resolve read them afresh.
const STATE_TTL: Duration = Duration::from_secs(10);

/// Per tenant, its model and counts as last read.
pub(super) type TermCache = Arc<Mutex<HashMap<TenantId, Arc<MatchState>>>>;

/// A tenant's model in force and its last run's counts, as read at `read_at`.
#[derive(Debug)]
pub(super) struct MatchState {
    read_at: Instant,
    model: Option<Model>,
    counted_at: Option<DateTime<Utc>>,
    frequencies: Option<Arc<Frequencies>>,
}

/// What scores a pair in one tenant: its model in force with its
/// thresholds, the counts of its last run, and what it never matches.
struct Scoring {
    model: Model,
    frequencies: Option<Arc<Frequencies>>,
    counted_at: Option<DateTime<Utc>>,
    attributes: BTreeSet<String>,
    junk: Junk,
}

impl Scoring {
    /// A profile's record as a run reads it: without what never matches,
    /// with what its records said though another profile held it.
    fn record(&self, data: &ProfileData, policy: &NormalizationPolicy, held: &[IdentifierKey]) -> Record {
        let mut input = dedupe::input(data, policy, &self.attributes, &self.junk);
        self.junk.add_held(&mut input, held);
        Record::prepare(&input)
    }
}

/// Why two profiles are, or are not, one customer.
#[derive(Debug, Clone)]
pub struct MatchExplanation {
    /// The two profiles as the caller may see them (merged ids resolved).
    pub profiles: [ProfileView; 2],
    /// Every field's evidence, the total and the decision it leads to.
    pub explanation: Explanation,
    /// The pair in the review queue, if a run proposed it.
    pub candidate: Option<MatchCandidate>,
    /// What else decides the pair, in sentences.
    pub notes: Vec<String>,
    /// When the term frequencies used were counted; `None`: none yet.
    pub counted_at: Option<DateTime<Utc>>,
}

/// One profile that may be the customer of a partial record.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The profile as the caller may see it.
    pub profile: ProfileView,
    /// Match probability, in [0, 1].
    pub confidence: f64,
    /// What it leads to under the tenant's thresholds.
    pub decision: Decision,
}

/// ResolveIdentity's answer.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Most likely first.
    pub candidates: Vec<Resolution>,
    /// The model version that scored them.
    pub model_version: u32,
}

impl Profiles {
    /// Why `a` and `b` are or are not one customer (merged ids answer for
    /// their targets).
    #[instrument(skip_all, fields(tenant = %caller.tenant()))]
    pub async fn explain_match(&self, caller: &Caller, a: &str, b: &str) -> Result<MatchExplanation, DomainError> {
        caller.require(Permission::MergeProfiles)?;
        let left = self.current(caller, "profile_id", a).await?;
        let right = self.current(caller, "other_profile_id", b).await?;
        if left.id == right.id {
            return Err(DomainError::FailedPrecondition(format!(
                "both ids name profile {}: they are one profile already",
                left.id
            )));
        }
        for profile in [&left, &right] {
            if profile.data.kind != ProfileKind::Person {
                return Err(DomainError::FailedPrecondition(format!(
                    "profile {} is an ORGANIZATION: only people are matched",
                    profile.id
                )));
            }
        }
        let tenant = caller.tenant();
        let settings = self.tenants.of(tenant).await?.settings.clone();
        let scoring = self.scoring(tenant, &settings, true).await?;
        let shape = Shape::of(caller);
        if let Some(field) = scoring.model.comparisons.iter().map(|c| &c.field).find(|f| {
            let class = field_class(f, &settings);
            shape.rule(class) != Rule::Visible
        }) {
            return Err(caller.denied(format_args!("may not see {} as stored, which the match compares", field.name())));
        }
        let held = store::identities::held(self.store.db(), tenant, Some(&[left.id, right.id])).await?;
        let held = |id: ProfileId| held.get(&id).map_or(&[][..], Vec::as_slice);
        let ra = scoring.record(&left.data, &self.policy, held(left.id));
        let rb = scoring.record(&right.data, &self.policy, held(right.id));
        let explanation = scoring.model.explain(&ra, &rb, scoring.frequencies.as_deref());

        let mut notes = Vec::new();
        for profile in [&left, &right] {
            if !matches!(profile.data.status, ProfileStatus::Active | ProfileStatus::Prospect) {
                notes.push(format!(
                    "profile {} is {}: deduplication matches live profiles only",
                    profile.id,
                    profile.data.status.as_str()
                ));
            }
            notes.extend(scoring.junk.ignored(&profile.data, &self.policy).into_iter().map(|what| {
                format!(
                    "{what} of profile {} is a placeholder or on the tenant's blocklist: it never matches",
                    profile.id
                )
            }));
        }
        let (low, high) = ordered(left.id, right.id);
        let candidate = store::matching::find_candidate(self.store.db(), tenant, low, high).await?;
        let rejected = store::matching::rejected(self.store.db(), tenant)
            .await?
            .into_iter()
            .any(|(x, y)| (x, y) == (low, high) || (y, x) == (low, high));
        match &candidate {
            Some(c) if c.status == CandidateStatus::Rejected => notes.push(format!(
                "a steward ({}) said these are not one customer{}: they are never merged or proposed again",
                c.decided.as_ref().map_or("", |(_, by)| by.as_str()),
                c.decided.as_ref().map(|(at, _)| format!(" on {}", at.to_rfc3339())).unwrap_or_default()
            )),
            Some(c) if c.status == CandidateStatus::Pending => notes.push(format!(
                "in the review queue since {} at confidence {:.4} (model version {})",
                c.created_at.to_rfc3339(),
                c.probability,
                c.model_version
            )),
            _ if rejected => notes.push(
                "a steward said profiles now merged into these are not one customer: they are never merged or \
                 proposed again"
                    .to_owned(),
            ),
            _ => {}
        }
        if scoring.frequencies.is_none() {
            notes.push(
                "no term frequencies of this model version are stored: shared values weigh by the model alone \
                 until a deduplication run counts them"
                    .to_owned(),
            );
        }
        let views = self.shown(caller, "profile.explain_match", &[&left, &right], false).await?;
        let [l, r]: [ProfileView; 2] =
            views.try_into().map_err(|_| DomainError::Internal("two views of two profiles".into()))?;
        Ok(MatchExplanation { profiles: [l, r], explanation, candidate, notes, counted_at: scoring.counted_at })
    }

    /// The live people most likely to be the customer `input` describes,
    /// scored by the tenant's model; nothing is written. Each field of the
    /// record must be one the caller may search by (names, contact points,
    /// external ids) or see as stored (the rest): the answer is no oracle
    /// for a value the caller could not otherwise look up.
    #[instrument(skip_all, fields(tenant = %caller.tenant()))]
    pub async fn resolve_identity(
        &self,
        caller: &Caller,
        input: ProfileInput,
        page_size: i32,
        min_confidence: f64,
    ) -> Result<Resolved, DomainError> {
        caller.require(Permission::ReadProfiles)?;
        let limit = match page_size {
            n if n < 0 => return Err(DomainError::invalid("page_size", "must not be negative")),
            0 => DEFAULT_RESOLVE_RESULTS,
            n => (n as usize).min(MAX_RESOLVE_RESULTS),
        };
        if !(0.0..=1.0).contains(&min_confidence) {
            return Err(DomainError::invalid("min_confidence", "must be within [0, 1]"));
        }
        let mut violations = Violations::default();
        let data = input.apply_to(&ProfileData::default(), &ProfileField::ALL, &self.policy, true, &mut violations);
        data.check_consistency(&self.policy, &mut violations);
        violations.into_result(())?;
        if data.kind != ProfileKind::Person {
            return Err(DomainError::invalid("record.kind", "only people are matched"));
        }
        let tenant = caller.tenant();
        let settings = self.tenants.of(tenant).await?.settings.clone();
        check_searchable(caller, &data, &settings)?;
        let scoring = self.scoring(tenant, &settings, true).await?;

        let record = scoring.record(&data, &self.policy, &[]);
        let mut scored = self.score_candidates(tenant, &scoring, &data, &record, None, NAME_CANDIDATES).await?;
        scored.retain(|(confidence, _)| *confidence >= min_confidence);
        scored.truncate(limit);
        let profiles: Vec<&Profile> = scored.iter().map(|(_, p)| p).collect();
        let views = self.shown(caller, "profile.resolve_identity", &profiles, false).await?;
        let candidates = views
            .into_iter()
            .zip(&scored)
            .map(|(profile, (confidence, _))| Resolution {
                profile,
                confidence: *confidence,
                decision: scoring.model.decide(*confidence),
            })
            .collect();
        Ok(Resolved { candidates, model_version: scoring.model.version })
    }

    /// The live people that may be the customer of `data` (read as
    /// `record`), other than `itself`, scored, most likely first (then by
    /// id): the holders of its identifiers (or of what its records said
    /// though another held it), and up to `namesakes` whose folded full
    /// name begins with its own.
    async fn score_candidates(
        &self,
        tenant: &TenantId,
        scoring: &Scoring,
        data: &ProfileData,
        record: &Record,
        itself: Option<ProfileId>,
        namesakes: u64,
    ) -> Result<Vec<(f64, Profile)>, DomainError> {
        let keys: Vec<_> = data.identity_keys(&self.policy).into_iter().map(|(key, _)| key).collect();
        let mut ids: Vec<ProfileId> = if keys.is_empty() {
            Vec::new()
        } else {
            store::identities::holders(self.store.db(), tenant, &keys).await?.into_iter().map(|(_, id)| id).collect()
        };
        // Namesakes come whole from the name lookup; only the holders not
        // among them are read again.
        let name = data.name_keys()[0].clone();
        let mut profiles = if name.is_empty() {
            Vec::new()
        } else {
            let filter = ProfileFilter::NamePrefix(name);
            store::profiles::page(self.store.db(), tenant, &filter, None, namesakes).await?.0
        };
        profiles.retain(|p| Some(p.id) != itself);
        ids.retain(|id| Some(*id) != itself && !profiles.iter().any(|p| p.id == *id));
        ids.sort_unstable();
        ids.dedup();
        profiles.extend(store::profiles::find_many(self.store.db(), tenant, &ids).await?);
        let ids: Vec<ProfileId> = profiles.iter().map(|p| p.id).collect();
        let held = store::identities::held(self.store.db(), tenant, Some(&ids)).await?;
        let mut scored: Vec<(f64, Profile)> = profiles
            .into_iter()
            .filter(|p| p.data.kind == ProfileKind::Person && p.data.status.is_live())
            .map(|p| {
                let other = scoring.record(&p.data, &self.policy, held.get(&p.id).map_or(&[], Vec::as_slice));
                (scoring.model.probability(record, &other, scoring.frequencies.as_deref()), p)
            })
            .collect();
        scored.sort_by(|(x, a), (y, b)| y.total_cmp(x).then(a.id.cmp(&b.id)));
        Ok(scored)
    }

    /// Matches a person just written (created, updated) against the
    /// tenant's live people with the model in force, as a run would: the
    /// likeliest at or above the auto threshold is merged with it (the older
    /// profile survives, reason AUTO_MATCH, as the system principal), and
    /// every other at or above the review threshold is queued for a steward.
    /// A pair a steward rejected is neither. Nothing happens before the
    /// tenant has a model. The write stands whatever happens here: a failure
    /// is logged, not returned. The merge's survivor, when it merged (the
    /// written profile, or the one it was merged into).
    pub(super) async fn match_written(&self, written: &Profile) -> Option<ProfileId> {
        if written.data.kind != ProfileKind::Person || !written.data.status.is_live() {
            return None;
        }
        match self.match_one(written).await {
            Ok(merged) => merged,
            Err(DomainError::FailedPrecondition(_)) => None,
            Err(error) => {
                tracing::warn!(%error, profile_id = %written.id, "online matching failed; the write stands");
                None
            }
        }
    }

    async fn match_one(&self, written: &Profile) -> Result<Option<ProfileId>, DomainError> {
        let tenant = &written.tenant;
        let settings = self.tenants.of(tenant).await?.settings.clone();
        let scoring = self.scoring(tenant, &settings, false).await?;
        let held = store::identities::held(self.store.db(), tenant, Some(&[written.id])).await?;
        let record = scoring.record(&written.data, &self.policy, held.get(&written.id).map_or(&[], Vec::as_slice));
        let scored =
            self.score_candidates(tenant, &scoring, &written.data, &record, Some(written.id), ONLINE_NAMESAKES).await?;
        let thresholds = scoring.model.thresholds;
        if scored.first().is_none_or(|(c, _)| *c < thresholds.review) {
            return Ok(None);
        }
        // Pairs merged once and unmerged since: someone undid what the
        // model said, so they wait for a steward instead of merging again.
        let undone: Vec<Vec<ProfileId>> = store::merges::history(self.store.db(), tenant, written.id)
            .await?
            .into_iter()
            .filter(|m| m.undone.is_some())
            .map(|m| std::iter::once(m.target).chain(m.sources).collect())
            .collect();
        let mut merged = None;
        let mut review = Vec::new();
        for (confidence, other) in scored.iter().take_while(|(c, _)| *c >= thresholds.review) {
            let (low, high) = ordered(written.id, other.id);
            let pair = store::matching::find_candidate(self.store.db(), tenant, low, high).await?;
            if pair.is_some_and(|c| c.status == CandidateStatus::Rejected) {
                continue;
            }
            let unmerged = undone.iter().any(|members| members.contains(&other.id));
            if merged.is_none() && *confidence >= thresholds.auto && !unmerged {
                let request = super::MergeRequest {
                    target: low.to_string(),
                    sources: vec![high.to_string()],
                    reason: Some(MergeReason::AutoMatch),
                    etags: [(written.id.to_string(), written.etag()), (other.id.to_string(), other.etag())].into(),
                    ..Default::default()
                };
                let system = Caller::system(tenant.clone(), "match");
                match self.merge(&system, request).await {
                    Ok(_) => {
                        merged = Some(low);
                        continue;
                    }
                    // Merged meanwhile (a concurrent write of the same
                    // person): nothing to queue.
                    Err(DomainError::Merged { .. }) => continue,
                    // Changed meanwhile: a steward may look.
                    Err(error) => tracing::info!(%error, "an online match was not merged"),
                }
            }
            review.push((low, high, *confidence));
        }
        if let Some(target) = merged {
            // The pairs of the profile merged away are the survivor's now.
            let gone = if target == written.id { None } else { Some(written.id) };
            for (low, high, _) in &mut review {
                if Some(*low) == gone {
                    *low = target;
                } else if Some(*high) == gone {
                    *high = target;
                }
            }
            review.retain(|(low, high, _)| low != high);
        }
        if !review.is_empty() {
            store::matching::propose(self.store.db(), tenant, &review, scoring.model.version, chrono::Utc::now())
                .await?;
        }
        Ok(merged)
    }

    /// The profile `raw` names now (a merged id answers for its target).
    async fn current(&self, caller: &Caller, field: &str, raw: &str) -> Result<Profile, DomainError> {
        let id = parse_id(field, raw)?;
        let stored =
            self.identity.stored(caller.tenant(), id).await?.ok_or_else(|| DomainError::profile_not_found(id))?;
        let (profile, _) = self.identity.follow(caller.tenant(), stored).await?;
        Ok(Profile::clone(&profile))
    }

    /// The tenant's model in force under its thresholds, with its last
    /// run's term frequencies (read again only when a run stored new ones).
    async fn scoring(&self, tenant: &TenantId, settings: &TenantSettings, fresh: bool) -> Result<Scoring, DomainError> {
        let state = self.match_state(tenant, fresh).await?;
        let mut model = state.model.clone().ok_or_else(|| {
            DomainError::FailedPrecondition(
                "the tenant has no matching model yet: a deduplication run (c360 dedupe, StartDeduplication) \
                 estimates one, or `c360 model set` sets one"
                    .into(),
            )
        })?;
        let (auto, review) = settings.match_thresholds();
        model.thresholds = Thresholds { auto, review };
        let attributes = model.comparisons.iter().filter_map(|c| c.field.attribute_key()).map(str::to_owned).collect();
        let junk = Junk::new(&settings.match_blocklist, &self.policy);
        Ok(Scoring { model, frequencies: state.frequencies.clone(), counted_at: state.counted_at, attributes, junk })
    }

    /// The tenant's model in force and its last run's counts: read from the
    /// database when `fresh` or older than [`STATE_TTL`] (the counts only
    /// when a run stored new ones since).
    async fn match_state(&self, tenant: &TenantId, fresh: bool) -> Result<Arc<MatchState>, DomainError> {
        let cached = self.terms.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(tenant).cloned();
        if let Some(state) = &cached
            && !fresh
            && state.read_at.elapsed() < STATE_TTL
        {
            return Ok(state.clone());
        }
        let model = store::matching::current_model(self.store.db(), tenant).await?;
        // Counts are kept per comparison of the model that counted them: a
        // model set or estimated since compares other fields, or in
        // another order, and scores without them until a run counts again.
        let stamp = store::matching::frequencies_stamp(self.store.db(), tenant)
            .await?
            .filter(|(_, version)| model.as_ref().is_some_and(|m| m.version == *version));
        let counted_at = stamp.map(|(at, _)| at);
        let frequencies =
            match (counted_at, cached) {
                (None, _) => None,
                (Some(at), Some(cached)) if cached.counted_at == Some(at) => cached.frequencies.clone(),
                (Some(_), _) => store::matching::frequencies(self.store.db(), tenant).await?.and_then(|stored| {
                    match Frequencies::decode(&stored.counts) {
                        Ok(f) => Some(Arc::new(f)),
                        Err(error) => {
                            tracing::warn!(%error, "stored term frequencies not used");
                            None
                        }
                    }
                }),
            };
        let state = Arc::new(MatchState { read_at: Instant::now(), model, counted_at, frequencies });
        self.terms.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(tenant.clone(), state.clone());
        Ok(state)
    }
}

/// A pair as the review queue names it: smaller id first.
fn ordered(a: ProfileId, b: ProfileId) -> (ProfileId, ProfileId) {
    if a < b { (a, b) } else { (b, a) }
}

/// The class of personal data a compared field reads.
fn field_class(field: &Field, settings: &TenantSettings) -> FieldClass {
    match field {
        Field::GivenName | Field::FamilyName => FieldClass::Name,
        Field::BirthDate => FieldClass::BirthDate,
        Field::Email => FieldClass::Email,
        Field::Phone => FieldClass::Phone,
        Field::Address | Field::Postcode | Field::City => FieldClass::Address,
        Field::Attribute(key) => settings.attribute_class(key),
    }
}

/// Refuses a record with a field the caller may neither search by nor see
/// as stored: its agreement would tell what the caller cannot look up.
fn check_searchable(caller: &Caller, data: &ProfileData, settings: &TenantSettings) -> Result<(), DomainError> {
    let may = |permission: Permission| caller.require(permission).is_ok();
    if (data.given_name.is_some() || data.family_name.is_some()) && !may(Permission::FindByName) {
        return Err(caller.denied(format_args!("may not find profiles by name")));
    }
    if (!data.emails.is_empty() || !data.phones.is_empty()) && !may(Permission::FindByContact) {
        return Err(caller.denied(format_args!("may not find profiles by email or phone")));
    }
    if !data.external_ids.is_empty() && !may(Permission::FindByExternalId) {
        return Err(caller.denied(format_args!("may not find profiles by external id")));
    }
    let shape = Shape::of(caller);
    let seen = |class: FieldClass| shape.rule(class) == Rule::Visible;
    if !data.addresses.is_empty() && !seen(FieldClass::Address) {
        return Err(caller.denied(format_args!("may not match on addresses, which it sees masked")));
    }
    if data.birth_date.is_some() && !seen(FieldClass::BirthDate) {
        return Err(caller.denied(format_args!("may not match on birth dates, which it sees masked")));
    }
    if let Some(key) = data.attributes.keys().find(|key| !seen(settings.attribute_class(key))) {
        return Err(caller.denied(format_args!("may not match on attributes.{key}, which it sees masked")));
    }
    Ok(())
}
