//! `Customer`: a profile as the caller may see it, and everything a customer
//! screen draws from it — identities, consents, merges, related customers.

use async_graphql::{Context, ID, Json, Object, Result, SimpleObject};
use c360_proto::v1 as pb;
use chrono::{DateTime, Utc};

use super::{
    consent::{ConsentDecision, ConsentState},
    identity::{Merge, MergeCandidate},
    page::{self, Page},
    session,
    types::{ConsentPurpose, CustomerKind, CustomerStatus, IdentifierType, json_of_struct, time},
};
use crate::errors;

/// The Relay type name of customers in global ids.
pub const NODE_TYPE: &str = "Customer";

/// One customer: the golden record merged from every source, as the
/// caller's role may see it (masked values keep their shape; withheld ones
/// are listed in `hiddenFields`).
pub struct Customer(pub pb::Profile);

/// Where a value came from and when it was set.
#[derive(SimpleObject)]
pub struct Lineage {
    /// The source system that wrote it ("api" when none was named).
    pub source: String,
    /// When it was last set.
    pub update_time: Option<DateTime<Utc>>,
}

impl Lineage {
    fn of(lineage: Option<&pb::FieldLineage>) -> Option<Self> {
        lineage.map(|l| Self { source: l.source.clone(), update_time: time(l.update_time.as_ref()) })
    }
}

/// The lineage of one field of the record.
#[derive(SimpleObject)]
pub struct FieldLineage {
    /// The field's name, as in `updateCustomer`'s input (`givenName`, `segment`, …).
    pub field: String,
    /// Where its value came from.
    pub lineage: Lineage,
}

/// An email address of a customer.
#[derive(SimpleObject)]
pub struct Email {
    /// The address, trimmed and lower-cased.
    pub address: String,
    /// A free label such as "work".
    pub label: String,
    /// Whether it is the preferred address.
    pub primary: bool,
    /// The write that brought it.
    pub lineage: Option<Lineage>,
}

/// A phone number of a customer.
#[derive(SimpleObject)]
pub struct Phone {
    /// The number in E.164, e.g. "+14155552671".
    pub number: String,
    /// A free label such as "mobile".
    pub label: String,
    /// Whether it is the preferred number.
    pub primary: bool,
    /// The write that brought it.
    pub lineage: Option<Lineage>,
}

/// A postal address of a customer.
#[derive(SimpleObject)]
pub struct PostalAddress {
    /// Street lines, in order.
    pub lines: Vec<String>,
    /// City or town.
    pub locality: String,
    /// State, province or county.
    pub region: String,
    /// Postal or ZIP code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country_code: String,
    /// A free label such as "billing".
    pub label: String,
    /// The write that brought it.
    pub lineage: Option<Lineage>,
}

/// An id of the customer in another system.
#[derive(SimpleObject)]
pub struct ExternalId {
    /// The system, e.g. "salesforce".
    pub source: String,
    /// The id within that system.
    pub id: String,
    /// The write that brought it.
    pub lineage: Option<Lineage>,
}

/// One entry of the identity index: an identifier that finds this customer.
#[derive(SimpleObject)]
pub struct Identity {
    /// The kind of identifier.
    #[graphql(name = "type")]
    pub kind: IdentifierType,
    /// Its value as stored (normalized; masked when the caller's role masks it).
    pub value: String,
    /// For an external id: the system.
    pub source: Option<String>,
}

/// The global id of a customer.
pub fn global_id(profile_id: &str) -> ID {
    ID(super::encode_global_id(NODE_TYPE, profile_id))
}

/// One customer: the golden record merged from every source, as the caller's role may see it (masked
/// values keep their shape; withheld ones are listed in `hiddenFields`).
#[Object]
impl Customer {
    /// The Relay global id (for `node`).
    pub async fn id(&self) -> ID {
        global_id(&self.0.id)
    }

    /// The profile id (a UUID), as gRPC callers and other systems know it.
    async fn profile_id(&self) -> ID {
        ID(self.0.id.clone())
    }

    /// Person or organization.
    async fn kind(&self) -> Option<CustomerKind> {
        CustomerKind::from_proto(self.0.kind)
    }

    /// Lifecycle status.
    async fn status(&self) -> Option<CustomerStatus> {
        CustomerStatus::from_proto(self.0.status)
    }

    /// A person's given name.
    async fn given_name(&self) -> &str {
        &self.0.given_name
    }

    /// A person's family name.
    async fn family_name(&self) -> &str {
        &self.0.family_name
    }

    /// An organization's name.
    async fn company_name(&self) -> &str {
        &self.0.company_name
    }

    /// Business segment, e.g. "VIP".
    async fn segment(&self) -> &str {
        &self.0.segment
    }

    /// Email addresses.
    async fn emails(&self) -> Vec<Email> {
        self.0
            .emails
            .iter()
            .map(|e| Email {
                address: e.address.clone(),
                label: e.label.clone(),
                primary: e.primary,
                lineage: Lineage::of(e.lineage.as_ref()),
            })
            .collect()
    }

    /// Phone numbers.
    async fn phones(&self) -> Vec<Phone> {
        self.0
            .phones
            .iter()
            .map(|p| Phone {
                number: p.number.clone(),
                label: p.label.clone(),
                primary: p.primary,
                lineage: Lineage::of(p.lineage.as_ref()),
            })
            .collect()
    }

    /// Postal addresses.
    async fn addresses(&self) -> Vec<PostalAddress> {
        self.0
            .addresses
            .iter()
            .map(|a| PostalAddress {
                lines: a.lines.clone(),
                locality: a.locality.clone(),
                region: a.region.clone(),
                postal_code: a.postal_code.clone(),
                country_code: a.country_code.clone(),
                label: a.label.clone(),
                lineage: Lineage::of(a.lineage.as_ref()),
            })
            .collect()
    }

    /// Date of birth as YYYY-MM-DD; empty when unknown.
    async fn birth_date(&self) -> &str {
        &self.0.birth_date
    }

    /// Free-form traits (a JSON object).
    async fn attributes(&self) -> Json<serde_json::Value> {
        Json(json_of_struct(self.0.attributes.as_ref()))
    }

    /// Ids of the customer in other systems.
    async fn external_ids(&self) -> Vec<ExternalId> {
        self.0
            .external_ids
            .iter()
            .map(|x| ExternalId {
                source: x.source.clone(),
                id: x.id.clone(),
                lineage: Lineage::of(x.lineage.as_ref()),
            })
            .collect()
    }

    /// The identifiers that find this customer (emails, phones, external ids), as the identity index holds them.
    async fn identities(&self) -> Vec<Identity> {
        let emails = self.0.emails.iter().map(|e| Identity {
            kind: IdentifierType::Email,
            value: e.address.clone(),
            source: None,
        });
        let phones = self.0.phones.iter().map(|p| Identity {
            kind: IdentifierType::Phone,
            value: p.number.clone(),
            source: None,
        });
        let external = self.0.external_ids.iter().map(|x| Identity {
            kind: IdentifierType::ExternalId,
            value: x.id.clone(),
            source: Some(x.source.clone()),
        });
        emails.chain(phones).chain(external).collect()
    }

    /// Per field: the source and time of its value, fields in name order.
    async fn lineage(&self) -> Vec<FieldLineage> {
        let mut fields: Vec<FieldLineage> = self
            .0
            .lineage
            .iter()
            .filter_map(|(field, l)| {
                Some(FieldLineage { field: errors::snake_to_camel(field), lineage: Lineage::of(Some(l))? })
            })
            .collect();
        fields.sort_by(|a, b| a.field.cmp(&b.field));
        fields
    }

    /// Share of the key fields that are filled, 0 to 1.
    async fn completeness(&self) -> f64 {
        self.0.completeness
    }

    /// When the record was created.
    async fn create_time(&self) -> Option<DateTime<Utc>> {
        time(self.0.create_time.as_ref())
    }

    /// When the record last changed.
    async fn update_time(&self) -> Option<DateTime<Utc>> {
        time(self.0.update_time.as_ref())
    }

    /// The version tag to send back with `updateCustomer` (optimistic concurrency).
    async fn etag(&self) -> &str {
        &self.0.etag
    }

    /// Fields shown in masked form for the caller's role (gRPC paths, e.g. "emails").
    async fn masked_fields(&self) -> &[String] {
        &self.0.masked_fields
    }

    /// Fields withheld from the caller's role: absent here, not empty.
    async fn hidden_fields(&self) -> &[String] {
        &self.0.hidden_fields
    }

    /// For a MERGED record: the profile id it was merged into.
    async fn merged_into(&self) -> Option<ID> {
        (!self.0.merged_into.is_empty()).then(|| ID(self.0.merged_into.clone()))
    }

    /// Set when the id asked for was merged into this customer: that id.
    async fn redirected_from(&self) -> Option<ID> {
        (!self.0.redirected_from.is_empty()).then(|| ID(self.0.redirected_from.clone()))
    }

    /// For an organization: its primary contact person.
    async fn primary_contact(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        if self.0.primary_contact_id.is_empty() {
            return Ok(None);
        }
        let loaders = session::loaders(ctx);
        Ok(loaders.profiles.load_one(self.0.primary_contact_id.clone()).await?.map(Customer))
    }

    /// For a person: the live organizations naming them as primary contact (at most 100, oldest first).
    #[graphql(complexity = "10 * child_complexity")]
    async fn primary_contact_of(&self, ctx: &Context<'_>) -> Result<Vec<Customer>> {
        let loaders = session::loaders(ctx);
        let found = loaders.contact_organizations.load_one(self.0.id.clone()).await?;
        Ok(found.unwrap_or_default().into_iter().map(Customer).collect())
    }

    /// The consent in force per purpose (and contact point) with a decision on record.
    async fn consents(&self, ctx: &Context<'_>) -> Result<Vec<ConsentState>> {
        let loaders = session::loaders(ctx);
        let found = loaders.consents.load_one(self.0.id.clone()).await?;
        Ok(found.unwrap_or_default().into_iter().map(ConsentState).collect())
    }

    /// Every consent decision recorded, newest first, optionally of one purpose.
    #[graphql(complexity = "page::cost(first, child_complexity)")]
    async fn consent_history(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only this purpose; null: all.")] purpose: Option<ConsentPurpose>,
        #[graphql(desc = "At most this many decisions (default 20, at most the facade's page limit).")] first: Option<
            i32,
        >,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<page::Connection<ConsentDecision>> {
        let session = session::of(ctx);
        let profile_id = self.0.id.clone();
        let purpose = purpose.map_or(0, ConsentPurpose::to_proto);
        page::forward(ctx, first, after, |page: Page| async move {
            let request = session.request(pb::ListConsentHistoryRequest {
                profile_id,
                purpose,
                page_size: page.size,
                page_token: page.token,
            });
            let response =
                session.consents().list_consent_history(request).await.map_err(|s| errors::upstream(&s))?.into_inner();
            Ok((response.decisions.into_iter().map(ConsentDecision).collect(), response.next_page_token))
        })
        .await
    }

    /// The merges this customer took part in (as target, or as a source absorbed into another), newest first.
    #[graphql(complexity = "10 + child_complexity")]
    async fn merge_history(&self, ctx: &Context<'_>) -> Result<Vec<Merge>> {
        Ok(merge_history(ctx, &self.0.id).await?.into_iter().map(Merge).collect())
    }

    /// The profile ids merged into this customer by merges that still stand.
    #[graphql(complexity = 10)]
    async fn merged_from(&self, ctx: &Context<'_>) -> Result<Vec<ID>> {
        let merges = merge_history(ctx, &self.0.id).await?;
        Ok(merges
            .into_iter()
            .filter(|m| m.target_id == self.0.id && m.undo_time.is_none())
            .flat_map(|m| m.source_ids)
            .map(ID)
            .collect())
    }

    /// Pending pairs of the review queue that include this customer, highest confidence first.
    #[graphql(complexity = "page::cost(first, child_complexity)")]
    async fn match_candidates(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most this many pairs (default 20, at most the facade's page limit).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<page::Connection<MergeCandidate>> {
        super::identity::candidates(ctx, Some(self.0.id.clone()), first, after).await
    }
}

/// `ListMergeHistory` of one profile.
async fn merge_history(ctx: &Context<'_>, profile_id: &str) -> Result<Vec<pb::Merge>> {
    let session = session::of(ctx);
    let request = session.request(pb::ListMergeHistoryRequest { profile_id: profile_id.to_owned() });
    let response = session.identity().list_merge_history(request).await.map_err(|s| errors::upstream(&s))?;
    Ok(response.into_inner().merges)
}
