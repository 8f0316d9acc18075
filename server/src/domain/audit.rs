//! Audit records and their hash chain.
//!
//! Every write, and every response that carried unmasked personal data,
//! leaves a record: who (subject, roles), tenant, action, resources, when,
//! the request id and the field classes revealed. Records are chained per
//! tenant: each has a position (`seq`) and `hash = SHA-256(prev_hash ‖
//! canonical record)`, so changing, deleting or reordering a record breaks
//! the chain at that point, and [`verify`] names the first broken link.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::TenantId;

/// The hash before a tenant's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Most resource ids one record names; a coalesced read that reaches it
/// starts another record.
pub const MAX_RESOURCE_IDS: usize = 1000;

/// One audit record, as written (before it is chained).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// UUID v7: written order.
    pub id: Uuid,
    /// The tenant whose data was touched.
    pub tenant: TenantId,
    /// When (the first of coalesced reads).
    pub occurred_at: DateTime<Utc>,
    /// The last of coalesced reads (`occurred_at` otherwise).
    pub last_at: DateTime<Utc>,
    /// The token's subject, or `system:<command>` for the system principal.
    pub subject: String,
    /// The caller's roles.
    pub roles: Vec<String>,
    /// What was done, e.g. `profile.update`, `profile.read`.
    pub action: String,
    /// What kind of resource, e.g. `profile`, `tenant_settings`.
    pub resource_type: String,
    /// Which resources (at most [`MAX_RESOURCE_IDS`]).
    pub resource_ids: Vec<String>,
    /// How many operations this record stands for (coalesced reads).
    pub count: i64,
    /// The request id (the first request's, for coalesced reads).
    pub request_id: String,
    /// Field classes revealed unmasked, by name.
    pub revealed: Vec<String>,
}

/// A record with its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainedRecord {
    /// The record.
    pub record: AuditRecord,
    /// Position in the tenant's chain, from 1; `None` while not yet chained.
    pub seq: Option<i64>,
    /// The previous record's hash (or [`GENESIS`]).
    pub prev_hash: Option<String>,
    /// This record's hash.
    pub hash: Option<String>,
}

/// The fields a hash covers, in a fixed order and format.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    id: String,
    tenant: &'a str,
    occurred_at: String,
    last_at: String,
    subject: &'a str,
    roles: &'a [String],
    action: &'a str,
    resource_type: &'a str,
    resource_ids: &'a [String],
    count: i64,
    request_id: &'a str,
    revealed: &'a [String],
}

/// The hash of `record` at position `seq` after `prev_hash`.
pub fn link_hash(prev_hash: &str, seq: i64, record: &AuditRecord) -> String {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let canonical = Canonical {
        seq,
        id: record.id.to_string(),
        tenant: record.tenant.as_str(),
        occurred_at: time(record.occurred_at),
        last_at: time(record.last_at),
        subject: &record.subject,
        roles: &record.roles,
        action: &record.action,
        resource_type: &record.resource_type,
        resource_ids: &record.resource_ids,
        count: record.count,
        request_id: &record.request_id,
        revealed: &record.revealed,
    };
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(serde_json::to_vec(&canonical).unwrap_or_default());
    hex::encode(hasher.finalize())
}

/// What a chain walk found wrong first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The record at `seq` does not hash to its stored hash: it was changed.
    Altered {
        /// Its position.
        seq: i64,
        /// Its id.
        id: Uuid,
    },
    /// The record at `seq` does not follow the one before it: a record was
    /// removed or the order changed.
    Unlinked {
        /// Its position.
        seq: i64,
        /// Its id.
        id: Uuid,
        /// The position expected there.
        expected_seq: i64,
    },
    /// The chain ends before its recorded head: records at the end were removed.
    Truncated {
        /// The last position found.
        last_seq: i64,
        /// The head's position.
        head_seq: i64,
    },
    /// A record written more than the grace period ago is still not chained.
    Unchained {
        /// Its id.
        id: Uuid,
        /// When it was written.
        occurred_at: DateTime<Utc>,
    },
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Altered { seq, id } => write!(f, "record {seq} ({id}) was altered: its hash does not match"),
            Self::Unlinked { seq, id, expected_seq } => write!(
                f,
                "record {seq} ({id}) does not follow the record before it (expected position {expected_seq}): \
                 a record was removed or reordered"
            ),
            Self::Truncated { last_seq, head_seq } => {
                write!(f, "the chain ends at {last_seq} but its head is at {head_seq}: records were removed")
            }
            Self::Unchained { id, occurred_at } => write!(f, "record {id} written at {occurred_at} is not chained"),
        }
    }
}

/// Walks chained records in stored position order, from the oldest kept.
/// `anchor` is where the kept chain starts: the position pruned through and,
/// for a chain never pruned, [`GENESIS`]; for a pruned one the first kept
/// record's own `prev_hash` is trusted.
pub struct ChainWalk {
    expected_seq: i64,
    prev_hash: Option<String>,
    /// Records checked.
    pub checked: u64,
}

impl ChainWalk {
    /// A walk of a chain pruned through `pruned_through` (0: never pruned).
    pub fn new(pruned_through: i64) -> Self {
        let prev_hash = (pruned_through == 0).then(|| GENESIS.to_owned());
        Self { expected_seq: pruned_through + 1, prev_hash, checked: 0 }
    }

    /// Checks the next record; the first problem ends the walk.
    pub fn check(&mut self, record: &ChainedRecord) -> Result<(), Break> {
        let id = record.record.id;
        let (Some(seq), Some(prev), Some(hash)) = (record.seq, &record.prev_hash, &record.hash) else {
            return Err(Break::Unchained { id, occurred_at: record.record.occurred_at });
        };
        let linked = seq == self.expected_seq && self.prev_hash.as_ref().is_none_or(|expected| expected == prev);
        if !linked {
            return Err(Break::Unlinked { seq, id, expected_seq: self.expected_seq });
        }
        if link_hash(prev, seq, &record.record) != *hash {
            return Err(Break::Altered { seq, id });
        }
        self.expected_seq = seq + 1;
        self.prev_hash = Some(hash.clone());
        self.checked += 1;
        Ok(())
    }

    /// Checks that the walk reached the recorded head.
    pub fn finish(&self, head_seq: i64) -> Result<(), Break> {
        let last_seq = self.expected_seq - 1;
        if last_seq < head_seq { Err(Break::Truncated { last_seq, head_seq }) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> AuditRecord {
        let at = DateTime::<Utc>::from_timestamp(1_764_000_000 + i64::from(n), 0).expect("time");
        AuditRecord {
            id: Uuid::now_v7(),
            tenant: TenantId::parse("acme").expect("tenant"),
            occurred_at: at,
            last_at: at,
            subject: format!("user-{n}"),
            roles: vec!["agent".into()],
            action: "profile.update".into(),
            resource_type: "profile".into(),
            resource_ids: vec![format!("p{n}")],
            count: 1,
            request_id: format!("r{n}"),
            revealed: vec![],
        }
    }

    fn chain(n: u32) -> Vec<ChainedRecord> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|i| {
                let record = record(i);
                let hash = link_hash(&prev, i64::from(i), &record);
                let chained = ChainedRecord {
                    record,
                    seq: Some(i64::from(i)),
                    prev_hash: Some(prev.clone()),
                    hash: Some(hash.clone()),
                };
                prev = hash;
                chained
            })
            .collect()
    }

    fn walk(records: &[ChainedRecord], pruned: i64, head: i64) -> Result<u64, Break> {
        let mut walk = ChainWalk::new(pruned);
        for r in records {
            walk.check(r)?;
        }
        walk.finish(head)?;
        Ok(walk.checked)
    }

    #[test]
    fn an_intact_chain_verifies_and_any_tampering_is_named() {
        let good = chain(5);
        assert_eq!(walk(&good, 0, 5), Ok(5));

        let mut edited = good.clone();
        edited[2].record.subject = "someone-else".into();
        assert!(matches!(walk(&edited, 0, 5), Err(Break::Altered { seq: 3, .. })));

        let mut deleted = good.clone();
        deleted.remove(1);
        assert!(matches!(walk(&deleted, 0, 5), Err(Break::Unlinked { seq: 3, expected_seq: 2, .. })));

        let mut reordered = good.clone();
        reordered.swap(1, 2);
        assert!(matches!(walk(&reordered, 0, 5), Err(Break::Unlinked { seq: 3, expected_seq: 2, .. })));

        // Swapping positions too still breaks the links.
        let mut renumbered = good.clone();
        renumbered.swap(1, 2);
        renumbered[1].seq = Some(2);
        renumbered[2].seq = Some(3);
        assert!(walk(&renumbered, 0, 5).is_err());

        assert!(matches!(walk(&good[..4], 0, 5), Err(Break::Truncated { last_seq: 4, head_seq: 5 })));
        // Pruned through 2: the walk starts at 3 and trusts its link.
        assert_eq!(walk(&good[2..], 2, 5), Ok(3));
        assert!(matches!(walk(&good[3..], 2, 5), Err(Break::Unlinked { seq: 4, expected_seq: 3, .. })));
    }
}
