//! Background jobs: work that outlives the request that started it (a
//! tenant's bulk deduplication today), its state and its progress.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::TenantId;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// Find a tenant's duplicate people; merge the clusters found at the
    /// auto threshold and queue the pairs between the thresholds for review.
    Deduplication,
}

impl JobKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deduplication => "DEDUPLICATION",
        }
    }

    /// The kind stored as `raw`.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw == "DEDUPLICATION").then_some(Self::Deduplication)
    }
}

/// Where a job is in its life. QUEUED → RUNNING → one of the final three;
/// a queued job may be cancelled before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for an instance to take it.
    Queued,
    /// An instance runs it (and holds its lease).
    Running,
    /// Done.
    Succeeded,
    /// Stopped by an error (the job says which).
    Failed,
    /// Stopped because a caller asked.
    Cancelled,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// The state stored as `raw`.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "QUEUED" => Self::Queued,
            "RUNNING" => Self::Running,
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            "CANCELLED" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// What a job was asked to do beyond its kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobOptions {
    /// Find and score only; merge nothing, queue nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Blocks with more profiles than this make no pairs (the runner's
    /// default when unset), so whoever takes a job over runs it as asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_block: Option<u32>,
    /// Most profiles one automatic merge may join (the runner's default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cluster: Option<u32>,
    /// Attribute keys compared besides the tenant's `match_attribute_keys`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_attributes: Vec<String>,
}

/// How far a job is. Counts only grow while it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    /// The step under way: `reading`, `training`, `scoring`, `clustering`,
    /// `merging`, `queueing`, `done`.
    #[serde(default)]
    pub step: String,
    /// Profiles read so far.
    #[serde(default)]
    pub processed: u64,
    /// Profiles to read (the tenant's live profiles when the job began).
    #[serde(default)]
    pub total: u64,
    /// Candidate pairs compared.
    #[serde(default)]
    pub candidate_pairs: u64,
    /// Clusters found at the auto threshold.
    #[serde(default)]
    pub clusters: u64,
    /// Clusters merged so far.
    #[serde(default)]
    pub merges: u64,
    /// Clusters not merged (a profile changed or was merged meanwhile).
    #[serde(default)]
    pub merges_refused: u64,
    /// Pairs between the review and auto thresholds, queued for review.
    #[serde(default)]
    pub review_pairs: u64,
    /// The version of the matching model the job estimated.
    #[serde(default)]
    pub model_version: u32,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Its id.
    pub id: Uuid,
    /// The tenant it works on.
    pub tenant: TenantId,
    /// What it does.
    pub kind: JobKind,
    /// Where it is.
    pub state: JobState,
    /// What it was asked.
    pub options: JobOptions,
    /// Who asked (a subject, or `system:<command>`).
    pub requested_by: String,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When an instance first took it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Which instance runs (or ran) it.
    pub owner: Option<String>,
    /// Whether a caller asked it to stop.
    pub cancel_requested: bool,
    /// How far it is.
    pub progress: JobProgress,
    /// Why it failed.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job's options are stored as JSON: whoever takes the job over reads
    /// the limits and attributes it was asked with, and a job stored before
    /// a field existed reads it as unset.
    #[test]
    fn job_options_round_trip_and_old_ones_read_as_unset() {
        let asked = JobOptions {
            dry_run: true,
            max_block: Some(2),
            max_cluster: Some(5),
            match_attributes: vec!["national_id".into()],
        };
        let json = serde_json::to_string(&asked).expect("encode");
        assert_eq!(serde_json::from_str::<JobOptions>(&json).expect("decode"), asked, "{json}");
        let old: JobOptions = serde_json::from_str(r#"{"dry_run":false}"#).expect("an older job");
        assert_eq!(old, JobOptions::default());
        assert_eq!(serde_json::to_string(&JobOptions::default()).expect("encode"), r#"{"dry_run":false}"#);
    }
}
