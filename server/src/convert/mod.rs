//! Conversions between `c360.v1` messages and domain types: requests into
//! domain input, domain values into responses, and back again for the
//! cache's protobuf encoding.

mod consent;

pub use consent::{consent_check, consent_input, consent_purpose, subject_input};

use c360_proto::v1 as pb;
use chrono::{DateTime, Utc};
use prost_types::{ListValue, Struct, Timestamp, value::Kind};
use serde_json::{Map, Number, Value};

use crate::domain::{
    ProfileId, TenantId,
    identifiers::IdentifierType,
    profile::{
        Choice, Email, ExternalId, Lineage, Phone, PostalAddress, Profile, ProfileData, ProfileInput, ProfileKind,
        ProfileStatus,
    },
};

impl From<&Profile> for pb::Profile {
    fn from(profile: &Profile) -> Self {
        let data = &profile.data;
        pb::Profile {
            id: profile.id.to_string(),
            kind: pb::ProfileKind::from(data.kind) as i32,
            status: pb::ProfileStatus::from(data.status) as i32,
            given_name: data.given_name.clone().unwrap_or_default(),
            family_name: data.family_name.clone().unwrap_or_default(),
            company_name: data.company_name.clone().unwrap_or_default(),
            segment: data.segment.clone().unwrap_or_default(),
            emails: data
                .emails
                .iter()
                .map(|e| pb::EmailAddress { address: e.address.clone(), label: e.label.clone(), primary: e.primary })
                .collect(),
            phones: data
                .phones
                .iter()
                .map(|p| pb::PhoneNumber { number: p.number.clone(), label: p.label.clone(), primary: p.primary })
                .collect(),
            addresses: data.addresses.iter().map(pb::PostalAddress::from).collect(),
            birth_date: data.birth_date.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default(),
            primary_contact_id: data.primary_contact_id.map(|id| id.to_string()).unwrap_or_default(),
            attributes: Some(json_to_struct(&data.attributes)),
            external_ids: data
                .external_ids
                .iter()
                .map(|x| pb::ExternalId { source: x.source.clone(), id: x.id.clone() })
                .collect(),
            lineage: profile
                .lineage
                .iter()
                .map(|(field, l)| {
                    (
                        field.clone(),
                        pb::FieldLineage { source: l.source.clone(), update_time: Some(timestamp(l.updated_at)) },
                    )
                })
                .collect(),
            completeness: data.completeness(),
            create_time: Some(timestamp(profile.created_at)),
            update_time: Some(timestamp(profile.updated_at)),
            etag: profile.etag(),
        }
    }
}

impl From<Profile> for pb::Profile {
    fn from(profile: Profile) -> Self {
        Self::from(&profile)
    }
}

impl From<pb::Profile> for ProfileInput {
    fn from(p: pb::Profile) -> Self {
        ProfileInput {
            kind: choice(p.kind, kind_from_pb),
            status: choice(p.status, status_from_pb),
            given_name: p.given_name,
            family_name: p.family_name,
            company_name: p.company_name,
            segment: p.segment,
            emails: p.emails.into_iter().map(Email::from).collect(),
            phones: p.phones.into_iter().map(Phone::from).collect(),
            addresses: p.addresses.into_iter().map(PostalAddress::from).collect(),
            birth_date: p.birth_date,
            primary_contact_id: p.primary_contact_id,
            attributes: p.attributes.as_ref().map(struct_to_json).unwrap_or_default(),
            external_ids: p.external_ids.into_iter().map(ExternalId::from).collect(),
        }
    }
}

impl From<pb::EmailAddress> for Email {
    fn from(e: pb::EmailAddress) -> Self {
        Email { address: e.address, label: e.label, primary: e.primary }
    }
}

impl From<pb::PhoneNumber> for Phone {
    fn from(p: pb::PhoneNumber) -> Self {
        Phone { number: p.number, label: p.label, primary: p.primary }
    }
}

impl From<pb::ExternalId> for ExternalId {
    fn from(x: pb::ExternalId) -> Self {
        ExternalId { source: x.source, id: x.id }
    }
}

impl From<pb::PostalAddress> for PostalAddress {
    fn from(a: pb::PostalAddress) -> Self {
        PostalAddress {
            lines: a.lines,
            locality: a.locality,
            region: a.region,
            postal_code: a.postal_code,
            country_code: a.country_code,
            label: a.label,
        }
    }
}

impl From<&PostalAddress> for pb::PostalAddress {
    fn from(a: &PostalAddress) -> Self {
        pb::PostalAddress {
            lines: a.lines.clone(),
            locality: a.locality.clone(),
            region: a.region.clone(),
            postal_code: a.postal_code.clone(),
            country_code: a.country_code.clone(),
            label: a.label.clone(),
        }
    }
}

impl From<ProfileKind> for pb::ProfileKind {
    fn from(kind: ProfileKind) -> Self {
        match kind {
            ProfileKind::Person => Self::Person,
            ProfileKind::Organization => Self::Organization,
        }
    }
}

impl From<ProfileStatus> for pb::ProfileStatus {
    fn from(status: ProfileStatus) -> Self {
        match status {
            ProfileStatus::Prospect => Self::Prospect,
            ProfileStatus::Active => Self::Active,
            ProfileStatus::Inactive => Self::Inactive,
            ProfileStatus::Merged => Self::Merged,
            ProfileStatus::Erased => Self::Erased,
        }
    }
}

fn kind_from_pb(raw: i32) -> Option<ProfileKind> {
    match pb::ProfileKind::try_from(raw) {
        Ok(pb::ProfileKind::Person) => Some(ProfileKind::Person),
        Ok(pb::ProfileKind::Organization) => Some(ProfileKind::Organization),
        _ => None,
    }
}

fn status_from_pb(raw: i32) -> Option<ProfileStatus> {
    match pb::ProfileStatus::try_from(raw) {
        Ok(pb::ProfileStatus::Prospect) => Some(ProfileStatus::Prospect),
        Ok(pb::ProfileStatus::Active) => Some(ProfileStatus::Active),
        Ok(pb::ProfileStatus::Inactive) => Some(ProfileStatus::Inactive),
        Ok(pb::ProfileStatus::Merged) => Some(ProfileStatus::Merged),
        Ok(pb::ProfileStatus::Erased) => Some(ProfileStatus::Erased),
        _ => None,
    }
}

/// An `IdentifierType` number as sent by a caller.
pub fn identifier_type(raw: i32) -> Choice<IdentifierType> {
    choice(raw, |t| match pb::IdentifierType::try_from(t) {
        Ok(pb::IdentifierType::Email) => Some(IdentifierType::Email),
        Ok(pb::IdentifierType::Phone) => Some(IdentifierType::Phone),
        Ok(pb::IdentifierType::ExternalId) => Some(IdentifierType::ExternalId),
        _ => None,
    })
}

/// 0 is unset (proto3's zero value); unknown numbers are kept for the error.
fn choice<T>(raw: i32, known: impl FnOnce(i32) -> Option<T>) -> Choice<T> {
    if raw == 0 {
        return Choice::Unset;
    }
    known(raw).map_or(Choice::Unknown(raw), Choice::Set)
}

/// Rebuilds a stored profile from its protobuf form (the cache's encoding):
/// the inverse of `pb::Profile::from(&Profile)`.
pub fn profile_from_pb(p: pb::Profile, tenant: TenantId) -> Result<Profile, String> {
    let optional = |s: String| if s.is_empty() { None } else { Some(s) };
    let kind = kind_from_pb(p.kind).ok_or_else(|| format!("kind {}", p.kind))?;
    let status = status_from_pb(p.status).ok_or_else(|| format!("status {}", p.status))?;
    let birth_date = match p.birth_date.as_str() {
        "" => None,
        date => Some(chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|e| e.to_string())?),
    };
    let primary_contact_id = match p.primary_contact_id.as_str() {
        "" => None,
        id => Some(ProfileId::parse(id)?),
    };
    let lineage = p
        .lineage
        .into_iter()
        .map(|(field, l)| Ok((field, Lineage { source: l.source, updated_at: from_timestamp(l.update_time)? })))
        .collect::<Result<_, String>>()?;
    Ok(Profile {
        id: ProfileId::parse(&p.id)?,
        tenant,
        data: ProfileData {
            kind,
            status,
            given_name: optional(p.given_name),
            family_name: optional(p.family_name),
            company_name: optional(p.company_name),
            segment: optional(p.segment),
            emails: p.emails.into_iter().map(Email::from).collect(),
            phones: p.phones.into_iter().map(Phone::from).collect(),
            addresses: p.addresses.into_iter().map(PostalAddress::from).collect(),
            birth_date,
            primary_contact_id,
            attributes: p.attributes.as_ref().map(struct_to_json).unwrap_or_default(),
            external_ids: p.external_ids.into_iter().map(ExternalId::from).collect(),
        },
        lineage,
        version: p.etag.parse().map_err(|_| format!("etag {}", p.etag))?,
        created_at: from_timestamp(p.create_time)?,
        updated_at: from_timestamp(p.update_time)?,
    })
}

fn from_timestamp(time: Option<Timestamp>) -> Result<DateTime<Utc>, String> {
    let time = time.ok_or("missing timestamp")?;
    DateTime::from_timestamp(time.seconds, time.nanos as u32).ok_or_else(|| format!("timestamp {time:?}"))
}

/// A protobuf timestamp.
pub fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: time.timestamp(), nanos: time.timestamp_subsec_nanos() as i32 }
}

/// `google.protobuf.Struct` → JSON object.
pub fn struct_to_json(value: &Struct) -> Map<String, Value> {
    value.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect()
}

fn value_to_json(value: &prost_types::Value) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        // Struct numbers are doubles; whole ones come back as JSON integers.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::from(*n as i64),
        Some(Kind::NumberValue(n)) => Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(list)) => Value::Array(list.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s)),
    }
}

/// JSON object → `google.protobuf.Struct`.
pub fn json_to_struct(map: &Map<String, Value>) -> Struct {
    Struct { fields: map.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect() }
}

fn json_to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue { values: items.iter().map(json_to_value).collect() }),
        Value::Object(map) => Kind::StructValue(json_to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}
