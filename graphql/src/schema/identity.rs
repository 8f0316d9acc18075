//! Merges and the stewards' review queue.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use c360_proto::v1 as pb;
use chrono::{DateTime, Utc};

use super::{
    customer::Customer,
    page::{self, Page},
    session,
    types::{MergeCandidateStatus, MergeReason, time},
};
use crate::errors;

/// How one field of a merged record was decided.
#[derive(SimpleObject)]
pub struct SurvivorshipDecision {
    /// The field (gRPC path: given_name, emails, attributes.tier, …).
    pub field: String,
    /// The profile whose value won.
    pub profile_id: ID,
    /// The rule that decided (SOURCE_PRIORITY, MOST_RECENT, UNION, …).
    pub rule: String,
}

/// The decisions of a merge.
pub fn decisions(decisions: &[pb::SurvivorshipDecision]) -> Vec<SurvivorshipDecision> {
    decisions
        .iter()
        .map(|d| SurvivorshipDecision {
            field: d.field.clone(),
            profile_id: ID(d.profile_id.clone()),
            rule: d.rule.clone(),
        })
        .collect()
}

/// One merge of customer records.
pub struct Merge(pub pb::Merge);

/// One merge of customer records.
#[Object]
impl Merge {
    /// The merge's id (for `unmergeCustomer`).
    async fn merge_id(&self) -> ID {
        ID(self.0.merge_id.clone())
    }

    /// The profile that survived.
    async fn target_id(&self) -> ID {
        ID(self.0.target_id.clone())
    }

    /// The profiles merged into it.
    async fn source_ids(&self) -> Vec<ID> {
        self.0.source_ids.iter().cloned().map(ID).collect()
    }

    /// Why.
    async fn reason(&self) -> Option<MergeReason> {
        MergeReason::from_proto(self.0.reason)
    }

    /// Who merged (a caller's subject, or `system:<job>`).
    async fn actor(&self) -> &str {
        &self.0.actor
    }

    /// When.
    async fn merge_time(&self) -> Option<DateTime<Utc>> {
        time(self.0.merge_time.as_ref())
    }

    /// How each field was decided.
    async fn decisions(&self) -> Vec<SurvivorshipDecision> {
        decisions(&self.0.decisions)
    }

    /// When the merge was undone; null while it stands.
    async fn undo_time(&self) -> Option<DateTime<Utc>> {
        time(self.0.undo_time.as_ref())
    }

    /// Who undid it; empty while it stands.
    async fn undone_by(&self) -> &str {
        &self.0.undone_by
    }
}

/// A pair of customers that may be one person.
pub struct MergeCandidate(pub pb::MergeCandidate);

/// A pair of customers that may be one person.
#[Object]
impl MergeCandidate {
    /// The older profile of the pair.
    async fn left_id(&self) -> ID {
        ID(self.0.left_id.clone())
    }

    /// The other profile.
    async fn right_id(&self) -> ID {
        ID(self.0.right_id.clone())
    }

    /// The older customer of the pair, as the caller may see it.
    async fn left(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(session::loaders(ctx).profiles.load_one(self.0.left_id.clone()).await?.map(Customer))
    }

    /// The other customer, as the caller may see it.
    async fn right(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(session::loaders(ctx).profiles.load_one(self.0.right_id.clone()).await?.map(Customer))
    }

    /// The match probability the model gave the pair, 0 to 1.
    async fn confidence(&self) -> f64 {
        self.0.confidence
    }

    /// The version of the matching model that scored it.
    async fn model_version(&self) -> u32 {
        self.0.model_version
    }

    /// Where the pair stands.
    async fn status(&self) -> Option<MergeCandidateStatus> {
        MergeCandidateStatus::from_proto(self.0.status)
    }

    /// When it was first proposed.
    async fn create_time(&self) -> Option<DateTime<Utc>> {
        time(self.0.create_time.as_ref())
    }

    /// When it was decided; null while pending.
    async fn decide_time(&self) -> Option<DateTime<Utc>> {
        time(self.0.decide_time.as_ref())
    }

    /// The steward who decided; empty while pending.
    async fn decided_by(&self) -> &str {
        &self.0.decided_by
    }
}

/// A page of the review queue, of one profile or of the tenant.
pub async fn candidates(
    ctx: &Context<'_>,
    profile_id: Option<String>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<page::Connection<MergeCandidate>> {
    let session = session::of(ctx);
    page::forward(ctx, first, after, |page: Page| async move {
        let request = session.request(pb::ListMergeCandidatesRequest {
            profile_id: profile_id.unwrap_or_default(),
            page_size: page.size,
            page_token: page.token,
        });
        let response =
            session.identity().list_merge_candidates(request).await.map_err(|s| errors::upstream(&s))?.into_inner();
        Ok((response.candidates.into_iter().map(MergeCandidate).collect(), response.next_page_token))
    })
    .await
}
