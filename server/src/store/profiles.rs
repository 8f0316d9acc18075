//! Queries on `profiles`.

use std::collections::BTreeMap;

use c360_entity::profile::{ActiveModel, Column, Entity};
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, Iterable, QueryFilter,
    QueryOrder, QuerySelect, TryGetableFromJson, sea_query::Expr,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{db_error, rows_per_statement, supports_row_locks};
use crate::domain::{
    DomainError, ProfileId, TenantId,
    profile::{
        Email, ExternalId, Lineage, Phone, PostalAddress, Profile, ProfileContacts, ProfileData, ProfileKind,
        ProfileStatus,
    },
};

/// A JSON column decoded straight into `T`. Reading the entity's `Json`
/// columns instead builds a `serde_json::Value` tree first and converts it
/// after: twice the work on every cache miss (docs/performance.md).
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct Typed<T>(T);

impl<T: DeserializeOwned> TryGetableFromJson for Typed<T> {}

/// A `profiles` row as the reads decode it.
#[derive(Debug, FromQueryResult)]
struct ProfileRow {
    tenant_id: String,
    id: Uuid,
    kind: String,
    status: String,
    given_name: Option<String>,
    family_name: Option<String>,
    company_name: Option<String>,
    segment: Option<String>,
    birth_date: Option<NaiveDate>,
    primary_contact_id: Option<Uuid>,
    emails: Typed<Vec<Email>>,
    phones: Typed<Vec<Phone>>,
    addresses: Typed<Vec<PostalAddress>>,
    external_ids: Typed<Vec<ExternalId>>,
    attributes: Typed<Map<String, Value>>,
    lineage: Typed<BTreeMap<String, Lineage>>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    merged_into: Option<Uuid>,
}

/// Inserts a new profile.
pub async fn insert(conn: &impl ConnectionTrait, profile: &Profile) -> Result<(), DomainError> {
    Entity::insert(to_active(profile)?).exec_without_returning(conn).await.map_err(db_error)?;
    Ok(())
}

/// Inserts many new profiles in as few statements as the bind-parameter
/// limit allows (bulk loads; no events).
pub async fn insert_many(conn: &impl ConnectionTrait, profiles: &[Profile]) -> Result<(), DomainError> {
    for chunk in profiles.chunks(rows_per_statement(Column::iter().count())) {
        let rows = chunk.iter().map(to_active).collect::<Result<Vec<_>, _>>()?;
        Entity::insert_many(rows).exec_without_returning(conn).await.map_err(db_error)?;
    }
    Ok(())
}

/// Reads one profile of `tenant`. With `for_update`, locks the row until the
/// transaction ends (PostgreSQL; SQLite has one writer anyway).
pub async fn find(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    id: ProfileId,
    for_update: bool,
) -> Result<Option<Profile>, DomainError> {
    let mut select = Entity::find_by_id((tenant.as_str().to_owned(), id.as_uuid()));
    if for_update && supports_row_locks(conn) {
        select = select.lock_exclusive();
    }
    select.into_model::<ProfileRow>().one(conn).await.map_err(db_error)?.map(from_row).transpose()
}

/// Reads and locks one profile of `tenant` unless it is MERGED (a merged
/// row is neither returned nor locked: a merge repointing it holds its lock).
/// On PostgreSQL a row merged while this waited for its lock is re-checked
/// after that merge commits, and so not returned.
pub async fn find_unmerged_for_update(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    id: ProfileId,
) -> Result<Option<Profile>, DomainError> {
    let mut select = Entity::find_by_id((tenant.as_str().to_owned(), id.as_uuid()))
        .filter(Column::Status.ne(ProfileStatus::Merged.as_str()));
    if supports_row_locks(conn) {
        select = select.lock_exclusive();
    }
    select.into_model::<ProfileRow>().one(conn).await.map_err(db_error)?.map(from_row).transpose()
}

/// Whether `tenant` holds any profile, live or not.
pub async fn tenant_has_profiles(conn: &impl ConnectionTrait, tenant: &TenantId) -> Result<bool, DomainError> {
    let any = Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::TenantId.eq(tenant.as_str()))
        .into_tuple::<Uuid>()
        .one(conn)
        .await
        .map_err(db_error)?;
    Ok(any.is_some())
}

/// Reads the profiles of `tenant` among `ids`, in one query, in no set order.
pub async fn find_many(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[ProfileId],
) -> Result<Vec<Profile>, DomainError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_str()))
        .filter(Column::Id.is_in(ids.iter().map(|id| id.as_uuid())))
        .into_model::<ProfileRow>()
        .all(conn)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(from_row)
        .collect()
}

/// A contact person's organization ([`organizations_of`]).
#[derive(Debug, FromQueryResult)]
struct ContactOrganizationRow {
    primary_contact_id: Uuid,
    id: Uuid,
}

/// The live organizations of `tenant` whose primary contact is one of
/// `contacts`: (contact, organization) pairs ordered by contact, then
/// organization (oldest first), at most `per_contact` for each contact.
pub async fn organizations_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    contacts: &[ProfileId],
    per_contact: usize,
) -> Result<Vec<(ProfileId, ProfileId)>, DomainError> {
    if contacts.is_empty() {
        return Ok(Vec::new());
    }
    let rows = Entity::find()
        .select_only()
        .columns([Column::PrimaryContactId, Column::Id])
        .filter(Column::TenantId.eq(tenant.as_str()))
        .filter(Column::PrimaryContactId.is_in(contacts.iter().map(|id| id.as_uuid())))
        .filter(Column::Kind.eq(ProfileKind::Organization.as_str()))
        .filter(Column::Status.is_in([ProfileStatus::Prospect.as_str(), ProfileStatus::Active.as_str()]))
        .order_by_asc(Column::PrimaryContactId)
        .order_by_asc(Column::Id)
        .into_model::<ContactOrganizationRow>()
        .all(conn)
        .await
        .map_err(db_error)?;
    let mut pairs: Vec<(ProfileId, ProfileId)> = Vec::with_capacity(rows.len());
    let mut run = 0;
    for row in rows {
        let contact = ProfileId::from(row.primary_contact_id);
        run = if pairs.last().is_some_and(|(last, _)| *last == contact) { run + 1 } else { 1 };
        if run <= per_contact {
            pairs.push((contact, ProfileId::from(row.id)));
        }
    }
    Ok(pairs)
}

/// The columns of a profile a consent write checks.
#[derive(Debug, FromQueryResult)]
struct ContactsRow {
    id: Uuid,
    status: String,
    emails: Typed<Vec<Email>>,
    phones: Typed<Vec<Phone>>,
    merged_into: Option<Uuid>,
}

/// Reads the status and contact points of the profiles of `tenant` among
/// `ids`, in id order. With `for_update`, locks them until the transaction
/// ends (PostgreSQL): in id order, two transactions locking overlapping sets
/// wait for each other instead of deadlocking. Only those columns are read:
/// consent operations have no use for the rest of a wide row.
pub async fn contacts(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[ProfileId],
    for_update: bool,
) -> Result<Vec<ProfileContacts>, DomainError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut select = Entity::find()
        .select_only()
        .columns([Column::Id, Column::Status, Column::Emails, Column::Phones, Column::MergedInto])
        .filter(Column::TenantId.eq(tenant.as_str()))
        .filter(Column::Id.is_in(ids.iter().map(|id| id.as_uuid())))
        .order_by_asc(Column::Id);
    if for_update && supports_row_locks(conn) {
        select = select.lock_exclusive();
    }
    let rows = select.into_model::<ContactsRow>().all(conn).await.map_err(db_error)?;
    rows.into_iter()
        .map(|row| {
            let status = ProfileStatus::parse(&row.status)
                .ok_or_else(|| DomainError::Internal(format!("stored status '{}'", row.status)))?;
            Ok(ProfileContacts {
                id: ProfileId::from(row.id),
                status,
                emails: row.emails.0,
                phones: row.phones.0,
                merged_into: row.merged_into.map(ProfileId::from),
            })
        })
        .collect()
}

/// Writes `profile` over the stored row if that row is still at
/// `expected_version`; returns whether it was.
pub async fn update(
    conn: &impl ConnectionTrait,
    profile: &Profile,
    expected_version: i64,
) -> Result<bool, DomainError> {
    let result = Entity::update_many()
        .set(to_active(profile)?)
        .filter(Column::TenantId.eq(profile.tenant.as_str()))
        .filter(Column::Id.eq(profile.id.as_uuid()))
        .filter(Column::Version.eq(expected_version))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(result.rows_affected == 1)
}

/// Which rows a page of profiles is drawn from.
#[derive(Debug, Clone)]
pub enum ProfileFilter {
    /// Every profile; deleted ones only when asked.
    All {
        /// Include INACTIVE profiles.
        show_deleted: bool,
    },
    /// Live profiles whose folded name keys start with this folded prefix.
    NamePrefix(String),
}

/// A [`ProfileJson`] read back (a merge's snapshots).
#[derive(Debug, Deserialize)]
struct StoredJson {
    id: Uuid,
    kind: String,
    status: String,
    given_name: Option<String>,
    family_name: Option<String>,
    company_name: Option<String>,
    segment: Option<String>,
    birth_date: Option<NaiveDate>,
    emails: Vec<Email>,
    phones: Vec<Phone>,
    addresses: Vec<PostalAddress>,
    primary_contact_id: Option<Uuid>,
    attributes: Map<String, Value>,
    external_ids: Vec<ExternalId>,
    lineage: BTreeMap<String, Lineage>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    merged_into: Option<Uuid>,
}

/// Decodes a profile written by [`ProfileJson`].
pub fn from_json(tenant: &TenantId, value: Value) -> Result<Profile, DomainError> {
    let corrupt = |what: &str| DomainError::Internal(format!("stored profile JSON: {what}"));
    let stored: StoredJson = serde_json::from_value(value).map_err(|e| corrupt(&e.to_string()))?;
    Ok(Profile {
        id: ProfileId::from(stored.id),
        tenant: tenant.clone(),
        data: ProfileData {
            kind: ProfileKind::parse(&stored.kind).ok_or_else(|| corrupt("kind"))?,
            status: ProfileStatus::parse(&stored.status).ok_or_else(|| corrupt("status"))?,
            given_name: stored.given_name,
            family_name: stored.family_name,
            company_name: stored.company_name,
            segment: stored.segment,
            emails: stored.emails,
            phones: stored.phones,
            addresses: stored.addresses,
            birth_date: stored.birth_date,
            primary_contact_id: stored.primary_contact_id.map(ProfileId::from),
            attributes: stored.attributes,
            external_ids: stored.external_ids,
        },
        lineage: stored.lineage,
        version: stored.version,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
        merged_into: stored.merged_into.map(ProfileId::from),
    })
}

/// A profile as one JSON object: every stored field, named as in the API
/// (`c360 export --format jsonl`, the profiles a merge record keeps).
#[derive(Debug, Serialize)]
pub struct ProfileJson<'a> {
    id: String,
    kind: &'static str,
    status: &'static str,
    given_name: &'a Option<String>,
    family_name: &'a Option<String>,
    company_name: &'a Option<String>,
    segment: &'a Option<String>,
    birth_date: Option<String>,
    emails: &'a [Email],
    phones: &'a [Phone],
    addresses: &'a [PostalAddress],
    primary_contact_id: Option<String>,
    attributes: &'a Map<String, Value>,
    external_ids: &'a [ExternalId],
    lineage: &'a BTreeMap<String, Lineage>,
    completeness: f64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    merged_into: Option<String>,
}

impl<'a> ProfileJson<'a> {
    /// `profile` as JSON.
    pub fn of(profile: &'a Profile) -> Self {
        let data = &profile.data;
        Self {
            id: profile.id.to_string(),
            kind: data.kind.as_str(),
            status: data.status.as_str(),
            given_name: &data.given_name,
            family_name: &data.family_name,
            company_name: &data.company_name,
            segment: &data.segment,
            birth_date: data.birth_date.map(|d| d.to_string()),
            emails: &data.emails,
            phones: &data.phones,
            addresses: &data.addresses,
            primary_contact_id: data.primary_contact_id.map(|id| id.to_string()),
            attributes: &data.attributes,
            external_ids: &data.external_ids,
            lineage: &profile.lineage,
            completeness: data.completeness(),
            created_at: profile.created_at,
            updated_at: profile.updated_at,
            version: profile.version,
            merged_into: profile.merged_into.map(|id| id.to_string()),
        }
    }
}

/// How many profiles of `tenant` have one of `statuses`.
pub async fn count(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    statuses: &[ProfileStatus],
    kind: Option<ProfileKind>,
) -> Result<u64, DomainError> {
    use sea_orm::PaginatorTrait;
    let mut select = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_str()))
        .filter(Column::Status.is_in(statuses.iter().map(|s| s.as_str())));
    if let Some(kind) = kind {
        select = select.filter(Column::Kind.eq(kind.as_str()));
    }
    select.count(conn).await.map_err(db_error)
}

/// What matching reads of a person: the rest of a profile (lineage above
/// all) is neither read nor decoded, which makes a bulk run's read of a
/// whole tenant several times faster.
#[derive(Debug, FromQueryResult)]
struct PersonRow {
    id: Uuid,
    version: i64,
    status: String,
    given_name: Option<String>,
    family_name: Option<String>,
    birth_date: Option<NaiveDate>,
    emails: Typed<Vec<Email>>,
    phones: Typed<Vec<Phone>>,
    addresses: Typed<Vec<PostalAddress>>,
    external_ids: Typed<Vec<ExternalId>>,
    attributes: Option<Typed<Map<String, Value>>>,
}

/// Up to `limit` live people of `tenant` after `after`, in id order, each
/// with its version and the fields matching compares (names, birth date,
/// status, emails, phones, addresses, external ids, and the attributes when
/// `attributes`; the others empty); plus whether more follow.
pub async fn people_to_match(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    after: Option<ProfileId>,
    limit: u64,
    attributes: bool,
) -> Result<(Vec<(ProfileId, i64, ProfileData)>, bool), DomainError> {
    let mut select = Entity::find()
        .select_only()
        .columns([
            Column::Id,
            Column::Version,
            Column::Status,
            Column::GivenName,
            Column::FamilyName,
            Column::BirthDate,
            Column::Emails,
            Column::Phones,
            Column::Addresses,
            Column::ExternalIds,
        ])
        .filter(Column::TenantId.eq(tenant.as_str()))
        .filter(Column::Kind.eq(ProfileKind::Person.as_str()))
        .filter(Column::Status.is_in([ProfileStatus::Prospect.as_str(), ProfileStatus::Active.as_str()]));
    // Most tenants match on no attribute: their JSON is not read then.
    select =
        if attributes { select.column(Column::Attributes) } else { select.column_as(Expr::cust("NULL"), "attributes") };
    if let Some(after) = after {
        select = select.filter(Column::Id.gt(after.as_uuid()));
    }
    let rows = select.order_by_asc(Column::Id).limit(limit + 1).into_model::<PersonRow>().all(conn).await;
    let mut people: Vec<(ProfileId, i64, ProfileData)> = rows
        .map_err(db_error)?
        .into_iter()
        .map(|row| {
            let status = ProfileStatus::parse(&row.status)
                .ok_or_else(|| DomainError::Internal(format!("stored status '{}'", row.status)))?;
            let data = ProfileData {
                kind: ProfileKind::Person,
                status,
                given_name: row.given_name,
                family_name: row.family_name,
                birth_date: row.birth_date,
                emails: row.emails.0,
                phones: row.phones.0,
                addresses: row.addresses.0,
                external_ids: row.external_ids.0,
                attributes: row.attributes.map(|a| a.0).unwrap_or_default(),
                ..ProfileData::default()
            };
            Ok((ProfileId::from(row.id), row.version, data))
        })
        .collect::<Result<_, DomainError>>()?;
    let more = people.len() as u64 > limit;
    people.truncate(limit as usize);
    Ok((people, more))
}

/// One page in id order: up to `limit` rows after `after`, plus whether more follow.
pub async fn page(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    filter: &ProfileFilter,
    after: Option<ProfileId>,
    limit: u64,
) -> Result<(Vec<Profile>, bool), DomainError> {
    let mut select = Entity::find().filter(Column::TenantId.eq(tenant.as_str()));
    match filter {
        // MERGED profiles are never listed: their ids resolve to the target.
        ProfileFilter::All { show_deleted: true } => {
            select = select.filter(Column::Status.ne(ProfileStatus::Merged.as_str()));
        }
        ProfileFilter::All { show_deleted: false } => {
            select =
                select.filter(Column::Status.is_in([ProfileStatus::Prospect.as_str(), ProfileStatus::Active.as_str()]));
        }
        ProfileFilter::NamePrefix(prefix) => {
            // The folded keys hold only [a-z0-9 ], so the prefix has no LIKE wildcards.
            let pattern = format!("{prefix}%");
            select = select
                .filter(Column::Status.is_in([ProfileStatus::Prospect.as_str(), ProfileStatus::Active.as_str()]))
                .filter(
                    Condition::any()
                        .add(Column::NameKey.like(&pattern))
                        .add(Column::NameKeyRev.like(&pattern))
                        .add(Column::CompanyKey.like(&pattern)),
                );
        }
    }
    if let Some(after) = after {
        select = select.filter(Column::Id.gt(after.as_uuid()));
    }
    let mut rows: Vec<Profile> = select
        .order_by_asc(Column::Id)
        .limit(limit + 1)
        .into_model::<ProfileRow>()
        .all(conn)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(from_row)
        .collect::<Result<_, _>>()?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

fn to_active(profile: &Profile) -> Result<ActiveModel, DomainError> {
    let data = &profile.data;
    let json = |value: Result<Value, serde_json::Error>| {
        value.map_err(|e| DomainError::Internal(format!("encoding profile: {e}")))
    };
    let [name_key, name_key_rev, company_key] = data.name_keys();
    Ok(ActiveModel {
        tenant_id: Set(profile.tenant.as_str().to_owned()),
        id: Set(profile.id.as_uuid()),
        kind: Set(data.kind.as_str().to_owned()),
        status: Set(data.status.as_str().to_owned()),
        given_name: Set(data.given_name.clone()),
        family_name: Set(data.family_name.clone()),
        company_name: Set(data.company_name.clone()),
        segment: Set(data.segment.clone()),
        birth_date: Set(data.birth_date),
        primary_contact_id: Set(data.primary_contact_id.map(|id| id.as_uuid())),
        emails: Set(json(serde_json::to_value(&data.emails))?),
        phones: Set(json(serde_json::to_value(&data.phones))?),
        addresses: Set(json(serde_json::to_value(&data.addresses))?),
        external_ids: Set(json(serde_json::to_value(&data.external_ids))?),
        attributes: Set(Value::Object(data.attributes.clone())),
        lineage: Set(json(serde_json::to_value(&profile.lineage))?),
        completeness: Set(data.completeness()),
        name_key: Set(name_key),
        name_key_rev: Set(name_key_rev),
        company_key: Set(company_key),
        version: Set(profile.version),
        created_at: Set(profile.created_at),
        updated_at: Set(profile.updated_at),
        merged_into: Set(profile.merged_into.map(|id| id.as_uuid())),
    })
}

fn from_row(row: ProfileRow) -> Result<Profile, DomainError> {
    // Decoded without a length hint, vectors keep spare capacity; a profile
    // may live long in the cache, so give it back.
    fn exact<T>(mut items: Vec<T>) -> Vec<T> {
        items.shrink_to_fit();
        items
    }
    let corrupt = |column: &str, value: &str| DomainError::Internal(format!("stored {column} '{value}'"));
    Ok(Profile {
        id: ProfileId::from(row.id),
        tenant: TenantId::parse(&row.tenant_id).map_err(|_| corrupt("tenant_id", &row.tenant_id))?,
        data: ProfileData {
            kind: ProfileKind::parse(&row.kind).ok_or_else(|| corrupt("kind", &row.kind))?,
            status: ProfileStatus::parse(&row.status).ok_or_else(|| corrupt("status", &row.status))?,
            given_name: row.given_name,
            family_name: row.family_name,
            company_name: row.company_name,
            segment: row.segment,
            emails: exact(row.emails.0),
            phones: exact(row.phones.0),
            addresses: exact(row.addresses.0),
            birth_date: row.birth_date,
            primary_contact_id: row.primary_contact_id.map(ProfileId::from),
            attributes: row.attributes.0,
            external_ids: exact(row.external_ids.0),
        },
        lineage: row.lineage.0,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
        merged_into: row.merged_into.map(ProfileId::from),
    })
}
