//! The cache's own encoding of a stored profile: protobuf, from messages
//! declared here rather than the API's, so cached bytes are always the whole
//! stored record (never a caller's masked or unmasked view) and a change to
//! the API cannot change what the cache reads. Changing these messages in
//! an incompatible way means raising `keys::SCHEMA`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use prost::Message;

use crate::domain::{
    ProfileId, TenantId,
    profile::{Email, ExternalId, Lineage, Phone, PostalAddress, Profile, ProfileData, ProfileKind, ProfileStatus},
};

#[derive(Clone, PartialEq, Message)]
struct CachedProfile {
    #[prost(bytes = "vec", tag = "1")]
    id: Vec<u8>,
    #[prost(string, tag = "2")]
    kind: String,
    #[prost(string, tag = "3")]
    status: String,
    #[prost(string, optional, tag = "4")]
    given_name: Option<String>,
    #[prost(string, optional, tag = "5")]
    family_name: Option<String>,
    #[prost(string, optional, tag = "6")]
    company_name: Option<String>,
    #[prost(string, optional, tag = "7")]
    segment: Option<String>,
    #[prost(message, repeated, tag = "8")]
    emails: Vec<CachedContact>,
    #[prost(message, repeated, tag = "9")]
    phones: Vec<CachedContact>,
    #[prost(message, repeated, tag = "10")]
    addresses: Vec<CachedAddress>,
    /// Days since 0001-01-01 (chrono's CE day number).
    #[prost(int32, optional, tag = "11")]
    birth_date: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "12")]
    primary_contact_id: Option<Vec<u8>>,
    /// The attributes object as JSON.
    #[prost(bytes = "vec", tag = "13")]
    attributes: Vec<u8>,
    #[prost(message, repeated, tag = "14")]
    external_ids: Vec<CachedExternalId>,
    #[prost(btree_map = "string, message", tag = "15")]
    lineage: BTreeMap<String, CachedLineage>,
    #[prost(int64, tag = "16")]
    version: i64,
    #[prost(int64, tag = "17")]
    created_at_micros: i64,
    #[prost(int64, tag = "18")]
    updated_at_micros: i64,
    #[prost(bytes = "vec", optional, tag = "19")]
    merged_into: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct CachedContact {
    #[prost(string, tag = "1")]
    value: String,
    #[prost(string, tag = "2")]
    label: String,
    #[prost(bool, tag = "3")]
    primary: bool,
}

#[derive(Clone, PartialEq, Message)]
struct CachedAddress {
    #[prost(string, repeated, tag = "1")]
    lines: Vec<String>,
    #[prost(string, tag = "2")]
    locality: String,
    #[prost(string, tag = "3")]
    region: String,
    #[prost(string, tag = "4")]
    postal_code: String,
    #[prost(string, tag = "5")]
    country_code: String,
    #[prost(string, tag = "6")]
    label: String,
}

#[derive(Clone, PartialEq, Message)]
struct CachedExternalId {
    #[prost(string, tag = "1")]
    source: String,
    #[prost(string, tag = "2")]
    id: String,
}

#[derive(Clone, PartialEq, Message)]
struct CachedLineage {
    #[prost(string, tag = "1")]
    source: String,
    #[prost(int64, tag = "2")]
    updated_at_micros: i64,
}

/// The bytes of `profile` as the cache stores them.
pub fn encode(profile: &Profile) -> Vec<u8> {
    let data = &profile.data;
    let contact = |value: &String, label: &String, primary: bool| CachedContact {
        value: value.clone(),
        label: label.clone(),
        primary,
    };
    CachedProfile {
        id: profile.id.as_uuid().as_bytes().to_vec(),
        kind: data.kind.as_str().to_owned(),
        status: data.status.as_str().to_owned(),
        given_name: data.given_name.clone(),
        family_name: data.family_name.clone(),
        company_name: data.company_name.clone(),
        segment: data.segment.clone(),
        emails: data.emails.iter().map(|e| contact(&e.address, &e.label, e.primary)).collect(),
        phones: data.phones.iter().map(|p| contact(&p.number, &p.label, p.primary)).collect(),
        addresses: data
            .addresses
            .iter()
            .map(|a| CachedAddress {
                lines: a.lines.clone(),
                locality: a.locality.clone(),
                region: a.region.clone(),
                postal_code: a.postal_code.clone(),
                country_code: a.country_code.clone(),
                label: a.label.clone(),
            })
            .collect(),
        birth_date: data.birth_date.map(|d| chrono::Datelike::num_days_from_ce(&d)),
        primary_contact_id: data.primary_contact_id.map(|id| id.as_uuid().as_bytes().to_vec()),
        attributes: serde_json::to_vec(&data.attributes).unwrap_or_default(),
        external_ids: data
            .external_ids
            .iter()
            .map(|x| CachedExternalId { source: x.source.clone(), id: x.id.clone() })
            .collect(),
        lineage: profile
            .lineage
            .iter()
            .map(|(field, l)| {
                (
                    field.clone(),
                    CachedLineage { source: l.source.clone(), updated_at_micros: l.updated_at.timestamp_micros() },
                )
            })
            .collect(),
        version: profile.version,
        created_at_micros: profile.created_at.timestamp_micros(),
        updated_at_micros: profile.updated_at.timestamp_micros(),
        merged_into: profile.merged_into.map(|id| id.as_uuid().as_bytes().to_vec()),
    }
    .encode_to_vec()
}

/// The profile `bytes` encode, of `tenant`; an error for bytes this release
/// cannot read (the caller treats them as a miss).
pub fn decode(bytes: &[u8], tenant: &TenantId) -> Result<Profile, String> {
    let c = CachedProfile::decode(bytes).map_err(|e| e.to_string())?;
    let id = |raw: &[u8]| uuid::Uuid::from_slice(raw).map(ProfileId::from).map_err(|e| e.to_string());
    let time = |micros: i64| DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(|| format!("time {micros}"));
    Ok(Profile {
        id: id(&c.id)?,
        tenant: tenant.clone(),
        data: ProfileData {
            kind: ProfileKind::parse(&c.kind).ok_or_else(|| format!("kind {}", c.kind))?,
            status: ProfileStatus::parse(&c.status).ok_or_else(|| format!("status {}", c.status))?,
            given_name: c.given_name,
            family_name: c.family_name,
            company_name: c.company_name,
            segment: c.segment,
            emails: c
                .emails
                .into_iter()
                .map(|e| Email { address: e.value, label: e.label, primary: e.primary })
                .collect(),
            phones: c
                .phones
                .into_iter()
                .map(|p| Phone { number: p.value, label: p.label, primary: p.primary })
                .collect(),
            addresses: c
                .addresses
                .into_iter()
                .map(|a| PostalAddress {
                    lines: a.lines,
                    locality: a.locality,
                    region: a.region,
                    postal_code: a.postal_code,
                    country_code: a.country_code,
                    label: a.label,
                })
                .collect(),
            birth_date: c
                .birth_date
                .map(|days| NaiveDate::from_num_days_from_ce_opt(days).ok_or_else(|| format!("birth date {days}")))
                .transpose()?,
            primary_contact_id: c.primary_contact_id.as_deref().map(id).transpose()?,
            attributes: serde_json::from_slice(&c.attributes).map_err(|e| e.to_string())?,
            external_ids: c.external_ids.into_iter().map(|x| ExternalId { source: x.source, id: x.id }).collect(),
        },
        lineage: c
            .lineage
            .into_iter()
            .map(|(field, l)| Ok((field, Lineage { source: l.source, updated_at: time(l.updated_at_micros)? })))
            .collect::<Result<_, String>>()?,
        version: c.version,
        created_at: time(c.created_at_micros)?,
        updated_at: time(c.updated_at_micros)?,
        merged_into: c.merged_into.as_deref().map(id).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_profile_survives_the_round_trip() {
        let now = DateTime::<Utc>::from_timestamp_micros(1_764_000_000_123_456).expect("time");
        let mut lineage = BTreeMap::new();
        lineage.insert("given_name".to_owned(), Lineage { source: "crm".into(), updated_at: now });
        let profile = Profile {
            id: ProfileId::generate(),
            tenant: TenantId::parse("acme").expect("tenant"),
            data: ProfileData {
                kind: ProfileKind::Organization,
                status: ProfileStatus::Prospect,
                given_name: Some("Ada".into()),
                family_name: None,
                company_name: Some("Acme".into()),
                segment: Some("b2b".into()),
                emails: vec![Email { address: "a@example.com".into(), label: "work".into(), primary: true }],
                phones: vec![Phone { number: "+14155550123".into(), label: String::new(), primary: false }],
                addresses: vec![PostalAddress {
                    lines: vec!["1 Main St".into()],
                    locality: "Springfield".into(),
                    country_code: "US".into(),
                    ..Default::default()
                }],
                birth_date: NaiveDate::from_ymd_opt(1985, 4, 12),
                primary_contact_id: Some(ProfileId::generate()),
                attributes: json!({"tier": "gold", "n": 3, "x": [1.5, null]}).as_object().cloned().expect("object"),
                external_ids: vec![ExternalId { source: "pos".into(), id: "42".into() }],
            },
            lineage,
            version: 7,
            created_at: now,
            updated_at: now,
            merged_into: Some(ProfileId::generate()),
        };
        let tenant = profile.tenant.clone();
        assert_eq!(decode(&encode(&profile), &tenant).expect("decodes"), profile);
        assert!(decode(b"\xff\xff", &tenant).is_err());
    }
}
