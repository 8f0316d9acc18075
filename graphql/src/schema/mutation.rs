//! Writes, each through one RPC. Every mutation takes one `input` and
//! answers a payload: the changed object, and `userErrors` for what the
//! caller can fix (bad input, a stale etag, a conflict, a profile that is not
//! live). Anything else — no permission, the service down — is a GraphQL
//! error with the gRPC code in `extensions.code`.

use async_graphql::{Context, ID, InputObject, Json, MaybeUndefined, Object, Result, SimpleObject};
use c360_proto::v1 as pb;
use chrono::{DateTime, Utc};

use super::{
    consent::{ConsentDecision, ConsentState},
    customer::Customer,
    customer_id,
    identity::{MergeCandidate, SurvivorshipDecision, decisions},
    session,
    types::{
        ConsentPurpose, ConsentStatus, CustomerKind, CustomerStatus, LegalBasis, MergeDecision, MergeReason,
        struct_of_json, timestamp,
    },
};
use crate::errors::{self, UserError};

/// An email address to store.
#[derive(InputObject, Clone)]
pub struct EmailInput {
    /// The address.
    pub address: String,
    /// A free label such as "work".
    #[graphql(default)]
    pub label: String,
    /// Whether it is the preferred address.
    #[graphql(default)]
    pub primary: bool,
}

/// A phone number to store.
#[derive(InputObject, Clone)]
pub struct PhoneInput {
    /// The number in any common format (national numbers use the server's default region).
    pub number: String,
    /// A free label such as "mobile".
    #[graphql(default)]
    pub label: String,
    /// Whether it is the preferred number.
    #[graphql(default)]
    pub primary: bool,
}

/// A postal address to store.
#[derive(InputObject, Clone)]
pub struct PostalAddressInput {
    /// Street lines, in order.
    #[graphql(default)]
    pub lines: Vec<String>,
    /// City or town.
    #[graphql(default)]
    pub locality: String,
    /// State, province or county.
    #[graphql(default)]
    pub region: String,
    /// Postal or ZIP code.
    #[graphql(default)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    #[graphql(default)]
    pub country_code: String,
    /// A free label such as "billing".
    #[graphql(default)]
    pub label: String,
}

/// An id of the customer in another system, to store.
#[derive(InputObject, Clone)]
pub struct ExternalIdValue {
    /// The system, e.g. "salesforce".
    pub source: String,
    /// The id within that system.
    pub id: String,
}

/// Fields of a customer record. In an update, a field left out is kept, a
/// field set to null is cleared, and a list replaces the whole list.
#[derive(InputObject, Default)]
pub struct CustomerInput {
    /// Person or organization.
    pub kind: MaybeUndefined<CustomerKind>,
    /// PROSPECT, ACTIVE or INACTIVE.
    pub status: MaybeUndefined<CustomerStatus>,
    /// A person's given name.
    pub given_name: MaybeUndefined<String>,
    /// A person's family name.
    pub family_name: MaybeUndefined<String>,
    /// An organization's name.
    pub company_name: MaybeUndefined<String>,
    /// Business segment.
    pub segment: MaybeUndefined<String>,
    /// Email addresses.
    pub emails: MaybeUndefined<Vec<EmailInput>>,
    /// Phone numbers.
    pub phones: MaybeUndefined<Vec<PhoneInput>>,
    /// Postal addresses.
    pub addresses: MaybeUndefined<Vec<PostalAddressInput>>,
    /// Date of birth, YYYY-MM-DD.
    pub birth_date: MaybeUndefined<String>,
    /// For an organization: its primary contact's profile id.
    pub primary_contact_id: MaybeUndefined<ID>,
    /// Free-form traits (a JSON object).
    pub attributes: MaybeUndefined<Json<serde_json::Value>>,
    /// Ids in other systems.
    pub external_ids: MaybeUndefined<Vec<ExternalIdValue>>,
}

impl CustomerInput {
    /// The profile message and the gRPC update mask of the fields present.
    fn to_profile(&self) -> Result<(pb::Profile, Vec<String>)> {
        let mut profile = pb::Profile::default();
        let mut mask = Vec::new();
        macro_rules! field {
            ($name:ident, $path:literal, |$v:ident| $set:expr) => {
                match &self.$name {
                    MaybeUndefined::Undefined => {}
                    MaybeUndefined::Null => mask.push($path.to_owned()),
                    MaybeUndefined::Value($v) => {
                        mask.push($path.to_owned());
                        $set;
                    }
                }
            };
        }
        field!(kind, "kind", |v| profile.kind = v.to_proto());
        field!(status, "status", |v| profile.status = v.to_proto());
        field!(given_name, "given_name", |v| profile.given_name = v.clone());
        field!(family_name, "family_name", |v| profile.family_name = v.clone());
        field!(company_name, "company_name", |v| profile.company_name = v.clone());
        field!(segment, "segment", |v| profile.segment = v.clone());
        field!(emails, "emails", |v| {
            profile.emails = v
                .iter()
                .map(|e| pb::EmailAddress {
                    address: e.address.clone(),
                    label: e.label.clone(),
                    primary: e.primary,
                    lineage: None,
                })
                .collect();
        });
        field!(phones, "phones", |v| {
            profile.phones = v
                .iter()
                .map(|p| pb::PhoneNumber {
                    number: p.number.clone(),
                    label: p.label.clone(),
                    primary: p.primary,
                    lineage: None,
                })
                .collect();
        });
        field!(addresses, "addresses", |v| {
            profile.addresses = v
                .iter()
                .map(|a| pb::PostalAddress {
                    lines: a.lines.clone(),
                    locality: a.locality.clone(),
                    region: a.region.clone(),
                    postal_code: a.postal_code.clone(),
                    country_code: a.country_code.clone(),
                    label: a.label.clone(),
                    lineage: None,
                })
                .collect();
        });
        field!(birth_date, "birth_date", |v| profile.birth_date = v.clone());
        field!(primary_contact_id, "primary_contact_id", |v| profile.primary_contact_id = customer_id(v));
        if let MaybeUndefined::Value(Json(value)) = &self.attributes {
            profile.attributes = Some(struct_of_json(value).ok_or_else(|| {
                errors::refused("INVALID_ARGUMENT", "input.customer.attributes: must be a JSON object")
            })?);
        }
        field!(attributes, "attributes", |_v| {});
        field!(external_ids, "external_ids", |v| {
            profile.external_ids = v
                .iter()
                .map(|x| pb::ExternalId { source: x.source.clone(), id: x.id.clone(), lineage: None })
                .collect();
        });
        Ok((profile, mask))
    }
}

/// A customer to create.
#[derive(InputObject)]
pub struct CreateCustomerInput {
    /// Its fields.
    pub customer: CustomerInput,
    /// The system the data comes from, recorded in lineage; default "api".
    pub source: Option<String>,
    /// A client-chosen id that makes a retry safe (the same request again returns the customer first created).
    pub request_id: Option<String>,
}

/// Changes to one customer.
#[derive(InputObject)]
pub struct UpdateCustomerInput {
    /// The customer (profile id or global id).
    pub id: ID,
    /// The `etag` last read; a stale one is refused (user error ABORTED) and changes nothing.
    pub etag: Option<String>,
    /// The fields to change.
    pub customer: CustomerInput,
    /// The system the data comes from, recorded in lineage; default "api".
    pub source: Option<String>,
    /// A client-chosen id that makes a retry safe.
    pub request_id: Option<String>,
}

/// A customer to delete (soft: it becomes INACTIVE and releases its identifiers).
#[derive(InputObject)]
pub struct DeleteCustomerInput {
    /// The customer (profile id or global id).
    pub id: ID,
    /// The `etag` last read, optional.
    pub etag: Option<String>,
}

/// The answer of a customer mutation.
#[derive(SimpleObject)]
pub struct CustomerPayload {
    /// The customer as it is now, as the caller may see it; null on a user error.
    pub customer: Option<Customer>,
    /// What the caller can fix; empty on success.
    pub user_errors: Vec<UserError>,
}

/// A consent decision to record.
#[derive(InputObject)]
pub struct SetConsentInput {
    /// The customer (profile id or global id).
    pub profile_id: ID,
    /// The purpose.
    pub purpose: ConsentPurpose,
    /// The person's answer.
    pub status: ConsentStatus,
    /// The legal ground; default CONSENT.
    pub legal_basis: Option<LegalBasis>,
    /// The capturing system; default "api".
    pub source: Option<String>,
    /// Where it was captured (WEB, EMAIL, STORE, …).
    pub channel: Option<String>,
    /// When the person decided; default now.
    pub capture_time: Option<DateTime<Utc>>,
    /// When a grant lapses.
    pub expire_time: Option<DateTime<Utc>>,
    /// Proof of the decision.
    pub evidence: Option<String>,
    /// The one email address this decision covers (instead of the whole purpose).
    pub email: Option<String>,
    /// The one phone number this decision covers (instead of the whole purpose).
    pub phone: Option<String>,
    /// A client-chosen id that makes a retry safe.
    pub request_id: Option<String>,
}

/// The answer of `setConsent`.
#[derive(SimpleObject)]
pub struct SetConsentPayload {
    /// The decision recorded (for a retry: the one first recorded).
    pub decision: Option<ConsentDecision>,
    /// The state in force for its purpose (and contact point) afterwards.
    pub state: Option<ConsentState>,
    /// What the caller can fix; empty on success.
    pub user_errors: Vec<UserError>,
}

/// Which profile's value a merged field keeps.
#[derive(InputObject)]
pub struct FieldOverride {
    /// The single-valued field (given_name, segment, attributes.<key>, …).
    pub field: String,
    /// The profile whose value wins.
    pub profile_id: ID,
}

/// The etag last read of a profile being merged.
#[derive(InputObject)]
pub struct ProfileEtag {
    /// The profile.
    pub profile_id: ID,
    /// Its etag; a stale one refuses the merge.
    pub etag: String,
}

/// Customer records to merge into one.
#[derive(InputObject)]
pub struct MergeCustomersInput {
    /// The record that survives, keeping its id.
    pub target_id: ID,
    /// The records merged into it (at most 20).
    pub source_ids: Vec<ID>,
    /// Why; default DUPLICATE.
    pub reason: Option<MergeReason>,
    /// Per field, the profile whose value wins over the survivorship rules.
    #[graphql(default)]
    pub overrides: Vec<FieldOverride>,
    /// Etags last read, per profile.
    #[graphql(default)]
    pub etags: Vec<ProfileEtag>,
}

/// The answer of `mergeCustomers`.
#[derive(SimpleObject)]
pub struct MergeCustomersPayload {
    /// The merge's id (for `unmergeCustomer`); null on a user error.
    pub merge_id: Option<ID>,
    /// The golden record.
    pub customer: Option<Customer>,
    /// How each field was decided.
    pub decisions: Vec<SurvivorshipDecision>,
    /// What the caller can fix; empty on success.
    pub user_errors: Vec<UserError>,
}

/// A merge to undo.
#[derive(InputObject)]
pub struct UnmergeCustomerInput {
    /// The merge.
    pub merge_id: ID,
    /// Why (at most 200 characters); default "MANUAL".
    pub reason: Option<String>,
}

/// The answer of `unmergeCustomer`.
#[derive(SimpleObject)]
pub struct UnmergeCustomerPayload {
    /// The merge undone.
    pub merge_id: Option<ID>,
    /// The target without what the sources brought.
    pub target: Option<Customer>,
    /// Each source, live again under its own id.
    pub sources: Vec<Customer>,
    /// What the caller can fix; empty on success.
    pub user_errors: Vec<UserError>,
}

/// A steward's decision on a pair of the review queue.
#[derive(InputObject)]
pub struct DecideReviewItemInput {
    /// One profile of the pair.
    pub left_id: ID,
    /// The other.
    pub right_id: ID,
    /// Merge them, or never propose them again.
    pub decision: MergeDecision,
}

/// The answer of `decideReviewItem`.
#[derive(SimpleObject)]
pub struct DecideReviewItemPayload {
    /// The pair as decided.
    pub candidate: Option<MergeCandidate>,
    /// The merge an approval made; null on a reject.
    pub merge_id: Option<ID>,
    /// The surviving customer, on an approval.
    pub customer: Option<Customer>,
    /// What the caller can fix; empty on success.
    pub user_errors: Vec<UserError>,
}

/// The entry points for writing.
pub struct Mutation;

/// The entry points for writing.
#[Object]
impl Mutation {
    /// Creates a customer.
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to do.")] input: CreateCustomerInput,
    ) -> Result<CustomerPayload> {
        let session = session::of(ctx);
        let (profile, _) = input.customer.to_profile()?;
        let request = session.request(pb::CreateProfileRequest {
            profile: Some(profile),
            source: input.source.unwrap_or_default(),
            request_id: input.request_id.unwrap_or_default(),
        });
        customer_payload(session.profiles().create_profile(request).await)
    }

    /// Changes the fields given in `input.customer` of one customer.
    async fn update_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to do.")] input: UpdateCustomerInput,
    ) -> Result<CustomerPayload> {
        let session = session::of(ctx);
        let (mut profile, paths) = input.customer.to_profile()?;
        if paths.is_empty() {
            return Ok(CustomerPayload {
                customer: None,
                user_errors: vec![UserError {
                    field: vec!["input".into(), "customer".into()],
                    code: "INVALID_ARGUMENT".into(),
                    message: "no field to change".into(),
                }],
            });
        }
        profile.id = customer_id(&input.id);
        let request = session.request(pb::UpdateProfileRequest {
            profile: Some(profile),
            update_mask: Some(prost_types::FieldMask { paths }),
            etag: input.etag.unwrap_or_default(),
            source: input.source.unwrap_or_default(),
            request_id: input.request_id.unwrap_or_default(),
        });
        customer_payload(session.profiles().update_profile(request).await)
    }

    /// Deletes a customer (soft: INACTIVE; its identifiers are released).
    async fn delete_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to do.")] input: DeleteCustomerInput,
    ) -> Result<CustomerPayload> {
        let session = session::of(ctx);
        let request = session
            .request(pb::DeleteProfileRequest { id: customer_id(&input.id), etag: input.etag.unwrap_or_default() });
        customer_payload(session.profiles().delete_profile(request).await)
    }

    /// Records a consent decision.
    async fn set_consent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to do.")] input: SetConsentInput,
    ) -> Result<SetConsentPayload> {
        let session = session::of(ctx);
        let contact_point = match (input.email, input.phone) {
            (Some(_), Some(_)) => {
                let error = UserError {
                    field: vec!["input".into(), "phone".into()],
                    code: "INVALID_ARGUMENT".into(),
                    message: "a decision covers one contact point: an email or a phone, not both".into(),
                };
                return Ok(SetConsentPayload { decision: None, state: None, user_errors: vec![error] });
            }
            (Some(email), None) => Some(pb::ContactPoint { point: Some(pb::contact_point::Point::Email(email)) }),
            (None, Some(phone)) => Some(pb::ContactPoint { point: Some(pb::contact_point::Point::Phone(phone)) }),
            (None, None) => None,
        };
        let request = session.request(pb::SetConsentRequest {
            profile_id: customer_id(&input.profile_id),
            purpose: input.purpose.to_proto(),
            status: input.status.to_proto(),
            legal_basis: input.legal_basis.map_or(0, LegalBasis::to_proto),
            source: input.source.unwrap_or_default(),
            channel: input.channel.unwrap_or_default(),
            capture_time: input.capture_time.map(timestamp),
            expire_time: input.expire_time.map(timestamp),
            evidence: input.evidence.unwrap_or_default(),
            contact_point,
            request_id: input.request_id.unwrap_or_default(),
        });
        Ok(match session.consents().set_consent(request).await {
            Ok(r) => {
                let r = r.into_inner();
                SetConsentPayload {
                    decision: r.decision.map(ConsentDecision),
                    state: r.state.map(ConsentState),
                    user_errors: Vec::new(),
                }
            }
            Err(status) => {
                SetConsentPayload { decision: None, state: None, user_errors: errors::user_errors(status, None)? }
            }
        })
    }

    /// Merges customer records into one (stewards and admins).
    async fn merge_customers(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to do.")] input: MergeCustomersInput,
    ) -> Result<MergeCustomersPayload> {
        let session = session::of(ctx);
        let request = session.request(pb::MergeProfilesRequest {
            target_id: customer_id(&input.target_id),
            source_ids: input.source_ids.iter().map(customer_id).collect(),
            reason: input.reason.map_or(0, MergeReason::to_proto),
            overrides: input.overrides.iter().map(|o| (o.field.clone(), customer_id(&o.profile_id))).collect(),
            etags: input.etags.iter().map(|e| (customer_id(&e.profile_id), e.etag.clone())).collect(),
        });
        Ok(match session.identity().merge_profiles(request).await {
            Ok(r) => {
                let r = r.into_inner();
                MergeCustomersPayload {
                    merge_id: Some(ID(r.merge_id)),
                    customer: r.profile.map(Customer),
                    decisions: decisions(&r.decisions),
                    user_errors: Vec::new(),
                }
            }
            Err(status) => MergeCustomersPayload {
                merge_id: None,
                customer: None,
                decisions: Vec::new(),
                user_errors: errors::user_errors(status, None)?,
            },
        })
    }

    /// Undoes a merge: each source is live again as it was, plus what arrived for it since.
    async fn unmerge_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to do.")] input: UnmergeCustomerInput,
    ) -> Result<UnmergeCustomerPayload> {
        let session = session::of(ctx);
        let request = session.request(pb::UnmergeProfileRequest {
            merge_id: input.merge_id.to_string(),
            reason: input.reason.unwrap_or_default(),
        });
        Ok(match session.identity().unmerge_profile(request).await {
            Ok(r) => {
                let r = r.into_inner();
                UnmergeCustomerPayload {
                    merge_id: Some(ID(r.merge_id)),
                    target: r.target.map(Customer),
                    sources: r.sources.into_iter().map(Customer).collect(),
                    user_errors: Vec::new(),
                }
            }
            Err(status) => UnmergeCustomerPayload {
                merge_id: None,
                target: None,
                sources: Vec::new(),
                user_errors: errors::user_errors(status, None)?,
            },
        })
    }

    /// Decides a pair of the review queue: approve merges it; reject keeps it apart for good.
    async fn decide_review_item(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to do.")] input: DecideReviewItemInput,
    ) -> Result<DecideReviewItemPayload> {
        let session = session::of(ctx);
        let request = session.request(pb::DecideMergeCandidateRequest {
            left_id: customer_id(&input.left_id),
            right_id: customer_id(&input.right_id),
            decision: input.decision.to_proto(),
        });
        Ok(match session.identity().decide_merge_candidate(request).await {
            Ok(r) => {
                let r = r.into_inner();
                DecideReviewItemPayload {
                    candidate: r.candidate.map(MergeCandidate),
                    merge_id: (!r.merge_id.is_empty()).then_some(ID(r.merge_id)),
                    customer: r.profile.map(Customer),
                    user_errors: Vec::new(),
                }
            }
            Err(status) => DecideReviewItemPayload {
                candidate: None,
                merge_id: None,
                customer: None,
                user_errors: errors::user_errors(status, None)?,
            },
        })
    }
}

/// A profile RPC's answer as a customer payload.
fn customer_payload(
    result: std::result::Result<tonic::Response<pb::Profile>, tonic::Status>,
) -> Result<CustomerPayload> {
    Ok(match result {
        Ok(r) => CustomerPayload { customer: Some(Customer(r.into_inner())), user_errors: Vec::new() },
        Err(status) => {
            CustomerPayload { customer: None, user_errors: errors::user_errors(status, Some(("profile", "customer")))? }
        }
    })
}
