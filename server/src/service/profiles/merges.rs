//! Merges (docs/merges.md): the golden record of a target and its sources by
//! the survivorship rules, identifiers and consents moved to the target, the
//! sources MERGED and resolving to it, all in one unit of work.

use std::collections::{BTreeMap, HashMap};

use tracing::instrument;
use uuid::Uuid;

use super::{Profiles, check_etag, parse_id};
use crate::{
    auth::{Caller, Permission},
    cache::CacheChange,
    domain::{
        DomainError, ProfileId,
        consent::{same_state, supersedes},
        error::Violations,
        events,
        merge::{FieldDecision, MergeReason, MergeRecord, survive},
        profile::{self, Profile, ProfileField, ProfileStatus, parse_etag, record_lineage, settle_point_lineage},
        review::CandidateStatus,
        view::ProfileView,
    },
    service::Audit,
    store,
};

/// A MergeProfiles (or PreviewMerge) call as the transport received it.
#[derive(Debug, Clone, Default)]
pub struct MergeRequest {
    /// The profile that survives.
    pub target: String,
    /// The profiles merged into it.
    pub sources: Vec<String>,
    /// Why; `None` for a preview.
    pub reason: Option<MergeReason>,
    /// Field path → the id of the profile whose value wins.
    pub overrides: BTreeMap<String, String>,
    /// Profile id → the etag last read.
    pub etags: BTreeMap<String, String>,
    /// A pending pair of the review queue this merge approves: marked
    /// APPROVED in the merge's own transaction, so the two never disagree
    /// (refused when the pair is no longer pending).
    pub approves: Option<(ProfileId, ProfileId)>,
}

/// What a merge produced (or, previewed, would produce).
#[derive(Debug, Clone)]
pub struct Merged {
    /// The merge's id; `None` for a preview.
    pub merge_id: Option<Uuid>,
    /// The golden record as the caller may see it.
    pub view: ProfileView,
    /// How each field was decided.
    pub decisions: Vec<FieldDecision>,
}

/// A merge request, checked.
struct Plan {
    target: ProfileId,
    sources: Vec<ProfileId>,
    overrides: BTreeMap<String, ProfileId>,
    etags: Vec<(ProfileId, Option<i64>)>,
}

impl Profiles {
    /// Merges `request.sources` into `request.target` (stewards and admins).
    #[instrument(skip_all, fields(tenant = %caller.tenant(), target = request.target))]
    pub async fn merge(&self, caller: &Caller, request: MergeRequest) -> Result<Merged, DomainError> {
        caller.require(Permission::MergeProfiles)?;
        let reason = request.reason.ok_or_else(|| {
            DomainError::invalid(
                "reason",
                "required: MERGE_REASON_DUPLICATE, MERGE_REASON_MANUAL or MERGE_REASON_AUTO_MATCH",
            )
        })?;
        self.merge_or_preview(caller, request, Some(reason)).await
    }

    /// The golden record a merge would produce, and why; writes nothing.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), target = request.target))]
    pub async fn preview_merge(&self, caller: &Caller, request: MergeRequest) -> Result<Merged, DomainError> {
        caller.require(Permission::MergeProfiles)?;
        self.merge_or_preview(caller, request, None).await
    }

    /// The merges profile `id` took part in, newest first.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), profile_id = id))]
    pub async fn merge_history(&self, caller: &Caller, id: &str) -> Result<Vec<MergeRecord>, DomainError> {
        caller.require(Permission::MergeProfiles)?;
        let id = parse_id("profile_id", id)?;
        if store::profiles::find(self.store.db(), caller.tenant(), id, false).await?.is_none() {
            return Err(DomainError::profile_not_found(id));
        }
        store::merges::history(self.store.db(), caller.tenant(), id).await
    }

    async fn merge_or_preview(
        &self,
        caller: &Caller,
        request: MergeRequest,
        reason: Option<MergeReason>,
    ) -> Result<Merged, DomainError> {
        let settings = self.tenants.of(caller.tenant()).await?;
        let plan = check(&request, settings.settings.merge_source_cap())?;
        let mut work = self.store.begin().await?;
        // Locked in id order: two merges sharing a profile wait for each
        // other instead of deadlocking; the second then finds it MERGED.
        let mut ids: Vec<ProfileId> = std::iter::once(plan.target).chain(plan.sources.iter().copied()).collect();
        ids.sort_unstable();
        let mut loaded: HashMap<ProfileId, Profile> = HashMap::with_capacity(ids.len());
        for id in ids {
            let found = store::profiles::find(work.conn(), caller.tenant(), id, true).await?;
            loaded.insert(id, found.ok_or_else(|| DomainError::profile_not_found(id))?);
        }
        let target = &loaded[&plan.target];
        let sources: Vec<&Profile> = plan.sources.iter().map(|id| &loaded[id]).collect();
        for profile in std::iter::once(target).chain(sources.iter().copied()) {
            mergeable(profile, profile.id == plan.target)?;
            // A steward approved the pair as it was queued, both live: one
            // deleted since is not merged on that approval.
            if request.approves.is_some() && profile.data.status == ProfileStatus::Inactive {
                return Err(DomainError::FailedPrecondition(format!(
                    "profile {} is INACTIVE (deleted) since the pair was queued",
                    profile.id
                )));
            }
        }
        for (id, expected) in &plan.etags {
            check_etag(&loaded[id], *expected)?;
        }
        let golden = survive(target, &sources, &settings.settings.source_priority, &plan.overrides)?;
        let now = profile::now();
        let mut next = target.clone();
        next.data = golden.data;
        next.lineage.extend(golden.lineage);
        settle_point_lineage(&mut next.lineage, &next.data, |_| None);
        next.version = target.version + 1;
        next.updated_at = now;
        let mut violations = Violations::default();
        next.data.check_consistency(&self.policy, &mut violations);
        violations.into_result(())?;

        let Some(reason) = reason else {
            drop(work);
            let view = self.shown_one(caller, "profile.read", &next).await?;
            return Ok(Merged { merge_id: None, view, decisions: golden.decisions });
        };

        if let Some((left, right)) = request.approves {
            let approved = CandidateStatus::Approved;
            if !store::matching::decide(work.conn(), caller.tenant(), left, right, approved, caller.subject(), now)
                .await?
            {
                return Err(super::review::decided_meanwhile());
            }
        }

        // Identifiers: the sources let go, the target claims the union.
        let mut changes = Vec::with_capacity(sources.len() + 1);
        for source in &sources {
            store::identities::release(work.conn(), caller.tenant(), source.id, None).await?;
            let released = source.data.identity_keys(&self.policy).into_iter().map(|(key, _)| key).collect();
            changes.push((source.id, released));
        }
        let claimed = self.reindex(&work, caller, target, &next).await?;

        // Consents: per purpose and contact point, the latest decision by
        // captured time (ties to the more restrictive) is in force for the
        // target. History stays where it was recorded.
        let target_in_force: BTreeMap<_, _> = store::consents::all_in_force(work.conn(), caller.tenant(), target.id)
            .await?
            .into_iter()
            .map(|d| ((d.purpose, d.contact_point.clone()), d))
            .collect();
        let mut in_force = target_in_force.clone();
        let mut winners = Vec::new();
        for source in &sources {
            for mut decision in store::consents::all_in_force(work.conn(), caller.tenant(), source.id).await? {
                let key = (decision.purpose, decision.contact_point.clone());
                if in_force.get(&key).is_none_or(|current| supersedes(&decision, current)) {
                    decision.profile_id = target.id;
                    in_force.insert(key.clone(), decision);
                    winners.push(key);
                }
            }
            store::consents::clear_in_force(work.conn(), caller.tenant(), source.id).await?;
        }
        winners.sort();
        winners.dedup();
        let winners: Vec<_> = winners.iter().filter_map(|key| in_force.get(key)).collect();
        store::consents::put_in_force(work.conn(), caller.tenant(), &winners).await?;
        for decision in &winners {
            let key = (decision.purpose, decision.contact_point.clone());
            let previous = target_in_force.get(&key);
            if previous.is_none_or(|previous| !same_state(previous, decision)) {
                let previous = previous.map(|d| d.status);
                work.record(events::consent_updated(caller.tenant(), decision, previous, caller.subject()));
            }
        }

        // The sources: MERGED, resolving to the target (and whatever was
        // merged into them, too).
        for source in &sources {
            let mut merged = (*source).clone();
            merged.data.status = ProfileStatus::Merged;
            merged.merged_into = Some(target.id);
            merged.version = source.version + 1;
            merged.updated_at = now;
            record_lineage(&mut merged.lineage, &merged.data, &[ProfileField::Status], "merge", now);
            if !store::profiles::update(work.conn(), &merged, source.version).await? {
                return Err(DomainError::StaleEtag { sent: source.etag(), current: "newer".into() });
            }
            work.record(events::profile_merged(caller.tenant(), target.id, source.id, reason.as_str(), now));
        }
        store::merges::repoint(work.conn(), caller.tenant(), &plan.sources, target.id).await?;
        if !store::profiles::update(work.conn(), &next, target.version).await? {
            return Err(DomainError::StaleEtag { sent: target.etag(), current: "newer".into() });
        }
        let changed = target.data.diff(&next.data);
        if !changed.is_empty() {
            work.record(events::profile_updated(&next, &changed, caller.subject()));
        }
        let record = MergeRecord {
            id: Uuid::now_v7(),
            tenant: caller.tenant().clone(),
            target: target.id,
            sources: plan.sources.clone(),
            reason,
            actor: caller.subject().to_owned(),
            at: now,
            decisions: golden.decisions.clone(),
            undone: None,
        };
        let before: Vec<&Profile> = std::iter::once(target).chain(sources.iter().copied()).collect();
        store::merges::insert(work.conn(), &record, &before).await?;
        let members = before.iter().map(|p| p.id.to_string()).collect();
        work.audit(Audit::write(caller, "profile.merge", "profile", members));
        work.invalidate(CacheChange {
            tenant: next.tenant.clone(),
            id: next.id,
            version: next.version,
            identifiers: claimed,
        });
        for (source, released) in changes {
            let version = loaded[&source].version + 1;
            work.invalidate(CacheChange { tenant: next.tenant.clone(), id: source, version, identifiers: released });
        }
        work.commit().await?;
        let view = self.viewer.one(caller, &next).await?;
        Ok(Merged { merge_id: Some(record.id), view, decisions: golden.decisions })
    }
}

/// Parses and checks a request's ids, overrides and etags.
fn check(request: &MergeRequest, cap: usize) -> Result<Plan, DomainError> {
    let mut v = Violations::default();
    let target = v.check("target_id", ProfileId::parse(&request.target));
    if request.sources.is_empty() {
        v.add("source_ids", "name at least one profile to merge into the target");
    }
    if request.sources.len() > cap {
        let why = format!(
            "at most {cap} profiles per merge in this tenant (max_merge_sources), got {}",
            request.sources.len()
        );
        v.add("source_ids", why);
    }
    let mut sources = Vec::with_capacity(request.sources.len());
    for (i, raw) in request.sources.iter().enumerate() {
        let Some(id) = v.check(format!("source_ids[{i}]"), ProfileId::parse(raw)) else { continue };
        if Some(id) == target {
            v.add(format!("source_ids[{i}]"), "a profile cannot be merged into itself");
        } else if sources.contains(&id) {
            v.add(format!("source_ids[{i}]"), "listed twice");
        } else {
            sources.push(id);
        }
    }
    let mut overrides = BTreeMap::new();
    for (field, raw) in &request.overrides {
        if let Some(id) = v.check(format!("overrides[{field}]"), ProfileId::parse(raw)) {
            overrides.insert(field.clone(), id);
        }
    }
    let mut etags = Vec::with_capacity(request.etags.len());
    for (raw, etag) in &request.etags {
        let path = format!("etags[{raw}]");
        let id = v.check(path.clone(), ProfileId::parse(raw));
        let expected = match parse_etag(etag) {
            Ok(expected) => Some(expected),
            Err(_) => {
                v.add(path.clone(), "not an etag");
                None
            }
        };
        if let (Some(id), Some(expected)) = (id, expected) {
            if Some(id) != target && !sources.contains(&id) {
                v.add(path, "names a profile not in this merge");
            } else {
                etags.push((id, expected));
            }
        }
    }
    v.into_result(())?;
    let target = target.ok_or_else(|| DomainError::Internal("merge validation".into()))?;
    Ok(Plan { target, sources, overrides, etags })
}

/// Whether `profile` can take part in a merge (as the target or a source).
fn mergeable(profile: &Profile, is_target: bool) -> Result<(), DomainError> {
    let id = profile.id;
    match (profile.data.status, profile.merged_into) {
        (ProfileStatus::Merged, Some(into)) => Err(DomainError::FailedPrecondition(format!(
            "profile {id} is already merged into profile {into}{}",
            if is_target { ": merge into that profile instead" } else { "" }
        ))),
        (ProfileStatus::Merged | ProfileStatus::Erased, _) => Err(DomainError::FailedPrecondition(format!(
            "profile {id} is {} and cannot be merged",
            profile.data.status.as_str()
        ))),
        (ProfileStatus::Inactive, _) if is_target => Err(DomainError::FailedPrecondition(format!(
            "profile {id} is INACTIVE (deleted): merge into a live profile"
        ))),
        _ => Ok(()),
    }
}
