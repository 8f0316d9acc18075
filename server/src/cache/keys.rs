//! Every cache key and value encoding: the one place that knows them.
//!
//! Keys carry the encoding's schema version, so a release that changes an
//! encoding reads none of the old entries (they expire by TTL).

use crate::domain::{ProfileId, TenantId, identifiers::IdentifierKey};

/// Version of the key layout and value encodings below.
pub const SCHEMA: u32 = 2;

/// The Redis key of one profile.
pub fn profile(prefix: &str, tenant: &TenantId, id: ProfileId) -> String {
    format!("{prefix}:v{SCHEMA}:p:{tenant}:{id}")
}

/// The Redis key of one identifier's holder.
pub fn lookup(prefix: &str, tenant: &TenantId, key: &IdentifierKey) -> String {
    format!("{prefix}:v{SCHEMA}:l:{tenant}:{}:{}:{}", key.id_type.as_str(), key.namespace, key.value)
}

/// The pub/sub channel carrying invalidations between instances.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}:v{SCHEMA}:invalidate")
}

/// A profile slot in Redis: `P<version>:<encoded profile>`, `N0:` (no such
/// profile), or `T<version>:` (changed at that version; reload). The ASCII
/// header lets the compare-and-set script read the version.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileSlot {
    /// The profile, in the cache's own encoding (`codec`).
    Found(i64, Vec<u8>),
    /// No such profile (version 0).
    Missing,
    /// Invalidated at this version.
    Tombstone(i64),
}

impl ProfileSlot {
    /// The version the slot stands for.
    pub fn version(&self) -> i64 {
        match self {
            Self::Found(version, _) | Self::Tombstone(version) => *version,
            Self::Missing => 0,
        }
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Found(version, bytes) => {
                let mut out = format!("P{version}:").into_bytes();
                out.extend_from_slice(bytes);
                out
            }
            Self::Missing => b"N0:".to_vec(),
            Self::Tombstone(version) => format!("T{version}:").into_bytes(),
        }
    }

    /// Parses stored bytes; `None` for anything unrecognized (treated as a miss).
    pub fn decode(raw: &[u8]) -> Option<Self> {
        let colon = raw.iter().position(|&b| b == b':')?;
        let version: i64 = std::str::from_utf8(raw.get(1..colon)?).ok()?.parse().ok()?;
        match raw.first()? {
            b'P' => Some(Self::Found(version, raw[colon + 1..].to_vec())),
            b'N' => Some(Self::Missing),
            b'T' => Some(Self::Tombstone(version)),
            _ => None,
        }
    }
}

/// An identifier slot in Redis: `H<profile id>` (held by), `N` (held by
/// nobody), or `F` (fence: changed recently, do not cache "nobody").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupSlot {
    /// Held by this profile (verified against the profile on read).
    Holder(ProfileId),
    /// Held by nobody.
    Absent,
    /// Recently claimed or released.
    Fence,
}

impl LookupSlot {
    /// The stored bytes.
    pub fn encode(&self) -> String {
        match self {
            Self::Holder(id) => format!("H{id}"),
            Self::Absent => "N".to_owned(),
            Self::Fence => "F".to_owned(),
        }
    }

    /// Parses stored bytes.
    pub fn decode(raw: &[u8]) -> Option<Self> {
        match raw {
            b"N" => Some(Self::Absent),
            b"F" => Some(Self::Fence),
            [b'H', rest @ ..] => ProfileId::parse(std::str::from_utf8(rest).ok()?).ok().map(Self::Holder),
            _ => None,
        }
    }
}

/// One line of an invalidation message: `P\t<tenant>\t<id>\t<version>` or
/// `L\t<tenant>\t<type>\t<namespace>\t<value>` (identifier values hold no
/// tabs: control characters are refused on input).
#[derive(Debug, Clone, PartialEq)]
pub enum Invalidation {
    /// A profile changed at this version.
    Profile(TenantId, ProfileId, i64),
    /// An identifier was claimed or released.
    Lookup(TenantId, IdentifierKey),
}

impl Invalidation {
    /// The message line.
    pub fn encode(&self) -> String {
        match self {
            Self::Profile(tenant, id, version) => format!("P\t{tenant}\t{id}\t{version}"),
            Self::Lookup(tenant, key) => {
                format!("L\t{tenant}\t{}\t{}\t{}", key.id_type.as_str(), key.namespace, key.value)
            }
        }
    }

    /// Parses a message line.
    pub fn decode(line: &str) -> Option<Self> {
        let mut parts = line.split('\t');
        let kind = parts.next()?;
        let tenant = TenantId::parse(parts.next()?).ok()?;
        match kind {
            "P" => {
                let id = ProfileId::parse(parts.next()?).ok()?;
                Some(Self::Profile(tenant, id, parts.next()?.parse().ok()?))
            }
            "L" => {
                let id_type = crate::domain::identifiers::IdentifierType::parse(parts.next()?)?;
                let namespace = parts.next()?.to_owned();
                let value = parts.next()?.to_owned();
                Some(Self::Lookup(tenant, IdentifierKey { id_type, namespace, value }))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identifiers::IdentifierType;

    #[test]
    fn slots_and_messages_round_trip() {
        for slot in [ProfileSlot::Found(7, vec![0, 58, 255]), ProfileSlot::Missing, ProfileSlot::Tombstone(12)] {
            assert_eq!(ProfileSlot::decode(&slot.encode()), Some(slot));
        }
        let id = ProfileId::generate();
        for slot in [LookupSlot::Holder(id), LookupSlot::Absent, LookupSlot::Fence] {
            assert_eq!(LookupSlot::decode(slot.encode().as_bytes()), Some(slot));
        }
        let tenant = TenantId::parse("acme").expect("tenant");
        let key = IdentifierKey { id_type: IdentifierType::ExternalId, namespace: "crm".into(), value: "a:b".into() };
        for message in [Invalidation::Profile(tenant.clone(), id, 3), Invalidation::Lookup(tenant, key)] {
            assert_eq!(Invalidation::decode(&message.encode()), Some(message));
        }
        assert_eq!(ProfileSlot::decode(b"garbage"), None);
    }
}
