//! Dataloaders: what the resolvers of one GraphQL request ask for by id is
//! gathered and fetched with one batch RPC per kind, so a list of 50
//! customers with their organizations and consents costs a few upstream
//! calls, not 150. Each request (each WebSocket connection) has its own,
//! made with its caller's token: nothing is shared between callers.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use c360_proto::v1 as pb;

use crate::{errors, upstream::Session};

/// The batch RPCs take at most this many ids (the services' limit).
const MAX_BATCH: usize = 1000;

/// How long a loader gathers ids before it calls: long enough for the
/// resolvers of a whole list to ask on a busy machine, short against a call.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

/// Profiles by id (`BatchGetProfiles`); a merged id finds its target.
pub struct Profiles(Session);

impl Loader<String> for Profiles {
    type Value = pb::Profile;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, pb::Profile>, Self::Error> {
        let request = self.0.request(pb::BatchGetProfilesRequest { ids: keys.to_vec() });
        let response = self.0.profiles().batch_get_profiles(request).await.map_err(|s| errors::upstream(&s))?;
        let response = response.into_inner();
        let found = keys.iter().filter(|id| !response.missing_ids.contains(id));
        // Answers come in the order of first mention, missing ids left out.
        let mut seen = std::collections::HashSet::new();
        let asked: Vec<&String> = found.filter(|id| seen.insert(*id)).collect();
        Ok(asked.into_iter().cloned().zip(response.profiles).collect())
    }
}

/// The consent states of profiles by id (`BatchGetConsents`).
pub struct Consents(Session);

impl Loader<String> for Consents {
    type Value = Vec<pb::ConsentState>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Vec<pb::ConsentState>>, Self::Error> {
        let request = self.0.request(pb::BatchGetConsentsRequest { profile_ids: keys.to_vec() });
        let response = self.0.consents().batch_get_consents(request).await.map_err(|s| errors::upstream(&s))?;
        Ok(response.into_inner().profiles.into_iter().map(|p| (p.requested_id, p.consents)).collect())
    }
}

/// The organizations people are primary contact of (`BatchGetContactOrganizations`).
pub struct ContactOrganizations(Session);

impl Loader<String> for ContactOrganizations {
    type Value = Vec<pb::Profile>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Vec<pb::Profile>>, Self::Error> {
        let request = self.0.request(pb::BatchGetContactOrganizationsRequest { contact_ids: keys.to_vec() });
        let response =
            self.0.profiles().batch_get_contact_organizations(request).await.map_err(|s| errors::upstream(&s))?;
        Ok(response.into_inner().contacts.into_iter().map(|c| (c.contact_id, c.organizations)).collect())
    }
}

/// The loaders of one request.
pub struct Loaders {
    /// Profiles by id.
    pub profiles: DataLoader<Profiles>,
    /// Consent states by profile id.
    pub consents: DataLoader<Consents>,
    /// Organizations by primary contact id.
    pub contact_organizations: DataLoader<ContactOrganizations>,
}

impl Loaders {
    /// Loaders calling upstream as `session`.
    pub fn new(session: &Session) -> Self {
        Self {
            profiles: DataLoader::new(Profiles(session.clone()), tokio::spawn)
                .max_batch_size(MAX_BATCH)
                .delay(BATCH_WINDOW),
            consents: DataLoader::new(Consents(session.clone()), tokio::spawn)
                .max_batch_size(MAX_BATCH)
                .delay(BATCH_WINDOW),
            contact_organizations: DataLoader::new(ContactOrganizations(session.clone()), tokio::spawn)
                .max_batch_size(MAX_BATCH)
                .delay(BATCH_WINDOW),
        }
    }
}
