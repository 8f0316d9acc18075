//! `c360.v1.IdentityService`: merges, their previews, history and unmerges;
//! bulk deduplication jobs; the stewards' review queue; pairs explained and
//! partial records resolved one at a time.

use c360_matching::model::Decision;
use c360_proto::v1::{self as pb, identity_service_server::IdentityService};
use tonic::{Request, Response, Status};

use super::auth::caller;
use crate::{
    convert::timestamp,
    domain::{
        job::{Job, JobProgress, JobState},
        merge::{FieldDecision, MergeReason, MergeRecord},
        review::{CandidateStatus, MatchCandidate},
    },
    service::{CandidatePage, Decided, Jobs, MatchExplanation, MergeRequest, Merged, Profiles, Resolved, Unmerged},
};

/// The gRPC face of the merge operations of [`Profiles`] and of [`Jobs`].
pub struct IdentityApi {
    profiles: Profiles,
    jobs: Jobs,
}

impl IdentityApi {
    /// Serves `profiles`' merges and `jobs`.
    pub fn new(profiles: Profiles, jobs: Jobs) -> Self {
        Self { profiles, jobs }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn merge_profiles(&self, request: Request<pb::MergeProfilesRequest>) -> Reply<pb::MergeProfilesResponse> {
        let caller = caller(&request)?;
        let pb::MergeProfilesRequest { target_id, source_ids, reason, overrides, etags } = request.into_inner();
        let request = MergeRequest {
            target: target_id,
            sources: source_ids,
            reason: reason_from_pb(reason),
            overrides: overrides.into_iter().collect(),
            etags: etags.into_iter().collect(),
            approves: None,
        };
        let Merged { merge_id, view, decisions } = self.profiles.merge(&caller, request).await?;
        Ok(Response::new(pb::MergeProfilesResponse {
            merge_id: merge_id.map(|id| id.to_string()).unwrap_or_default(),
            profile: Some(view.into()),
            decisions: decisions.iter().map(decision_to_pb).collect(),
        }))
    }

    async fn preview_merge(&self, request: Request<pb::PreviewMergeRequest>) -> Reply<pb::PreviewMergeResponse> {
        let caller = caller(&request)?;
        let pb::PreviewMergeRequest { target_id, source_ids, overrides } = request.into_inner();
        let request = MergeRequest {
            target: target_id,
            sources: source_ids,
            overrides: overrides.into_iter().collect(),
            ..MergeRequest::default()
        };
        let Merged { view, decisions, .. } = self.profiles.preview_merge(&caller, request).await?;
        Ok(Response::new(pb::PreviewMergeResponse {
            profile: Some(view.into()),
            decisions: decisions.iter().map(decision_to_pb).collect(),
        }))
    }

    async fn list_merge_history(
        &self,
        request: Request<pb::ListMergeHistoryRequest>,
    ) -> Reply<pb::ListMergeHistoryResponse> {
        let caller = caller(&request)?;
        let merges = self.profiles.merge_history(&caller, &request.get_ref().profile_id).await?;
        Ok(Response::new(pb::ListMergeHistoryResponse { merges: merges.iter().map(merge_to_pb).collect() }))
    }

    async fn unmerge_profile(&self, request: Request<pb::UnmergeProfileRequest>) -> Reply<pb::UnmergeProfileResponse> {
        let caller = caller(&request)?;
        let pb::UnmergeProfileRequest { merge_id, reason } = request.get_ref();
        let Unmerged { merge_id, target, sources } = self.profiles.unmerge(&caller, merge_id, reason).await?;
        Ok(Response::new(pb::UnmergeProfileResponse {
            merge_id: merge_id.to_string(),
            target: Some(target.into()),
            sources: sources.into_iter().map(Into::into).collect(),
        }))
    }

    async fn start_deduplication(
        &self,
        request: Request<pb::StartDeduplicationRequest>,
    ) -> Reply<pb::StartDeduplicationResponse> {
        let caller = caller(&request)?;
        let job = self.jobs.start_deduplication(&caller, request.get_ref().dry_run).await?;
        Ok(Response::new(pb::StartDeduplicationResponse { job: Some(job_to_pb(job)) }))
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Reply<pb::GetJobResponse> {
        let caller = caller(&request)?;
        let job = self.jobs.get(&caller, &request.get_ref().job_id).await?;
        Ok(Response::new(pb::GetJobResponse { job: Some(job_to_pb(job)) }))
    }

    async fn cancel_job(&self, request: Request<pb::CancelJobRequest>) -> Reply<pb::CancelJobResponse> {
        let caller = caller(&request)?;
        let job = self.jobs.cancel(&caller, &request.get_ref().job_id).await?;
        Ok(Response::new(pb::CancelJobResponse { job: Some(job_to_pb(job)) }))
    }

    async fn list_merge_candidates(
        &self,
        request: Request<pb::ListMergeCandidatesRequest>,
    ) -> Reply<pb::ListMergeCandidatesResponse> {
        let caller = caller(&request)?;
        let pb::ListMergeCandidatesRequest { profile_id, page_size, page_token } = request.get_ref();
        let CandidatePage { candidates, next_page_token } =
            self.profiles.merge_candidates(&caller, profile_id, *page_size, page_token).await?;
        Ok(Response::new(pb::ListMergeCandidatesResponse {
            candidates: candidates.iter().map(candidate_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn decide_merge_candidate(
        &self,
        request: Request<pb::DecideMergeCandidateRequest>,
    ) -> Reply<pb::DecideMergeCandidateResponse> {
        let caller = caller(&request)?;
        let pb::DecideMergeCandidateRequest { left_id, right_id, decision } = request.get_ref();
        let approve = match pb::MergeDecision::try_from(*decision) {
            Ok(pb::MergeDecision::Approve) => Some(true),
            Ok(pb::MergeDecision::Reject) => Some(false),
            _ => None,
        };
        let Decided { candidate, merged } = self.profiles.decide_candidate(&caller, left_id, right_id, approve).await?;
        Ok(Response::new(pb::DecideMergeCandidateResponse {
            candidate: Some(candidate_to_pb(&candidate)),
            merge_id: merged.as_ref().and_then(|m| m.merge_id).map(|id| id.to_string()).unwrap_or_default(),
            profile: merged.map(|m| m.view.into()),
        }))
    }

    async fn explain_match(&self, request: Request<pb::ExplainMatchRequest>) -> Reply<pb::ExplainMatchResponse> {
        let caller = caller(&request)?;
        let pb::ExplainMatchRequest { profile_id, other_profile_id } = request.get_ref();
        let MatchExplanation { profiles: [profile, other], explanation, candidate, notes, counted_at } =
            self.profiles.explain_match(&caller, profile_id, other_profile_id).await?;
        Ok(Response::new(pb::ExplainMatchResponse {
            profile: Some(profile.into()),
            other_profile: Some(other.into()),
            fields: explanation
                .fields
                .into_iter()
                .map(|f| pb::MatchEvidence {
                    field: f.field,
                    value: f.left,
                    other_value: f.right,
                    level: f.level.unwrap_or_default(),
                    weight: f.weight,
                    term_frequency_adjustment: f.term_frequency_adjustment,
                })
                .collect(),
            prior_weight: explanation.prior_weight,
            total_weight: explanation.total_weight,
            confidence: explanation.probability,
            auto_threshold: explanation.thresholds.auto,
            review_threshold: explanation.thresholds.review,
            decision: match_decision_to_pb(explanation.decision) as i32,
            model_version: explanation.model_version,
            candidate: candidate.as_ref().map(candidate_to_pb),
            notes,
            frequencies_count_time: counted_at.map(timestamp),
        }))
    }

    async fn resolve_identity(
        &self,
        request: Request<pb::ResolveIdentityRequest>,
    ) -> Reply<pb::ResolveIdentityResponse> {
        let caller = caller(&request)?;
        let pb::ResolveIdentityRequest { record, page_size, min_confidence } = request.into_inner();
        // A missing record is an empty one: refused by validation, after the role check.
        let record = record.unwrap_or_default();
        let Resolved { candidates, model_version } =
            self.profiles.resolve_identity(&caller, record.into(), page_size, min_confidence).await?;
        Ok(Response::new(pb::ResolveIdentityResponse {
            candidates: candidates
                .into_iter()
                .map(|c| pb::ResolvedCandidate {
                    profile: Some(c.profile.into()),
                    confidence: c.confidence,
                    decision: match_decision_to_pb(c.decision) as i32,
                })
                .collect(),
            model_version,
        }))
    }
}

fn match_decision_to_pb(decision: Decision) -> pb::MatchDecision {
    match decision {
        Decision::Match => pb::MatchDecision::Match,
        Decision::Review => pb::MatchDecision::Review,
        Decision::NonMatch => pb::MatchDecision::NonMatch,
    }
}

fn candidate_to_pb(candidate: &MatchCandidate) -> pb::MergeCandidate {
    let status = match candidate.status {
        CandidateStatus::Pending => pb::MergeCandidateStatus::Pending,
        CandidateStatus::Approved => pb::MergeCandidateStatus::Approved,
        CandidateStatus::Rejected => pb::MergeCandidateStatus::Rejected,
    };
    pb::MergeCandidate {
        left_id: candidate.left.to_string(),
        right_id: candidate.right.to_string(),
        confidence: candidate.probability,
        model_version: candidate.model_version,
        status: status as i32,
        create_time: Some(timestamp(candidate.created_at)),
        decide_time: candidate.decided.as_ref().map(|(at, _)| timestamp(*at)),
        decided_by: candidate.decided.as_ref().map(|(_, by)| by.clone()).unwrap_or_default(),
    }
}

fn job_to_pb(job: Job) -> pb::Job {
    let state = match job.state {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    };
    let JobProgress {
        step,
        processed,
        total,
        candidate_pairs,
        clusters,
        merges,
        merges_refused,
        review_pairs,
        model_version,
    } = job.progress;
    pb::Job {
        job_id: job.id.to_string(),
        kind: job.kind.as_str().to_owned(),
        state: state as i32,
        dry_run: job.options.dry_run,
        requested_by: job.requested_by,
        create_time: Some(timestamp(job.created_at)),
        start_time: job.started_at.map(timestamp),
        finish_time: job.finished_at.map(timestamp),
        progress: Some(pb::JobProgress {
            step,
            processed,
            total,
            candidate_pairs,
            clusters,
            merges,
            merges_refused,
            review_pairs,
            model_version,
        }),
        error: job.error.unwrap_or_default(),
        cancel_requested: job.cancel_requested,
    }
}

fn reason_from_pb(raw: i32) -> Option<MergeReason> {
    match pb::MergeReason::try_from(raw).ok()? {
        pb::MergeReason::Duplicate => Some(MergeReason::Duplicate),
        pb::MergeReason::Manual => Some(MergeReason::Manual),
        pb::MergeReason::AutoMatch => Some(MergeReason::AutoMatch),
        pb::MergeReason::Unspecified => None,
    }
}

fn reason_to_pb(reason: MergeReason) -> pb::MergeReason {
    match reason {
        MergeReason::Duplicate => pb::MergeReason::Duplicate,
        MergeReason::Manual => pb::MergeReason::Manual,
        MergeReason::AutoMatch => pb::MergeReason::AutoMatch,
    }
}

fn decision_to_pb(decision: &FieldDecision) -> pb::SurvivorshipDecision {
    pb::SurvivorshipDecision {
        field: decision.field.clone(),
        profile_id: decision.from.to_string(),
        rule: decision.rule.as_str().to_owned(),
    }
}

fn merge_to_pb(merge: &MergeRecord) -> pb::Merge {
    pb::Merge {
        merge_id: merge.id.to_string(),
        target_id: merge.target.to_string(),
        source_ids: merge.sources.iter().map(ToString::to_string).collect(),
        reason: reason_to_pb(merge.reason) as i32,
        actor: merge.actor.clone(),
        merge_time: Some(timestamp(merge.at)),
        decisions: merge.decisions.iter().map(decision_to_pb).collect(),
        undo_time: merge.undone.as_ref().map(|(at, _)| timestamp(*at)),
        undone_by: merge.undone.as_ref().map(|(_, by)| by.clone()).unwrap_or_default(),
    }
}
