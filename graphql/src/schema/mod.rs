//! The GraphQL schema: queries over customers and the review queue,
//! mutations that write through the services, subscriptions on the change
//! stream. Every resolver reaches data only through the caller's
//! [`Session`](crate::upstream::Session).

pub mod consent;
pub mod customer;
pub mod identity;
pub mod mutation;
pub mod page;
pub mod subscription;
pub mod types;

use async_graphql::{Context, ID, InputObject, Interface, Object, OneofObject, Result};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use c360_proto::v1 as pb;
use tonic::Code;

use self::{customer::Customer, identity::MergeCandidate, page::Page, types::IdentifierType};
use crate::errors;

/// The executable schema.
pub type Schema = async_graphql::Schema<Query, mutation::Mutation, subscription::Subscription>;

/// The per-request data resolvers read.
pub mod session {
    use async_graphql::Context;

    use crate::{loaders::Loaders, upstream::Session};

    /// The caller's session.
    pub fn of<'a>(ctx: &Context<'a>) -> &'a Session {
        ctx.data_unchecked::<Session>()
    }

    /// The caller's dataloaders.
    pub fn loaders<'a>(ctx: &Context<'a>) -> &'a Loaders {
        ctx.data_unchecked::<Loaders>()
    }
}

/// `Type:id` as a Relay global id.
pub fn encode_global_id(kind: &str, id: &str) -> String {
    STANDARD.encode(format!("{kind}:{id}"))
}

/// The type and id a Relay global id names, if it is one.
pub fn decode_global_id(global: &str) -> Option<(String, String)> {
    let bytes = STANDARD.decode(global).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (kind, id) = text.split_once(':')?;
    Some((kind.to_owned(), id.to_owned()))
}

/// The profile id a customer argument names: a global id or the plain UUID.
fn profile_id(id: &ID) -> String {
    match decode_global_id(id) {
        Some((kind, raw)) if kind == customer::NODE_TYPE => raw,
        _ => id.to_string(),
    }
}

/// An object with a global id.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "The Relay global id."))]
pub enum Node {
    /// A customer.
    Customer(Customer),
}

/// Exactly one way to find customers.
#[derive(OneofObject)]
pub enum CustomerSearch {
    /// Prefix of a person's name (given, family, either order) or of a company name; case and accents ignored.
    NamePrefix(String),
    /// An email address (normalized before matching).
    Email(String),
    /// A phone number in any accepted format.
    Phone(String),
    /// An id in a source system.
    ExternalId(ExternalIdInput),
}

/// An id in another system.
#[derive(InputObject)]
pub struct ExternalIdInput {
    /// The system, e.g. "salesforce".
    pub source: String,
    /// The id within that system.
    pub id: String,
}

/// A read that answers NOT_FOUND is null; other failures are errors.
fn found<T>(result: std::result::Result<tonic::Response<T>, tonic::Status>) -> Result<Option<T>> {
    match result {
        Ok(response) => Ok(Some(response.into_inner())),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(errors::upstream(&status)),
    }
}

/// The entry points for reading.
pub struct Query;

/// The entry points for reading.
#[Object]
impl Query {
    /// The object with this global id; null when there is none the caller may see.
    async fn node(&self, ctx: &Context<'_>, #[graphql(desc = "A Relay global id.")] id: ID) -> Result<Option<Node>> {
        match decode_global_id(&id) {
            Some((kind, raw)) if kind == customer::NODE_TYPE => Ok(fetch_customer(ctx, raw).await?.map(Node::Customer)),
            _ => Ok(None),
        }
    }

    /// One customer by profile id (or global id); a merged id answers with the customer it was merged into,
    /// `redirectedFrom` set. Null when the tenant has no such customer.
    async fn customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A profile id or global id.")] id: ID,
    ) -> Result<Option<Customer>> {
        fetch_customer(ctx, profile_id(&id)).await
    }

    /// The live customer holding one identifier; null when none does.
    async fn customer_by_identifier(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "type", desc = "The kind of identifier.")] kind: IdentifierType,
        #[graphql(desc = "The identifier in any accepted format.")] value: String,
        #[graphql(desc = "For EXTERNAL_ID: the source system.")] source: Option<String>,
    ) -> Result<Option<Customer>> {
        let session = session::of(ctx);
        let request = session.request(pb::LookupProfileRequest {
            r#type: kind.to_proto(),
            value,
            source: source.unwrap_or_default(),
        });
        Ok(found(session.profiles().lookup_profile(request).await)?.map(Customer))
    }

    /// The tenant's live customers in creation order, or those one search criterion finds.
    #[graphql(complexity = "page::cost(first, child_complexity)")]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "One criterion; none: every live customer.")] search: Option<CustomerSearch>,
        #[graphql(desc = "At most this many customers (default 20, at most the facade's page limit).")] first: Option<
            i32,
        >,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<page::Connection<Customer>> {
        let session = session::of(ctx);
        page::forward(ctx, first, after, |page: Page| async move {
            let (profiles, next) = match search {
                None => {
                    let request = session.request(pb::ListProfilesRequest {
                        page_size: page.size,
                        page_token: page.token,
                        show_deleted: false,
                    });
                    let r = session.profiles().list_profiles(request).await.map_err(|s| errors::upstream(&s))?;
                    let r = r.into_inner();
                    (r.profiles, r.next_page_token)
                }
                Some(search) => {
                    use pb::search_profiles_request::Criterion;
                    let criterion = match search {
                        CustomerSearch::NamePrefix(prefix) => Criterion::NamePrefix(prefix),
                        CustomerSearch::Email(email) => Criterion::Email(email),
                        CustomerSearch::Phone(phone) => Criterion::Phone(phone),
                        CustomerSearch::ExternalId(x) => {
                            Criterion::ExternalId(pb::ExternalId { source: x.source, id: x.id, lineage: None })
                        }
                    };
                    let request = session.request(pb::SearchProfilesRequest {
                        criterion: Some(criterion),
                        page_size: page.size,
                        page_token: page.token,
                    });
                    let r = session.profiles().search_profiles(request).await.map_err(|s| errors::upstream(&s))?;
                    let r = r.into_inner();
                    (r.profiles, r.next_page_token)
                }
            };
            Ok((profiles.into_iter().map(Customer).collect(), next))
        })
        .await
    }

    /// The stewards' review queue: pending pairs, highest confidence first, optionally of one customer.
    #[graphql(complexity = "page::cost(first, child_complexity)")]
    async fn review_queue(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the pairs of this customer (profile id or global id).")] profile_id: Option<ID>,
        #[graphql(desc = "At most this many pairs (default 20, at most the facade's page limit).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<page::Connection<MergeCandidate>> {
        identity::candidates(ctx, profile_id.as_ref().map(self::profile_id), first, after).await
    }
}

/// `GetProfile`; null when not found.
async fn fetch_customer(ctx: &Context<'_>, id: String) -> Result<Option<Customer>> {
    let session = session::of(ctx);
    let request = session.request(pb::GetProfileRequest { id });
    Ok(found(session.profiles().get_profile(request).await)?.map(Customer))
}

/// The profile id a customer argument names (for mutations).
pub fn customer_id(id: &ID) -> String {
    profile_id(id)
}
