//! Identity: which profile an id or an identifier answers for. A merged id
//! resolves forever to the profile it was merged into (docs/merges.md); every
//! read and write by id takes this one step, [`canonical`], whatever it loads
//! profiles with (the cache, a locking query, the consent columns). An email,
//! phone or external id answers for the live profile that holds it
//! ([`Identity::holder`]).

use std::{future::Future, sync::Arc};

use crate::{
    cache::ProfileCache,
    domain::{
        DomainError, ProfileId, TenantId,
        error::Violations,
        identifiers::{IdentifierKey, IdentifierType, NormalizationPolicy, normalize_external_id, normalize_source},
        profile::{Profile, ProfileContacts, ProfileStatus},
    },
    store::{self, Store, loader::ProfileLoader},
};

/// Profiles by id and by identifier, read through the cache.
#[derive(Clone)]
pub struct Identity {
    store: Store,
    loader: ProfileLoader,
    cache: ProfileCache,
    policy: NormalizationPolicy,
}

impl Identity {
    /// Reads `store` through `cache` (misses in batches by `loader`),
    /// identifiers normalized by `policy`.
    pub fn new(store: Store, loader: ProfileLoader, cache: ProfileCache, policy: NormalizationPolicy) -> Self {
        Self { store, loader, cache, policy }
    }

    /// One profile by its own id, merged or not, through the cache.
    pub async fn stored(&self, tenant: &TenantId, id: ProfileId) -> Result<Option<Arc<Profile>>, DomainError> {
        self.cache.profile(tenant, id, || self.loader.load(tenant, id)).await
    }

    /// Profiles by their own ids, merged or not, through the cache (misses
    /// read in one query); ids that match nothing are absent.
    pub async fn stored_many(
        &self,
        tenant: &TenantId,
        ids: &[ProfileId],
    ) -> Result<std::collections::HashMap<ProfileId, Arc<Profile>>, DomainError> {
        let db = self.store.db();
        self.cache
            .profiles(tenant, ids, |misses| async move { store::profiles::find_many(db, tenant, &misses).await })
            .await
    }

    /// The profile `profile` resolves to, through the cache (see
    /// [`canonical`]): the stable-id step of every read by id.
    pub async fn follow(
        &self,
        tenant: &TenantId,
        profile: Arc<Profile>,
    ) -> Result<(Arc<Profile>, Option<ProfileId>), DomainError> {
        canonical(profile.id, profile, |id| self.stored(tenant, id)).await
    }

    /// The live profile holding `key`. A cached holder is checked against the
    /// (versioned, so current) profile: if it no longer holds the identifier,
    /// the entry is dropped and the database answers.
    pub async fn holder(&self, tenant: &TenantId, key: &IdentifierKey) -> Result<Option<Arc<Profile>>, DomainError> {
        let db = self.store.db();
        let holder = self.cache.holder(tenant, key, || store::identities::holder(db, tenant, key)).await?;
        let Some(id) = holder else { return Ok(None) };
        if let Some(profile) = self.stored(tenant, id).await?
            && self.holds(&profile, key)
        {
            return Ok(Some(profile));
        }
        self.cache.forget_holder(tenant, key).await;
        match store::identities::holder(db, tenant, key).await? {
            Some(id) => self.stored(tenant, id).await,
            None => Ok(None),
        }
    }

    fn holds(&self, profile: &Profile, key: &IdentifierKey) -> bool {
        profile.data.status.is_live() && profile.data.identity_keys(&self.policy).iter().any(|(k, _)| k == key)
    }

    /// Normalizes an identifier from a request, naming `value_field` (and, for
    /// an external id, `source_field`) in any violation.
    pub fn key(
        &self,
        (value_field, source_field): (&str, &str),
        id_type: IdentifierType,
        value: &str,
        source: &str,
    ) -> Result<IdentifierKey, DomainError> {
        let mut violations = Violations::default();
        let (namespace, value) = match id_type {
            IdentifierType::Email => {
                (Some(String::new()), violations.check(value_field, self.policy.email(value).map(|e| e.key)))
            }
            IdentifierType::Phone => (Some(String::new()), violations.check(value_field, self.policy.phone(value))),
            IdentifierType::ExternalId => (
                violations.check(source_field, normalize_source(source)),
                violations.check(value_field, normalize_external_id(value)),
            ),
        };
        match (namespace, value) {
            (Some(namespace), Some(value)) => Ok(IdentifierKey { id_type, namespace, value }),
            _ => Err(violations.into_result(()).err().unwrap_or_else(|| DomainError::Internal("identifier".into()))),
        }
    }
}

/// Most merges one id is followed through (merges keep chains one hop long;
/// this only guards against a corrupt loop).
pub const MAX_REDIRECTS: usize = 8;

/// A stored profile, or the part of one a caller loaded, that may have been
/// merged into another.
pub trait Resolvable {
    /// Its id.
    fn profile_id(&self) -> ProfileId;
    /// The profile its id resolves to, when it is MERGED into one.
    fn resolves_to(&self) -> Option<ProfileId>;
}

impl Resolvable for Profile {
    fn profile_id(&self) -> ProfileId {
        self.id
    }

    fn resolves_to(&self) -> Option<ProfileId> {
        self.merged_into.filter(|_| self.data.status == ProfileStatus::Merged)
    }
}

impl Resolvable for ProfileContacts {
    fn profile_id(&self) -> ProfileId {
        self.id
    }

    fn resolves_to(&self) -> Option<ProfileId> {
        self.merged_into.filter(|_| self.status == ProfileStatus::Merged)
    }
}

impl<T: Resolvable> Resolvable for Arc<T> {
    fn profile_id(&self) -> ProfileId {
        self.as_ref().profile_id()
    }

    fn resolves_to(&self) -> Option<ProfileId> {
        self.as_ref().resolves_to()
    }
}

/// The profile that `first` (found for the id `asked`) answers for: itself,
/// or for a MERGED one the profile it was merged into, through chains, each
/// read by `load`; and `asked` when the answer is another profile (the
/// `redirected_from` callers are told).
pub async fn canonical<P, F, Fut>(
    asked: ProfileId,
    first: P,
    mut load: F,
) -> Result<(P, Option<ProfileId>), DomainError>
where
    P: Resolvable,
    F: FnMut(ProfileId) -> Fut,
    Fut: Future<Output = Result<Option<P>, DomainError>>,
{
    let mut current = first;
    for _ in 0..MAX_REDIRECTS {
        let Some(target) = current.resolves_to() else {
            let redirected = (current.profile_id() != asked).then_some(asked);
            return Ok((current, redirected));
        };
        current = load(target).await?.ok_or_else(|| {
            DomainError::Internal(format!("profile {asked} resolves to profile {target}, which is missing"))
        })?;
    }
    Err(DomainError::Internal(format!("profile {asked} resolves through more than {MAX_REDIRECTS} merges")))
}
