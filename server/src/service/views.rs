//! Views: every profile a caller receives is made here, after the cache,
//! by the access policy's [`Shape`] for the caller, with the tenant's
//! settings and, for consent-gated roles, the marketing consent in force
//! at this moment.

use std::collections::HashMap;

use chrono::Utc;

use super::Tenants;
use crate::{
    auth::{
        Caller,
        masking::{ContactGrants, Shape},
    },
    domain::{
        DomainError, ProfileId,
        consent::{ConsentDecision, ConsentPurpose, ContactKind, ContactPoint, evaluate, for_address},
        identifiers::NormalizationPolicy,
        profile::Profile,
        settings::TenantSettings,
        view::ProfileView,
    },
    store::{self, Store},
};

/// Makes role-shaped views of profiles.
#[derive(Clone)]
pub struct Viewer {
    store: Store,
    tenants: Tenants,
    policy: NormalizationPolicy,
}

impl Viewer {
    /// Views over `store`'s consent and `tenants`' settings; contact points
    /// are compared with consent decisions normalized by `policy`.
    pub fn new(store: Store, tenants: Tenants, policy: NormalizationPolicy) -> Self {
        Self { store, tenants, policy }
    }

    /// The caller's view of one profile.
    pub async fn one(&self, caller: &Caller, profile: &Profile) -> Result<ProfileView, DomainError> {
        let mut views = self.many(caller, std::slice::from_ref(profile)).await?;
        views.pop().ok_or_else(|| DomainError::Internal("one profile, no view".into()))
    }

    /// The caller's views of `profiles`, in order: one settings read (cached)
    /// and, for consent-gated roles, one consent query for them all.
    pub async fn many<P: AsRef<Profile>>(
        &self,
        caller: &Caller,
        profiles: &[P],
    ) -> Result<Vec<ProfileView>, DomainError> {
        let settings = self.tenants.of(caller.tenant()).await?;
        self.many_under(caller, profiles, &settings.settings).await
    }

    /// [`Viewer::many`] under settings the caller already read.
    pub async fn many_under<P: AsRef<Profile>>(
        &self,
        caller: &Caller,
        profiles: &[P],
        settings: &TenantSettings,
    ) -> Result<Vec<ProfileView>, DomainError> {
        let shape = Shape::of(caller);
        let grants = if shape.needs_consent() && !profiles.is_empty() {
            self.grants(caller, profiles).await?
        } else {
            HashMap::new()
        };
        Ok(profiles
            .iter()
            .map(|p| {
                let p = p.as_ref();
                shape.profile(p, settings, grants.get(&p.id))
            })
            .collect())
    }

    /// Which emails and phones of each profile their channel's marketing
    /// consent allows now.
    async fn grants<P: AsRef<Profile>>(
        &self,
        caller: &Caller,
        profiles: &[P],
    ) -> Result<HashMap<ProfileId, ContactGrants>, DomainError> {
        let ids: Vec<ProfileId> = profiles.iter().map(|p| p.as_ref().id).collect();
        let (decisions, _) =
            store::consents::in_force_and_requests(self.store.db(), caller.tenant(), &ids, &[]).await?;
        let mut by_profile: HashMap<ProfileId, Vec<ConsentDecision>> = HashMap::new();
        for decision in decisions {
            by_profile.entry(decision.profile_id).or_default().push(decision);
        }
        let now = Utc::now();
        let none = Vec::new();
        Ok(profiles
            .iter()
            .map(|p| {
                let p = p.as_ref();
                let decisions = by_profile.get(&p.id).unwrap_or(&none);
                let allowed = |purpose: ConsentPurpose, kind: ContactKind, raw: &str| {
                    let Ok(point) = ContactPoint::parse(kind, raw, &self.policy) else { return false };
                    let of = |d: &&ConsentDecision| d.purpose == purpose;
                    let own = decisions.iter().filter(of).find(|d| d.contact_point.as_ref() == Some(&point));
                    let whole = decisions.iter().filter(of).find(|d| d.contact_point.is_none());
                    evaluate(for_address(own, whole), now).0
                };
                let grants = ContactGrants {
                    emails: p
                        .data
                        .emails
                        .iter()
                        .map(|e| allowed(ConsentPurpose::EmailMarketing, ContactKind::Email, &e.address))
                        .collect(),
                    phones: p
                        .data
                        .phones
                        .iter()
                        .map(|ph| {
                            allowed(ConsentPurpose::SmsMarketing, ContactKind::Phone, &ph.number)
                                || allowed(ConsentPurpose::PhoneMarketing, ContactKind::Phone, &ph.number)
                        })
                        .collect(),
                };
                (p.id, grants)
            })
            .collect())
    }
}
