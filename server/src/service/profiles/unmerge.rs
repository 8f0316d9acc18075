//! Exact unmerge (docs/merges.md): a merge undone in one unit of work. The
//! values come from `domain::unmerge`; this module locks, checks, moves
//! identifiers, consents and merged ids back, and publishes.

use std::collections::{BTreeMap, HashMap};

use tracing::instrument;
use uuid::Uuid;

use super::Profiles;
use crate::{
    auth::{Caller, Permission},
    cache::CacheChange,
    domain::{
        DomainError, ProfileId,
        consent::{ConsentDecision, same_state, supersedes},
        error::Violations,
        events,
        identifiers::IdentifierKey,
        merge::MergeRecord,
        profile::{self, Profile, ProfileStatus},
        unmerge::{OtherMerges, Redirected, undo},
        view::ProfileView,
    },
    service::{Audit, identity},
    store::{self, UnitOfWork},
};

/// Longest reason an unmerge may give.
const MAX_REASON: usize = 200;

/// What an unmerge did.
#[derive(Debug, Clone)]
pub struct Unmerged {
    /// The merge undone.
    pub merge_id: Uuid,
    /// The target, as the caller may see it.
    pub target: ProfileView,
    /// Each source, live again, as the caller may see it.
    pub sources: Vec<ProfileView>,
}

impl Profiles {
    /// Undoes merge `merge_id` (stewards and admins): each source comes back
    /// as it was plus what arrived for it since, the target loses exactly
    /// what the sources brought. A merge whose target was merged away since
    /// is refused, naming the merge to undo first.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), merge_id))]
    pub async fn unmerge(&self, caller: &Caller, merge_id: &str, reason: &str) -> Result<Unmerged, DomainError> {
        caller.require(Permission::MergeProfiles)?;
        let id = Uuid::parse_str(merge_id.trim()).map_err(|_| DomainError::invalid("merge_id", "not a merge id"))?;
        let reason = match reason.trim() {
            "" => "MANUAL",
            text if text.chars().count() > MAX_REASON => {
                return Err(DomainError::invalid("reason", format!("at most {MAX_REASON} characters")));
            }
            text => text,
        };
        let tenant = caller.tenant();
        let mut work = self.store.begin().await?;
        let not_found = || DomainError::NotFound { resource: "merge", id: id.to_string() };
        let stored = store::merges::find(work.conn(), tenant, id, true).await?.ok_or_else(not_found)?;
        let merge = &stored.record;
        if let Some((at, by)) = &merge.undone {
            return Err(DomainError::FailedPrecondition(format!("merge {id} was undone already ({at} by {by})")));
        }

        // Locked in id order, as merges lock theirs.
        let mut ids: Vec<ProfileId> = std::iter::once(merge.target).chain(merge.sources.iter().copied()).collect();
        ids.sort_unstable();
        let mut current: HashMap<ProfileId, Profile> = HashMap::with_capacity(ids.len());
        for member in ids {
            let found = store::profiles::find(work.conn(), tenant, member, true).await?;
            current.insert(member, found.ok_or_else(|| DomainError::profile_not_found(member))?);
        }
        let target_now = &current[&merge.target];
        if target_now.data.status == ProfileStatus::Merged {
            let later = store::merges::absorbing(work.conn(), tenant, merge.target).await?;
            return Err(DomainError::FailedPrecondition(match later {
                Some(later) => format!(
                    "profile {} was merged into profile {} since, by merge {}: unmerge that merge first",
                    merge.target, later.target, later.id
                ),
                None => format!("profile {} is MERGED: unmerge the merge that absorbed it first", merge.target),
            }));
        }
        for source in &merge.sources {
            let now = &current[source];
            if now.data.status != ProfileStatus::Merged || now.merged_into != Some(merge.target) {
                return Err(DomainError::FailedPrecondition(format!(
                    "profile {source} is no longer merged into profile {}",
                    merge.target
                )));
            }
        }

        // Profiles merged into a source before this merge point at the
        // target now; they follow their source back.
        let mut cluster: HashMap<ProfileId, ProfileId> = merge.sources.iter().map(|s| (*s, *s)).collect();
        let mut repoint: BTreeMap<ProfileId, Vec<ProfileId>> = BTreeMap::new();
        for member in store::merges::merged_into(work.conn(), tenant, merge.target).await? {
            if merge.sources.contains(&member) {
                continue;
            }
            // Up the merges that absorbed it (X into M, then M into a source)
            // to the first profile it was merged into that this merge took.
            let mut step = member;
            for _ in 0..identity::MAX_REDIRECTS {
                let Some(earlier) = store::merges::absorbing(work.conn(), tenant, step).await? else { break };
                if earlier.id == merge.id || earlier.target == merge.target {
                    break;
                }
                if merge.sources.contains(&earlier.target) {
                    cluster.insert(member, earlier.target);
                    repoint.entry(earlier.target).or_default().push(member);
                    break;
                }
                step = earlier.target;
            }
        }
        let addressed: Vec<ProfileId> = cluster.keys().copied().collect();
        let redirected: Vec<Redirected> =
            store::merges::redirects(work.conn(), tenant, merge.target, &addressed, merge.at)
                .await?
                .into_iter()
                .map(|(to, before, after)| Redirected { source: cluster[&to], before, after })
                .collect();
        let version = stored.before.iter().find(|p| p.id == merge.target).map_or(0, |p| p.version);
        let others = self.other_merges(&work, tenant, merge, version).await?;
        let undone = undo(merge, &stored.before, target_now, &redirected, &others, &self.policy)
            .ok_or_else(|| DomainError::Internal(format!("merge {id} lacks the snapshot of a profile")))?;

        let now = profile::now();
        let mut target = target_now.clone();
        (target.data, target.lineage) = undone.target;
        target.version += 1;
        target.updated_at = now;
        let mut sources = Vec::with_capacity(undone.sources.len());
        for (source, data, lineage) in undone.sources {
            let mut next = current[&source].clone();
            next.data = data;
            next.lineage = lineage;
            next.merged_into = None;
            next.version += 1;
            next.updated_at = now;
            sources.push(next);
        }
        let mut violations = Violations::default();
        for profile in std::iter::once(&target).chain(&sources) {
            profile.data.check_consistency(&self.policy, &mut violations);
        }
        violations.into_result(())?;

        // Identifiers: the target lets go of what it loses first, then each
        // source claims its own again (a third profile that took one since
        // makes the unmerge fail with ALREADY_EXISTS, nothing changed).
        // A target deleted through a source's old id comes back live (and
        // one deleted through its own id stays deleted): its index follows
        // its status, not only its values.
        let target_moved = match (target_now.data.status.is_live(), target.data.status.is_live()) {
            (true, true) => self.reindex(&work, caller, target_now, &target).await?,
            (false, true) => {
                let keys = target.data.identity_keys(&self.policy);
                store::identities::claim(work.conn(), tenant, target.id, &keys).await?;
                keys.into_iter().map(|(key, _)| key).collect()
            }
            (true, false) => {
                store::identities::release(work.conn(), tenant, target.id, None).await?;
                target_now.data.identity_keys(&self.policy).into_iter().map(|(key, _)| key).collect()
            }
            (false, false) => Vec::new(),
        };
        let mut changes = vec![CacheChange {
            tenant: tenant.clone(),
            id: target.id,
            version: target.version,
            identifiers: target_moved,
        }];
        for source in &sources {
            let keys = if source.data.status.is_live() { source.data.identity_keys(&self.policy) } else { Vec::new() };
            store::identities::claim(work.conn(), tenant, source.id, &keys).await?;
            let identifiers: Vec<IdentifierKey> = keys.into_iter().map(|(key, _)| key).collect();
            changes.push(CacheChange { tenant: tenant.clone(), id: source.id, version: source.version, identifiers });
        }
        for profile in std::iter::once(&target).chain(&sources) {
            let before = current[&profile.id].version;
            if !store::profiles::update(work.conn(), profile, before).await? {
                return Err(DomainError::Aborted(format!("profile {} changed during the unmerge", profile.id)));
            }
        }
        for (source, members) in &repoint {
            store::merges::point(work.conn(), tenant, members, *source).await?;
            for member in members {
                let version =
                    store::profiles::find(work.conn(), tenant, *member, false).await?.map_or(0, |p| p.version);
                changes.push(CacheChange { tenant: tenant.clone(), id: *member, version, identifiers: Vec::new() });
            }
        }

        // Consent: decisions recorded through a source's old ids go back to
        // it, and a decision about a contact point recorded since the merge
        // goes to the profile that holds the point now (a withdrawal for a
        // source's email sent to the target's id is the source's); then each
        // profile's state in force is derived again from the histories of
        // the profiles that resolve to it.
        for source in &merge.sources {
            let own: Vec<ProfileId> = cluster.iter().filter(|(_, s)| *s == source).map(|(id, _)| *id).collect();
            store::consents::give_back(work.conn(), tenant, merge.target, &own, *source).await?;
        }
        let parts: Vec<&Profile> = std::iter::once(&target).chain(&sources).collect();
        let ids: Vec<ProfileId> = parts.iter().map(|p| p.id).collect();
        let mut moves: BTreeMap<ProfileId, Vec<Uuid>> = BTreeMap::new();
        for decision in store::consents::decisions_of(work.conn(), tenant, &ids).await? {
            let Some(point) = decision.contact_point.as_ref().filter(|_| decision.recorded_at >= merge.at) else {
                continue;
            };
            let holds = |p: &&&Profile| p.data.holds(point, &self.policy);
            if parts.iter().any(|p| p.id == decision.profile_id && holds(&p)) {
                continue;
            }
            if let Some(holder) = parts.iter().find(holds) {
                moves.entry(holder.id).or_default().push(decision.id);
            }
        }
        for (holder, decisions) in &moves {
            store::consents::hand_over(work.conn(), tenant, decisions, *holder).await?;
        }
        for profile in std::iter::once(merge.target).chain(merge.sources.iter().copied()) {
            self.derive_consents(&mut work, caller, profile).await?;
        }

        for source in &sources {
            work.record(events::profile_unmerged(tenant, merge.target, source.id, reason, now));
            let changed = current[&source.id].data.diff(&source.data);
            work.record(events::profile_updated(source, &changed, caller.subject()));
        }
        let changed = target_now.data.diff(&target.data);
        if !changed.is_empty() {
            work.record(events::profile_updated(&target, &changed, caller.subject()));
        }
        store::merges::mark_undone(work.conn(), tenant, id, caller.subject(), now).await?;
        let members = std::iter::once(&target).chain(&sources).map(|p| p.id.to_string()).collect();
        work.audit(Audit::write(caller, "profile.unmerge", "profile", members));
        for change in changes {
            work.invalidate(change);
        }
        work.commit().await?;
        let target_view = self.viewer.one(caller, &target).await?;
        let mut source_views = Vec::with_capacity(sources.len());
        for source in &sources {
            source_views.push(self.viewer.one(caller, source).await?);
        }
        Ok(Unmerged { merge_id: id, target: target_view, sources: source_views })
    }

    /// What the other merges into `merge`'s target brought, from their
    /// records: the later ones that stand, and the earlier ones undone
    /// after `merge` was made. Merges into one target are ordered by the
    /// target's version before each (they lock it, so versions follow the
    /// real order whatever the instances' clocks say); `version` is the
    /// target's before `merge`.
    async fn other_merges(
        &self,
        work: &UnitOfWork,
        tenant: &crate::domain::TenantId,
        merge: &MergeRecord,
        version: i64,
    ) -> Result<OtherMerges, DomainError> {
        let mut others = OtherMerges::default();
        for other in store::merges::history(work.conn(), tenant, merge.target).await? {
            if other.target != merge.target || other.id == merge.id {
                continue;
            }
            let Some(stored) = store::merges::find(work.conn(), tenant, other.id, false).await? else { continue };
            let Some(had) = stored.before.iter().find(|p| p.id == other.target) else { continue };
            let later = had.version > version;
            // Undone after this merge was made: by the clock, the one
            // record of when an unmerge happened.
            let withdrawn = !later && other.undone.as_ref().is_some_and(|(at, _)| *at > merge.at);
            if (later && other.undone.is_some()) || (!later && !withdrawn) {
                continue;
            }
            let had = had.data.clone();
            let sources = stored.before.into_iter().filter(|p| p.id != other.target).map(|p| p.data).collect();
            if later {
                others.later.extend::<Vec<_>>(sources);
            } else {
                others.withdrawn.push((had, sources));
            }
        }
        Ok(others)
    }

    /// Derives `profile`'s consent in force again from the histories of it
    /// and of every profile merged into it (per purpose and contact point,
    /// the latest decision by captured time, ties to the more restrictive),
    /// publishing `ConsentUpdatedEvent` where the state changed.
    async fn derive_consents(
        &self,
        work: &mut UnitOfWork,
        caller: &Caller,
        profile: ProfileId,
    ) -> Result<(), DomainError> {
        let tenant = caller.tenant();
        let mut members = store::merges::merged_into(work.conn(), tenant, profile).await?;
        members.push(profile);
        let mut in_force: BTreeMap<_, ConsentDecision> = BTreeMap::new();
        for decision in store::consents::decisions_of(work.conn(), tenant, &members).await? {
            let key = (decision.purpose, decision.contact_point.clone());
            if in_force.get(&key).is_none_or(|current| supersedes(&decision, current)) {
                in_force.insert(key, ConsentDecision { profile_id: profile, ..decision });
            }
        }
        let previous: BTreeMap<_, ConsentDecision> = store::consents::all_in_force(work.conn(), tenant, profile)
            .await?
            .into_iter()
            .map(|d| ((d.purpose, d.contact_point.clone()), d))
            .collect();
        store::consents::clear_in_force(work.conn(), tenant, profile).await?;
        let winners: Vec<&ConsentDecision> = in_force.values().collect();
        store::consents::put_in_force(work.conn(), tenant, &winners).await?;
        for (key, decision) in &in_force {
            let before = previous.get(key);
            if before.is_none_or(|before| before.id != decision.id && !same_state(before, decision)) {
                work.record(events::consent_updated(tenant, decision, before.map(|d| d.status), caller.subject()));
            }
        }
        Ok(())
    }
}
