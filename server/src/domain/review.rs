//! The stewards' review queue: pairs of profiles the matching engine scored
//! between a tenant's review and auto thresholds, and what a steward decided
//! about each (docs/identity-resolution.md).

use chrono::{DateTime, Utc};

use super::ProfileId;

/// Where a pair stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateStatus {
    /// Waiting for a steward.
    Pending,
    /// A steward merged the pair.
    Approved,
    /// A steward said the two are not one person: never proposed or merged again.
    Rejected,
}

impl CandidateStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Rejected].into_iter().find(|s| s.as_str() == raw)
    }
}

/// A pair of profiles that may be one person.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchCandidate {
    /// The smaller id of the pair (the older profile).
    pub left: ProfileId,
    /// The other.
    pub right: ProfileId,
    /// The match probability the model gave the pair.
    pub probability: f64,
    /// The model version that scored it.
    pub model_version: u32,
    /// Where it stands.
    pub status: CandidateStatus,
    /// When it was first proposed.
    pub created_at: DateTime<Utc>,
    /// When it was decided, and by whom; `None` while pending.
    pub decided: Option<(DateTime<Utc>, String)>,
}

/// Where a page of the queue ended: the queue runs by probability, highest
/// first, then by the pair's ids.
pub type QueueKey = (f64, ProfileId, ProfileId);

/// A queue position as the bytes of a page token: the probability's bits
/// (non-negative floats order as their bits do), then both ids.
pub fn key_bytes((probability, left, right): QueueKey) -> [u8; 40] {
    let mut bytes = [0; 40];
    bytes[..8].copy_from_slice(&probability.to_bits().to_be_bytes());
    bytes[8..24].copy_from_slice(left.as_uuid().as_bytes());
    bytes[24..].copy_from_slice(right.as_uuid().as_bytes());
    bytes
}

/// The queue position of a page token's bytes.
pub fn key_of(bytes: &[u8; 40]) -> QueueKey {
    let mut bits = [0; 8];
    bits.copy_from_slice(&bytes[..8]);
    let id = |at: usize| {
        let mut raw = [0; 16];
        raw.copy_from_slice(&bytes[at..at + 16]);
        ProfileId::from(uuid::Uuid::from_bytes(raw))
    };
    (f64::from_bits(u64::from_be_bytes(bits)), id(8), id(24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_position_round_trips_through_its_bytes() {
        let key = (0.9375, ProfileId::generate(), ProfileId::generate());
        assert_eq!(key_of(&key_bytes(key)), key);
        for status in [CandidateStatus::Pending, CandidateStatus::Approved, CandidateStatus::Rejected] {
            assert_eq!(CandidateStatus::parse(status.as_str()), Some(status));
        }
    }
}
