//! `profiles`: the golden record of each customer.

use sea_orm::entity::prelude::*;

/// One profile row. Repeated and nested values (emails, phones, addresses,
/// external ids, attributes, lineage) are JSON (jsonb on PostgreSQL): they are
/// read and written with the profile, and searched through `identities`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "profiles")]
pub struct Model {
    /// Owning tenant; first key column so every query is tenant-scoped.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// UUID v7: time-ordered, so `ORDER BY id` is creation order.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// PERSON or ORGANIZATION.
    pub kind: String,
    /// PROSPECT, ACTIVE, INACTIVE, MERGED or ERASED.
    pub status: String,
    /// Given name of a person.
    pub given_name: Option<String>,
    /// Family name of a person.
    pub family_name: Option<String>,
    /// Name of an organization.
    pub company_name: Option<String>,
    /// Business segment.
    pub segment: Option<String>,
    /// Date of birth.
    pub birth_date: Option<Date>,
    /// Primary contact (a person profile) of an organization.
    pub primary_contact_id: Option<Uuid>,
    /// `[{address, label, primary}]`.
    pub emails: Json,
    /// `[{number, label, primary}]`, numbers in E.164.
    pub phones: Json,
    /// `[{lines, locality, region, postal_code, country_code, label}]`.
    pub addresses: Json,
    /// `[{source, id}]`.
    pub external_ids: Json,
    /// Free-form traits (a JSON object).
    pub attributes: Json,
    /// `{field: {source, updated_at}}`.
    pub lineage: Json,
    /// Share of key fields filled, 0 to 1.
    pub completeness: f64,
    /// Folded "given family" for case- and accent-insensitive prefix search.
    pub name_key: String,
    /// Folded "family given".
    pub name_key_rev: String,
    /// Folded company name.
    pub company_key: String,
    /// Optimistic-concurrency version, starts at 1; the etag is derived from it.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
    /// For a MERGED profile: the profile it was merged into.
    pub merged_into: Option<Uuid>,
}

/// No relations are declared: joins are written where the queries are.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
