//! Conversions between `c360.v1` messages and domain types: requests into
//! domain input, and role-shaped views (never stored records) into responses.

mod consent;

pub use consent::{consent_check, consent_decision, consent_input, consent_purpose, subject_input};

use c360_proto::v1 as pb;
use chrono::{DateTime, Utc};
use prost_types::{ListValue, Struct, Timestamp, value::Kind};
use serde_json::{Map, Number, Value};

use crate::domain::{
    identifiers::IdentifierType,
    profile::{Choice, Email, ExternalId, Lineage, Phone, PostalAddress, ProfileInput, ProfileKind, ProfileStatus},
    view::ProfileView,
};

impl From<ProfileView> for pb::Profile {
    fn from(view: ProfileView) -> Self {
        let etag = view.etag();
        pb::Profile {
            id: view.id.to_string(),
            kind: pb::ProfileKind::from(view.kind) as i32,
            status: pb::ProfileStatus::from(view.status) as i32,
            given_name: view.given_name.unwrap_or_default(),
            family_name: view.family_name.unwrap_or_default(),
            company_name: view.company_name.unwrap_or_default(),
            segment: view.segment.unwrap_or_default(),
            emails: view
                .emails
                .into_iter()
                .zip(lineages(view.point_lineage.emails))
                .map(|(e, lineage)| pb::EmailAddress {
                    address: e.address,
                    label: e.label,
                    primary: e.primary,
                    lineage,
                })
                .collect(),
            phones: view
                .phones
                .into_iter()
                .zip(lineages(view.point_lineage.phones))
                .map(|(p, lineage)| pb::PhoneNumber { number: p.number, label: p.label, primary: p.primary, lineage })
                .collect(),
            addresses: view
                .addresses
                .into_iter()
                .zip(lineages(view.point_lineage.addresses))
                .map(|(a, lineage)| pb::PostalAddress { lineage, ..pb::PostalAddress::from(a) })
                .collect(),
            birth_date: view.birth_date.unwrap_or_default(),
            primary_contact_id: view.primary_contact_id.map(|id| id.to_string()).unwrap_or_default(),
            attributes: Some(json_into_struct(view.attributes)),
            external_ids: view
                .external_ids
                .into_iter()
                .zip(lineages(view.point_lineage.external_ids))
                .map(|(x, lineage)| pb::ExternalId { source: x.source, id: x.id, lineage })
                .collect(),
            lineage: view.lineage.into_iter().map(|(field, l)| (field, field_lineage(l))).collect(),
            completeness: view.completeness,
            create_time: Some(timestamp(view.created_at)),
            update_time: Some(timestamp(view.updated_at)),
            etag,
            masked_fields: view.disclosure.masked,
            hidden_fields: view.disclosure.hidden,
            merged_into: view.merged_into.map(|id| id.to_string()).unwrap_or_default(),
            redirected_from: view.redirected_from.map(|id| id.to_string()).unwrap_or_default(),
        }
    }
}

/// The wire form of one lineage entry.
fn field_lineage(l: Lineage) -> pb::FieldLineage {
    pb::FieldLineage { source: l.source, update_time: Some(timestamp(l.updated_at)) }
}

/// Per item of a list, its lineage on the wire, endlessly (a list withheld
/// has none, and zipping with it must not cut the list short).
fn lineages(list: Vec<Option<Lineage>>) -> impl Iterator<Item = Option<pb::FieldLineage>> {
    list.into_iter().map(|l| l.map(field_lineage)).chain(std::iter::repeat(None))
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

impl From<PostalAddress> for pb::PostalAddress {
    fn from(a: PostalAddress) -> Self {
        pb::PostalAddress {
            lines: a.lines,
            locality: a.locality,
            region: a.region,
            postal_code: a.postal_code,
            country_code: a.country_code,
            label: a.label,
            lineage: None,
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

/// A protobuf timestamp as a time; an error for one out of range.
pub fn from_timestamp(time: Option<Timestamp>) -> Result<DateTime<Utc>, String> {
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

/// JSON object → `google.protobuf.Struct`, consuming it (no copies of its strings).
pub fn json_into_struct(map: Map<String, Value>) -> Struct {
    Struct { fields: map.into_iter().map(|(k, v)| (k, json_into_value(v))).collect() }
}

fn json_into_value(value: Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(ListValue { values: items.into_iter().map(json_into_value).collect() }),
        Value::Object(map) => Kind::StructValue(json_into_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
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
