//! `c360.v1.ProfileService`: validate, extract the caller, call the service
//! layer, convert.

use c360_proto::v1::{self as pb, profile_service_server::ProfileService, search_profiles_request::Criterion};
use tonic::{Request, Response, Status};

use super::auth::caller;
use crate::{
    auth::Permission,
    convert::identifier_type,
    domain::DomainError,
    service::{Page, Profiles, RequestKey, SearchCriterion, UpdateRequest},
};

/// The gRPC face of [`Profiles`].
pub struct ProfileApi {
    profiles: Profiles,
}

impl ProfileApi {
    /// Serves `profiles`.
    pub fn new(profiles: Profiles) -> Self {
        Self { profiles }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ProfileService for ProfileApi {
    async fn create_profile(&self, request: Request<pb::CreateProfileRequest>) -> Reply<pb::Profile> {
        let caller = caller(&request)?;
        let key = request_key(request.get_ref(), |r| (std::mem::take(&mut r.request_id), r.profile.as_mut()));
        let pb::CreateProfileRequest { profile, source, .. } = request.into_inner();
        let profile = self.profiles.create(&caller, profile.unwrap_or_default().into(), &source, &key).await?;
        Ok(Response::new(profile.into()))
    }

    async fn get_profile(&self, request: Request<pb::GetProfileRequest>) -> Reply<pb::Profile> {
        let caller = caller(&request)?;
        let profile = self.profiles.get(&caller, &request.get_ref().id).await?;
        Ok(Response::new(profile.into()))
    }

    async fn batch_get_profiles(
        &self,
        request: Request<pb::BatchGetProfilesRequest>,
    ) -> Reply<pb::BatchGetProfilesResponse> {
        let caller = caller(&request)?;
        let (profiles, missing_ids) = self.profiles.batch_get(&caller, &request.get_ref().ids).await?;
        let profiles = profiles.into_iter().map(pb::Profile::from).collect();
        Ok(Response::new(pb::BatchGetProfilesResponse { profiles, missing_ids }))
    }

    async fn batch_get_contact_organizations(
        &self,
        request: Request<pb::BatchGetContactOrganizationsRequest>,
    ) -> Reply<pb::BatchGetContactOrganizationsResponse> {
        let caller = caller(&request)?;
        let (entries, missing_ids) =
            self.profiles.contact_organizations(&caller, &request.get_ref().contact_ids).await?;
        let contacts = entries
            .into_iter()
            .map(|(contact, organizations)| pb::ContactOrganizations {
                contact_id: contact.to_string(),
                organizations: organizations.into_iter().map(pb::Profile::from).collect(),
            })
            .collect();
        Ok(Response::new(pb::BatchGetContactOrganizationsResponse { contacts, missing_ids }))
    }

    async fn update_profile(&self, request: Request<pb::UpdateProfileRequest>) -> Reply<pb::Profile> {
        let caller = caller(&request)?;
        let key = request_key(request.get_ref(), |r| (std::mem::take(&mut r.request_id), r.profile.as_mut()));
        let pb::UpdateProfileRequest { profile, update_mask, etag, source, .. } = request.into_inner();
        let profile = profile.unwrap_or_default();
        let update = UpdateRequest {
            id: profile.id.clone(),
            mask: update_mask.map(|m| m.paths).unwrap_or_default(),
            input: profile.into(),
            etag,
            source,
            request: key,
        };
        Ok(Response::new(self.profiles.update(&caller, update).await?.into()))
    }

    async fn delete_profile(&self, request: Request<pb::DeleteProfileRequest>) -> Reply<pb::Profile> {
        let caller = caller(&request)?;
        let pb::DeleteProfileRequest { id, etag } = request.get_ref();
        Ok(Response::new(self.profiles.delete(&caller, id, etag).await?.into()))
    }

    async fn list_profiles(&self, request: Request<pb::ListProfilesRequest>) -> Reply<pb::ListProfilesResponse> {
        let caller = caller(&request)?;
        let pb::ListProfilesRequest { page_size, page_token, show_deleted } = request.get_ref();
        let page = self.profiles.list(&caller, *page_size, page_token, *show_deleted).await?;
        let (profiles, next_page_token) = page_parts(page);
        Ok(Response::new(pb::ListProfilesResponse { profiles, next_page_token }))
    }

    async fn search_profiles(&self, request: Request<pb::SearchProfilesRequest>) -> Reply<pb::SearchProfilesResponse> {
        let caller = caller(&request)?;
        // Before reading the request: a caller who may not read learns that,
        // not what a valid search looks like.
        caller.require(Permission::ReadProfiles)?;
        let pb::SearchProfilesRequest { criterion, page_size, page_token } = request.into_inner();
        let criterion = match criterion {
            Some(Criterion::NamePrefix(prefix)) => SearchCriterion::NamePrefix(prefix),
            Some(Criterion::Email(email)) => SearchCriterion::Email(email),
            Some(Criterion::Phone(phone)) => SearchCriterion::Phone(phone),
            Some(Criterion::ExternalId(id)) => SearchCriterion::ExternalId(id.into()),
            None => {
                let why = "one of name_prefix, email, phone or external_id is required";
                return Err(DomainError::invalid("criterion", why).into());
            }
        };
        let page = self.profiles.search(&caller, criterion, page_size, &page_token).await?;
        let (profiles, next_page_token) = page_parts(page);
        Ok(Response::new(pb::SearchProfilesResponse { profiles, next_page_token }))
    }

    async fn lookup_profile(&self, request: Request<pb::LookupProfileRequest>) -> Reply<pb::Profile> {
        let caller = caller(&request)?;
        let pb::LookupProfileRequest { r#type, value, source } = request.get_ref();
        let profile = self.profiles.lookup(&caller, identifier_type(*r#type), value, source).await?;
        Ok(Response::new(profile.into()))
    }
}

fn page_parts(page: Page) -> (Vec<pb::Profile>, String) {
    (page.profiles.into_iter().map(pb::Profile::from).collect(), page.next_page_token)
}

/// The request id of a write and a hash of the rest of the request: the same
/// message sent again hashes the same (prost encodes fields in order; the
/// only map of a profile, `lineage`, is output-only and left out, as is each
/// contact point's, so a client echoing a read profile back hashes alike).
fn request_key<M: prost::Message + Clone>(
    request: &M,
    parts: impl FnOnce(&mut M) -> (String, Option<&mut pb::Profile>),
) -> RequestKey {
    use sha2::Digest;
    let mut rest = request.clone();
    let (id, profile) = parts(&mut rest);
    if id.is_empty() {
        return RequestKey::default();
    }
    if let Some(profile) = profile {
        profile.lineage.clear();
        profile.emails.iter_mut().for_each(|e| e.lineage = None);
        profile.phones.iter_mut().for_each(|p| p.lineage = None);
        profile.addresses.iter_mut().for_each(|a| a.lineage = None);
        profile.external_ids.iter_mut().for_each(|x| x.lineage = None);
    }
    RequestKey { id, fingerprint: hex::encode(sha2::Sha256::digest(rest.encode_to_vec())) }
}
