//! The stewards' review queue (docs/identity-resolution.md): the pairs a
//! deduplication scored between the tenant's thresholds, and a steward's
//! decision on each. An approval merges through [`Profiles::merge`], so
//! every rule of a merge holds; a rejection is remembered by every later run.

use tracing::instrument;

use super::{MergeRequest, Merged, Profiles, parse_id};
use crate::{
    auth::{Caller, Permission},
    domain::{
        DomainError, ProfileId,
        merge::MergeReason,
        page::PageTokens,
        review::{CandidateStatus, MatchCandidate, key_bytes, key_of},
    },
    store,
};

/// A page of the queue, and the token of the next (empty on the last).
#[derive(Debug, Clone)]
pub struct CandidatePage {
    /// Highest probability first.
    pub candidates: Vec<MatchCandidate>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// What a steward's decision did.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The pair as decided.
    pub candidate: MatchCandidate,
    /// The merge an approval made.
    pub merged: Option<Merged>,
}

impl Profiles {
    /// The pending pairs of the caller's tenant (of `profile` only, when not
    /// empty), highest probability first.
    #[instrument(skip_all, fields(tenant = %caller.tenant()))]
    pub async fn merge_candidates(
        &self,
        caller: &Caller,
        profile: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<CandidatePage, DomainError> {
        caller.require(Permission::MergeProfiles)?;
        let profile = if profile.is_empty() { None } else { Some(self.live_id(caller, profile).await?) };
        let query = format!("merge-candidates:{}", profile.map(|p| p.to_string()).unwrap_or_default());
        let page = PageTokens::request_keyed::<40>(&self.pages, page_size, page_token, caller.tenant(), query)?;
        let after = page.after.as_ref().map(key_of);
        let mut candidates =
            store::matching::pending_page(self.store.db(), caller.tenant(), profile, after, page.size + 1).await?;
        let more = candidates.len() as u64 > page.size;
        candidates.truncate(page.size as usize);
        let next_page_token = match candidates.last() {
            Some(last) if more => page.next_token(key_bytes((last.probability, last.left, last.right))),
            _ => String::new(),
        };
        Ok(CandidatePage { candidates, next_page_token })
    }

    /// A steward's decision on the pending pair `a`, `b` (either order):
    /// approved (`Some(true)`), it merges (the older profile survives,
    /// reason MANUAL); rejected, it is remembered; `None` is no decision.
    /// FAILED_PRECONDITION when the pair was decided already or a profile
    /// of it is no longer live.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), approve))]
    pub async fn decide_candidate(
        &self,
        caller: &Caller,
        a: &str,
        b: &str,
        approve: Option<bool>,
    ) -> Result<Decided, DomainError> {
        caller.require(Permission::MergeProfiles)?;
        let approve = approve.ok_or_else(|| {
            DomainError::invalid("decision", "required: MERGE_DECISION_APPROVE or MERGE_DECISION_REJECT")
        })?;
        let (a, b) = (parse_id("left_id", a)?, parse_id("right_id", b)?);
        if a == b {
            return Err(DomainError::invalid("right_id", "names the same profile as left_id"));
        }
        let (left, right) = if a < b { (a, b) } else { (b, a) };
        let tenant = caller.tenant();
        let not_found = || DomainError::NotFound { resource: "merge candidate", id: format!("{left}/{right}") };
        let found = store::matching::find_candidate(self.store.db(), tenant, left, right).await?;
        let candidate = found.ok_or_else(not_found)?;
        if let Some((at, by)) = &candidate.decided {
            return Err(DomainError::FailedPrecondition(format!(
                "the pair was decided already: {} at {at} by {by}",
                candidate.status.as_str()
            )));
        }
        let status = if approve { CandidateStatus::Approved } else { CandidateStatus::Rejected };
        let now = crate::domain::profile::now();
        let merged = if approve {
            // The pair is marked APPROVED in the merge's own transaction, on
            // the profiles it locked: a merge refused (a profile merged or
            // deleted since) leaves it pending, and of two stewards deciding
            // at once one wins.
            let request = MergeRequest {
                target: left.to_string(),
                sources: vec![right.to_string()],
                reason: Some(MergeReason::Manual),
                approves: Some((left, right)),
                ..Default::default()
            };
            Some(self.merge(caller, request).await?)
        } else {
            if !store::matching::decide(self.store.db(), tenant, left, right, status, caller.subject(), now).await? {
                return Err(decided_meanwhile());
            }
            None
        };
        tracing::info!(%left, %right, decision = status.as_str(), by = caller.subject(), "merge candidate decided");
        let decided = store::matching::find_candidate(self.store.db(), tenant, left, right).await?;
        let candidate = decided.unwrap_or(MatchCandidate {
            status,
            decided: Some((now, caller.subject().to_owned())),
            ..candidate
        });
        Ok(Decided { candidate, merged })
    }

    /// The live profile `raw` names (a merged id answers for its target).
    async fn live_id(&self, caller: &Caller, raw: &str) -> Result<ProfileId, DomainError> {
        let id = parse_id("profile_id", raw)?;
        let stored =
            self.identity.stored(caller.tenant(), id).await?.ok_or_else(|| DomainError::profile_not_found(id))?;
        let (profile, _) = self.identity.follow(caller.tenant(), stored).await?;
        Ok(profile.id)
    }
}

/// The answer to a decision on a pair another steward decided first.
pub(super) fn decided_meanwhile() -> DomainError {
    DomainError::FailedPrecondition("the pair is no longer pending: decided meanwhile".into())
}
