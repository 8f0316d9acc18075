//! `c360.v1.ConsentService`: validate, extract the caller, call the service
//! layer, convert.

use c360_proto::v1::{self as pb, consent_service_server::ConsentService};
use tonic::{Request, Response, Status};

use super::auth::caller;
use crate::{
    auth::Permission,
    convert::{consent_check, consent_decision, consent_input, consent_purpose, subject_input},
    service::Consents,
};

/// The gRPC face of [`Consents`].
pub struct ConsentApi {
    consents: Consents,
}

impl ConsentApi {
    /// Serves `consents`.
    pub fn new(consents: Consents) -> Self {
        Self { consents }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ConsentService for ConsentApi {
    async fn set_consent(&self, request: Request<pb::SetConsentRequest>) -> Reply<pb::SetConsentResponse> {
        let caller = caller(&request)?;
        // Before decoding the request: a caller who may not write learns
        // that, not what is wrong with its timestamps.
        caller.require(Permission::WriteConsents)?;
        let outcome = self.consents.set(&caller, consent_input(request.into_inner())?).await?;
        let decision = Some(consent_decision(&outcome.decision, &outcome.disclosure));
        Ok(Response::new(pb::SetConsentResponse { decision, state: Some((&outcome.in_force).into()) }))
    }

    async fn get_consents(&self, request: Request<pb::GetConsentsRequest>) -> Reply<pb::GetConsentsResponse> {
        let caller = caller(&request)?;
        let profile_id = request.into_inner().profile_id;
        let (resolved, states) = self.consents.in_force(&caller, &profile_id).await?;
        let consents = states.iter().map(pb::ConsentState::from).collect();
        Ok(Response::new(pb::GetConsentsResponse { profile_id: resolved.to_string(), consents }))
    }

    async fn batch_get_consents(
        &self,
        request: Request<pb::BatchGetConsentsRequest>,
    ) -> Reply<pb::BatchGetConsentsResponse> {
        let caller = caller(&request)?;
        let (entries, missing_ids) = self.consents.in_force_of_many(&caller, &request.get_ref().profile_ids).await?;
        let profiles = entries
            .iter()
            .map(|entry| pb::ProfileConsents {
                requested_id: entry.requested.to_string(),
                profile_id: entry.profile_id.to_string(),
                consents: entry.states.iter().map(pb::ConsentState::from).collect(),
            })
            .collect();
        Ok(Response::new(pb::BatchGetConsentsResponse { profiles, missing_ids }))
    }

    async fn list_consent_history(
        &self,
        request: Request<pb::ListConsentHistoryRequest>,
    ) -> Reply<pb::ListConsentHistoryResponse> {
        let caller = caller(&request)?;
        let pb::ListConsentHistoryRequest { profile_id, purpose, page_size, page_token } = request.get_ref();
        let page =
            self.consents.history(&caller, profile_id, consent_purpose(*purpose), *page_size, page_token).await?;
        let decisions = page.decisions.iter().map(pb::ConsentDecision::from).collect();
        Ok(Response::new(pb::ListConsentHistoryResponse { decisions, next_page_token: page.next_page_token }))
    }

    async fn check_consent(&self, request: Request<pb::CheckConsentRequest>) -> Reply<pb::ConsentCheck> {
        let caller = caller(&request)?;
        let pb::CheckConsentRequest { subject, purpose } = request.into_inner();
        let check = self.consents.check(&caller, subject_input(subject.as_ref()), consent_purpose(purpose)).await?;
        Ok(Response::new(consent_check(&check, subject)))
    }

    async fn batch_check_consent(
        &self,
        request: Request<pb::BatchCheckConsentRequest>,
    ) -> Reply<pb::BatchCheckConsentResponse> {
        let caller = caller(&request)?;
        let pb::BatchCheckConsentRequest { purpose, subjects } = request.into_inner();
        let inputs: Vec<_> = subjects.iter().map(|s| subject_input(Some(s))).collect();
        let checks = self.consents.batch_check(&caller, &inputs, consent_purpose(purpose)).await?;
        let results = checks.iter().zip(subjects).map(|(check, subject)| consent_check(check, Some(subject))).collect();
        Ok(Response::new(pb::BatchCheckConsentResponse { results }))
    }
}
