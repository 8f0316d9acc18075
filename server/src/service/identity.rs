//! Identity: which profile an id answers for. A merged id resolves forever
//! to the profile it was merged into (docs/merges.md); every read and write
//! by id takes this one step, [`canonical`], whatever it loads profiles with
//! (the cache, a locking query, the consent columns).

use std::{future::Future, sync::Arc};

use crate::domain::{
    DomainError, ProfileId,
    profile::{Profile, ProfileContacts, ProfileStatus},
};

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
