//! Every cache key and value encoding: the one place that knows them.
//!
//! Keys carry the encoding's schema version, so a release that changes an
//! encoding reads none of the old entries (they expire by TTL).
//!
//! No email address or phone number leaves the process in the clear: the
//! Redis key of an identifier's holder, and the invalidation messages naming
//! it, carry a keyed hash of it ([`IdentifierHasher`], HMAC-SHA-256 with the
//! deployment's cache key), never the identifier itself.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{ProfileId, TenantId, identifiers::IdentifierKey};

/// Version of the key layout and value encodings below.
pub const SCHEMA: u32 = 3;

/// A keyed hash of one identifier of one tenant: what names it outside the
/// process (hex, 128 bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LookupDigest(String);

impl LookupDigest {
    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Hashes identifiers with the deployment's cache key, and during a key
/// rotation with the previous key as well (writers fence both names, so an
/// instance still on the previous key never serves a stale holder).
#[derive(Clone)]
pub struct IdentifierHasher {
    current: Hmac<Sha256>,
    previous: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for IdentifierHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentifierHasher").field("rotating", &self.previous.is_some()).finish_non_exhaustive()
    }
}

impl IdentifierHasher {
    /// Hashes with `current`, and also with `previous` while rotating.
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> Self {
        let mac =
            |key: &[u8]| Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        Self { current: mac(current), previous: previous.map(mac) }
    }

    /// A key of this process alone: enough when nothing leaves it (no Redis).
    pub fn ephemeral() -> Self {
        let key: [u8; 32] = rand::random();
        Self::new(&key, None)
    }

    /// The keyed hash of `parts`, each followed by a separator no part can
    /// contain (control characters are refused in identifiers, tenants and
    /// token subjects).
    fn digest_parts(mac: &Hmac<Sha256>, parts: &[&str]) -> LookupDigest {
        let mut mac = mac.clone();
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(b"\x1f");
        }
        LookupDigest(hex::encode(&mac.finalize().into_bytes()[..16]))
    }

    fn digest_with(mac: &Hmac<Sha256>, tenant: &TenantId, key: &IdentifierKey) -> LookupDigest {
        Self::digest_parts(mac, &[tenant.as_str(), key.id_type.as_str(), &key.namespace, &key.value])
    }

    /// The name of `key` of `tenant` under the current cache key.
    pub fn digest(&self, tenant: &TenantId, key: &IdentifierKey) -> LookupDigest {
        Self::digest_with(&self.current, tenant, key)
    }

    /// The name of a token subject of `tenant` under the current cache key.
    pub fn subject(&self, tenant: &TenantId, subject: &str) -> LookupDigest {
        Self::digest_parts(&self.current, &[tenant.as_str(), "subject", subject])
    }

    /// Every name `key` may have in a running deployment: current, then previous.
    pub fn digests(&self, tenant: &TenantId, key: &IdentifierKey) -> Vec<LookupDigest> {
        let mut all = vec![self.digest(tenant, key)];
        if let Some(previous) = &self.previous {
            all.push(Self::digest_with(previous, tenant, key));
        }
        all
    }
}

/// The Redis key of one profile.
pub fn profile(prefix: &str, tenant: &TenantId, id: ProfileId) -> String {
    format!("{prefix}:v{SCHEMA}:p:{tenant}:{id}")
}

/// The Redis key of one identifier's holder, by its keyed hash.
pub fn lookup(prefix: &str, tenant: &TenantId, digest: &LookupDigest) -> String {
    format!("{prefix}:v{SCHEMA}:l:{tenant}:{}", digest.0)
}

/// The Redis key of one subject's read counter for one window (the subject
/// by its keyed hash: a token's `sub` may be an email address).
pub fn read_count(prefix: &str, tenant: &TenantId, subject: &LookupDigest, window: i64) -> String {
    format!("{prefix}:v{SCHEMA}:rc:{tenant}:{}:{window}", subject.0)
}

/// The key naming the deployment (database) that uses this prefix: two
/// deployments sharing a prefix would serve each other's cached profiles.
/// Not versioned: every schema of one deployment shares it.
pub fn deployment(prefix: &str) -> String {
    format!("{prefix}:deployment")
}

/// The pub/sub channel carrying invalidations between instances.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}:v{SCHEMA}:invalidate")
}

/// The pub/sub channel on which `instance` hears that its writes' messages
/// were acted on (see `cache::peers`).
pub fn ack_channel(prefix: &str, instance: &str) -> String {
    format!("{prefix}:v{SCHEMA}:ack:{instance}")
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
/// `L\t<tenant>\t<digest>` (the identifier's keyed hash).
#[derive(Debug, Clone, PartialEq)]
pub enum Invalidation {
    /// The message's writer and its sequence number: acknowledge it.
    Writer(String, u64),
    /// A profile changed at this version.
    Profile(TenantId, ProfileId, i64),
    /// An identifier was claimed or released.
    Lookup(TenantId, LookupDigest),
}

impl Invalidation {
    /// The message line.
    pub fn encode(&self) -> String {
        match self {
            Self::Writer(instance, seq) => format!("W\t{instance}\t{seq}"),
            Self::Profile(tenant, id, version) => format!("P\t{tenant}\t{id}\t{version}"),
            Self::Lookup(tenant, digest) => format!("L\t{tenant}\t{}", digest.0),
        }
    }

    /// Parses a message line.
    pub fn decode(line: &str) -> Option<Self> {
        let mut parts = line.split('\t');
        let kind = parts.next()?;
        if kind == "W" {
            let instance = parts.next()?;
            let valid = !instance.is_empty() && instance.bytes().all(|b| b.is_ascii_alphanumeric());
            return valid.then(|| Some(Self::Writer(instance.to_owned(), parts.next()?.parse().ok()?))).flatten();
        }
        let tenant = TenantId::parse(parts.next()?).ok()?;
        match kind {
            "P" => {
                let id = ProfileId::parse(parts.next()?).ok()?;
                Some(Self::Profile(tenant, id, parts.next()?.parse().ok()?))
            }
            "L" => {
                let digest = parts.next()?;
                digest
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit())
                    .then(|| Self::Lookup(tenant, LookupDigest(digest.to_owned())))
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
        let digest = IdentifierHasher::new(b"k", None).digest(&tenant, &key);
        for message in [
            Invalidation::Writer("0af3".into(), 7),
            Invalidation::Profile(tenant.clone(), id, 3),
            Invalidation::Lookup(tenant, digest),
        ] {
            assert_eq!(Invalidation::decode(&message.encode()), Some(message));
        }
        assert_eq!(ProfileSlot::decode(b"garbage"), None);
    }

    #[test]
    fn identifiers_are_named_by_keyed_hashes() {
        let acme = TenantId::parse("acme").expect("tenant");
        let globex = TenantId::parse("globex").expect("tenant");
        let email =
            IdentifierKey { id_type: IdentifierType::Email, namespace: String::new(), value: "ada@example.com".into() };
        let hasher = IdentifierHasher::new(b"current", None);
        let digest = hasher.digest(&acme, &email);
        assert_eq!(digest.as_str().len(), 32);
        assert_eq!(digest, hasher.digest(&acme, &email), "stable");
        assert_ne!(digest, hasher.digest(&globex, &email), "per tenant");
        assert_ne!(digest, IdentifierHasher::new(b"other", None).digest(&acme, &email), "keyed");
        let key = lookup("c360", &acme, &digest);
        assert!(!key.contains("ada") && !key.contains("example"), "{key}");
        let message = Invalidation::Lookup(acme.clone(), digest.clone()).encode();
        assert!(!message.contains("ada"), "{message}");
        let rotating = IdentifierHasher::new(b"current", Some(b"old"));
        assert_eq!(
            rotating.digests(&acme, &email),
            [digest, IdentifierHasher::new(b"old", None).digest(&acme, &email)]
        );
    }
}
