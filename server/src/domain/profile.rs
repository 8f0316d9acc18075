//! The profile (golden record): its fields, the rules a valid profile follows,
//! field masks, completeness and lineage.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    ProfileId, TenantId,
    consent::{ContactKind, ContactPoint},
    error::{DomainError, Violations},
    identifiers::{
        IdentifierKey, IdentifierType, NormalizationPolicy, fold_for_search, normalize_external_id, normalize_source,
    },
    privacy::{FieldClass, looks_masked},
};

/// Whether a profile is a person or an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileKind {
    /// A natural person.
    Person,
    /// A company or other organization.
    Organization,
}

impl ProfileKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "PERSON",
            Self::Organization => "ORGANIZATION",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "PERSON" => Some(Self::Person),
            "ORGANIZATION" => Some(Self::Organization),
            _ => None,
        }
    }
}

/// Lifecycle of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileStatus {
    /// Known from an interaction or lead, not yet a customer.
    Prospect,
    /// A customer.
    Active,
    /// Soft-deleted: kept for history, identifiers released.
    Inactive,
    /// Merged into another profile (set by merges only).
    Merged,
    /// Personal data erased (set by erasure only).
    Erased,
}

impl ProfileStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prospect => "PROSPECT",
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
            Self::Merged => "MERGED",
            Self::Erased => "ERASED",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "PROSPECT" => Some(Self::Prospect),
            "ACTIVE" => Some(Self::Active),
            "INACTIVE" => Some(Self::Inactive),
            "MERGED" => Some(Self::Merged),
            "ERASED" => Some(Self::Erased),
            _ => None,
        }
    }

    /// Whether the profile holds identifiers and accepts writes.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Prospect | Self::Active)
    }
}

/// An email address of a profile (normalized).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// Trimmed, lower-cased address.
    pub address: String,
    /// Free label.
    #[serde(default)]
    pub label: String,
    /// Preferred address.
    #[serde(default)]
    pub primary: bool,
}

/// A phone number of a profile (E.164).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    /// E.164 number.
    pub number: String,
    /// Free label.
    #[serde(default)]
    pub label: String,
    /// Preferred number.
    #[serde(default)]
    pub primary: bool,
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PostalAddress {
    /// Street lines.
    pub lines: Vec<String>,
    /// City or town.
    pub locality: String,
    /// State, province or county.
    pub region: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper-case.
    pub country_code: String,
    /// Free label.
    pub label: String,
}

/// An id of the customer in another system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalId {
    /// Normalized source system name.
    pub source: String,
    /// The id there.
    pub id: String,
}

/// Where a field's value came from and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// Source system named by the write.
    pub source: String,
    /// When the value was set.
    #[serde(deserialize_with = "utc_time")]
    pub updated_at: DateTime<Utc>,
}

/// Reads a stored UTC time. Every profile read from the database decodes
/// one per field of its lineage, and chrono's general RFC 3339 parser was
/// a tenth of a cold read's CPU (docs/performance.md): the form c360 writes
/// (`2026-12-03T10:57:16.744630Z`, or `+00:00`) is read directly, anything
/// else by chrono.
fn utc_time<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
    if let Some(time) = utc_time_fast(&text) {
        return Ok(time);
    }
    DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+00:00)`, or `None`.
fn utc_time_fast(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<u32> {
        b.get(from..from + len)?.iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(digits(0, 4)? as i32, digits(5, 2)?, digits(8, 2)?)?;
    let (mut at, mut nanos) = (19, 0u32);
    if b[at] == b'.' {
        let start = at + 1;
        at = start;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        let len = at - start;
        if len == 0 || len > 9 {
            return None;
        }
        nanos = digits(start, len)? * 10u32.pow(9 - len as u32);
    }
    if &b[at..] != b"Z" && &b[at..] != b"+00:00" {
        return None;
    }
    let time = chrono::NaiveTime::from_hms_nano_opt(digits(11, 2)?, digits(14, 2)?, digits(17, 2)?, nanos)?;
    Some(date.and_time(time).and_utc())
}

/// The fields a caller can set, named as in field masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProfileField {
    /// `kind`
    Kind,
    /// `status`
    Status,
    /// `given_name`
    GivenName,
    /// `family_name`
    FamilyName,
    /// `company_name`
    CompanyName,
    /// `segment`
    Segment,
    /// `emails`
    Emails,
    /// `phones`
    Phones,
    /// `addresses`
    Addresses,
    /// `birth_date`
    BirthDate,
    /// `primary_contact_id`
    PrimaryContactId,
    /// `attributes`
    Attributes,
    /// `external_ids`
    ExternalIds,
}

impl ProfileField {
    /// Every settable field, in schema order.
    pub const ALL: [Self; 13] = [
        Self::Kind,
        Self::Status,
        Self::GivenName,
        Self::FamilyName,
        Self::CompanyName,
        Self::Segment,
        Self::Emails,
        Self::Phones,
        Self::Addresses,
        Self::BirthDate,
        Self::PrimaryContactId,
        Self::Attributes,
        Self::ExternalIds,
    ];

    /// Field-mask path and lineage key (the proto field name).
    pub fn path(self) -> &'static str {
        match self {
            Self::Kind => "kind",
            Self::Status => "status",
            Self::GivenName => "given_name",
            Self::FamilyName => "family_name",
            Self::CompanyName => "company_name",
            Self::Segment => "segment",
            Self::Emails => "emails",
            Self::Phones => "phones",
            Self::Addresses => "addresses",
            Self::BirthDate => "birth_date",
            Self::PrimaryContactId => "primary_contact_id",
            Self::Attributes => "attributes",
            Self::ExternalIds => "external_ids",
        }
    }

    /// Name in domain events' `changedFields` (lowerCamelCase, like the envelope).
    pub fn event_name(self) -> &'static str {
        match self {
            Self::Kind => "kind",
            Self::Status => "status",
            Self::GivenName => "givenName",
            Self::FamilyName => "familyName",
            Self::CompanyName => "companyName",
            Self::Segment => "segment",
            Self::Emails => "emails",
            Self::Phones => "phones",
            Self::Addresses => "addresses",
            Self::BirthDate => "birthDate",
            Self::PrimaryContactId => "primaryContactId",
            Self::Attributes => "attributes",
            Self::ExternalIds => "externalIds",
        }
    }

    /// Parses a field-mask path.
    pub fn parse_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|field| field.path() == path)
    }

    /// The kind of data the field holds, for the masking policy. Attributes
    /// are refined key by key by the tenant's settings.
    pub fn class(self) -> FieldClass {
        match self {
            Self::Kind | Self::Status | Self::PrimaryContactId => FieldClass::Record,
            Self::GivenName | Self::FamilyName => FieldClass::Name,
            Self::CompanyName => FieldClass::OrganizationName,
            Self::Segment => FieldClass::Segment,
            Self::Emails => FieldClass::Email,
            Self::Phones => FieldClass::Phone,
            Self::Addresses => FieldClass::Address,
            Self::BirthDate => FieldClass::BirthDate,
            Self::Attributes => FieldClass::Attribute,
            Self::ExternalIds => FieldClass::ExternalId,
        }
    }
}

/// Every caller-settable value of a profile, validated and normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileData {
    /// Person or organization.
    pub kind: ProfileKind,
    /// Lifecycle status.
    pub status: ProfileStatus,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Company name.
    pub company_name: Option<String>,
    /// Segment.
    pub segment: Option<String>,
    /// Email addresses.
    pub emails: Vec<Email>,
    /// Phone numbers.
    pub phones: Vec<Phone>,
    /// Postal addresses.
    pub addresses: Vec<PostalAddress>,
    /// Date of birth.
    pub birth_date: Option<NaiveDate>,
    /// Primary contact of an organization.
    pub primary_contact_id: Option<ProfileId>,
    /// Free-form traits.
    pub attributes: Map<String, Value>,
    /// Ids in other systems.
    pub external_ids: Vec<ExternalId>,
}

impl Default for ProfileData {
    fn default() -> Self {
        Self {
            kind: ProfileKind::Person,
            status: ProfileStatus::Active,
            given_name: None,
            family_name: None,
            company_name: None,
            segment: None,
            emails: Vec::new(),
            phones: Vec::new(),
            addresses: Vec::new(),
            birth_date: None,
            primary_contact_id: None,
            attributes: Map::new(),
            external_ids: Vec::new(),
        }
    }
}

/// A stored profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Its id.
    pub id: ProfileId,
    /// Owning tenant.
    pub tenant: TenantId,
    /// The values.
    pub data: ProfileData,
    /// Per field: source and update time.
    pub lineage: BTreeMap<String, Lineage>,
    /// Version for optimistic concurrency, from 1.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// For a MERGED profile: the profile it resolves to.
    pub merged_into: Option<ProfileId>,
}

impl AsRef<Profile> for Profile {
    fn as_ref(&self) -> &Profile {
        self
    }
}

impl Profile {
    /// The etag callers send back on update: the version, as opaque text.
    pub fn etag(&self) -> String {
        self.version.to_string()
    }

    /// Where one contact point or external id of this profile came from:
    /// its own lineage, or (recorded before contact points had their own)
    /// its field's, while the profile holds it.
    pub fn point_lineage(&self, key: &str) -> Option<&Lineage> {
        self.lineage
            .get(key)
            .or_else(|| self.data.point_keys().any(|k| k == key).then(|| self.held_point_lineage(key))?)
    }

    /// [`Self::point_lineage`] of a contact point the caller knows the
    /// profile holds (one of its own lists): without looking for it again,
    /// which every read would otherwise do for every point of an older
    /// profile.
    pub fn held_point_lineage(&self, key: &str) -> Option<&Lineage> {
        self.lineage.get(key).or_else(|| self.lineage.get(point_field(key)?))
    }
}

/// One contact point or external id, as a key of its profile's lineage:
/// `emails/<address>`, `phones/<E.164>`, `external_ids/<source>/<id>`,
/// `addresses/<lines>|<locality>|<postal code>|<country>` (folded as
/// merges compare places). Each keeps the source and time of the write that
/// brought it, so a union of several sources' contact points can be told
/// apart; views show it on the contact point, never as a key, since the key
/// holds the value.
pub trait PointKey {
    /// Its lineage key.
    fn point_key(&self) -> String;
}

impl PointKey for Email {
    fn point_key(&self) -> String {
        format!("emails/{}", self.address.to_lowercase())
    }
}

impl PointKey for Phone {
    fn point_key(&self) -> String {
        format!("phones/{}", self.number)
    }
}

impl PointKey for PostalAddress {
    fn point_key(&self) -> String {
        let fold = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        let lines: Vec<String> = self.lines.iter().map(|l| fold(l)).collect();
        format!(
            "addresses/{}|{}|{}|{}",
            lines.join("; "),
            fold(&self.locality),
            fold(&self.postal_code),
            self.country_code
        )
    }
}

impl PointKey for ExternalId {
    fn point_key(&self) -> String {
        format!("external_ids/{}/{}", self.source, self.id)
    }
}

/// The fields whose values are lists of contact points or external ids.
const POINT_FIELDS: [ProfileField; 4] =
    [ProfileField::Emails, ProfileField::Phones, ProfileField::Addresses, ProfileField::ExternalIds];

/// The field of a contact point's lineage key (`emails` of `emails/a@b`);
/// `None` for a field's own key.
fn point_field(key: &str) -> Option<&str> {
    key.split_once('/').map(|(field, _)| field).filter(|field| POINT_FIELDS.iter().any(|f| f.path() == *field))
}

/// Whether a lineage key names one contact point rather than a field.
pub fn is_point_key(key: &str) -> bool {
    point_field(key).is_some()
}

/// Gives each contact point of `before` without lineage of its own
/// (recorded before contact points had their own) its field's, so that a
/// write keeping it does not take it over.
pub fn adopt_field_lineage(lineage: &mut BTreeMap<String, Lineage>, before: &ProfileData) {
    for key in before.point_keys() {
        if !lineage.contains_key(&key)
            && let Some(entry) = point_field(&key).and_then(|field| lineage.get(field)).cloned()
        {
            lineage.insert(key, entry);
        }
    }
}

/// Brings the contact points' lineage in line with `data`: entries of
/// points it no longer holds go, points without one get `fill`'s.
pub fn settle_point_lineage(
    lineage: &mut BTreeMap<String, Lineage>,
    data: &ProfileData,
    mut fill: impl FnMut(&str) -> Option<Lineage>,
) {
    let keys: std::collections::BTreeSet<String> = data.point_keys().collect();
    lineage.retain(|key, _| !is_point_key(key) || keys.contains(key));
    for key in keys {
        if !lineage.contains_key(&key)
            && let Some(entry) = fill(&key)
        {
            lineage.insert(key, entry);
        }
    }
}

/// Parses an etag sent by a caller; `None` when it was empty.
pub fn parse_etag(raw: &str) -> Result<Option<i64>, DomainError> {
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.trim_matches('"').parse::<i64>() {
        Ok(version) if version > 0 => Ok(Some(version)),
        _ => Err(DomainError::invalid("etag", "not an etag returned by this service")),
    }
}

/// An enumeration value as sent by a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice<T> {
    /// Not set (the zero value).
    #[default]
    Unset,
    /// A known value.
    Set(T),
    /// A value this version does not know (e.g. an unknown enum number).
    Unknown(i32),
}

/// A profile as sent by a caller, before validation.
#[derive(Debug, Clone, Default)]
pub struct ProfileInput {
    /// Person or organization.
    pub kind: Choice<ProfileKind>,
    /// Lifecycle status.
    pub status: Choice<ProfileStatus>,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Company name.
    pub company_name: String,
    /// Segment.
    pub segment: String,
    /// Emails (address, label, primary).
    pub emails: Vec<Email>,
    /// Phones (number in any format, label, primary).
    pub phones: Vec<Phone>,
    /// Addresses.
    pub addresses: Vec<PostalAddress>,
    /// YYYY-MM-DD.
    pub birth_date: String,
    /// A profile id.
    pub primary_contact_id: String,
    /// Free-form traits.
    pub attributes: Map<String, Value>,
    /// Ids in other systems.
    pub external_ids: Vec<ExternalId>,
}

/// Limits on profile values, documented in `docs/profiles.md`.
pub mod limits {
    /// Characters in a given or family name.
    pub const NAME: usize = 200;
    /// Characters in a company name.
    pub const COMPANY_NAME: usize = 300;
    /// Characters in a segment.
    pub const SEGMENT: usize = 100;
    /// Characters in a label or address part.
    pub const LABEL: usize = 50;
    /// Characters in an address line, locality, region or postal code.
    pub const ADDRESS_PART: usize = 200;
    /// Lines in one address.
    pub const ADDRESS_LINES: usize = 5;
    /// Emails, phones or addresses on one profile.
    pub const CONTACTS: usize = 20;
    /// External ids on one profile.
    pub const EXTERNAL_IDS: usize = 50;
    /// Bytes of the attributes object, encoded as JSON.
    pub const ATTRIBUTES_BYTES: usize = 64 * 1024;
    /// Characters in an attribute key.
    pub const ATTRIBUTE_KEY: usize = 128;

    /// Checks an attribute key named in settings or matching: not blank, at
    /// most [`ATTRIBUTE_KEY`] characters.
    pub fn attribute_key(key: &str) -> Result<(), String> {
        if key.trim().is_empty() || key.chars().count() > ATTRIBUTE_KEY {
            return Err(format!("an attribute key has 1 to {ATTRIBUTE_KEY} characters"));
        }
        Ok(())
    }
}

impl ProfileInput {
    /// The fields a caller populated: an empty update mask means these.
    pub fn populated_fields(&self) -> Vec<ProfileField> {
        ProfileField::ALL
            .into_iter()
            .filter(|field| match field {
                ProfileField::Kind => self.kind != Choice::Unset,
                ProfileField::Status => self.status != Choice::Unset,
                ProfileField::GivenName => !self.given_name.is_empty(),
                ProfileField::FamilyName => !self.family_name.is_empty(),
                ProfileField::CompanyName => !self.company_name.is_empty(),
                ProfileField::Segment => !self.segment.is_empty(),
                ProfileField::Emails => !self.emails.is_empty(),
                ProfileField::Phones => !self.phones.is_empty(),
                ProfileField::Addresses => !self.addresses.is_empty(),
                ProfileField::BirthDate => !self.birth_date.is_empty(),
                ProfileField::PrimaryContactId => !self.primary_contact_id.is_empty(),
                ProfileField::Attributes => !self.attributes.is_empty(),
                ProfileField::ExternalIds => !self.external_ids.is_empty(),
            })
            .collect()
    }

    /// Whether `field` holds a value in masked form: what a masked view
    /// shows must never be written back over the real value.
    pub fn carries_mask(&self, field: ProfileField) -> bool {
        fn json(value: &Value) -> bool {
            match value {
                Value::String(s) => looks_masked(s),
                Value::Array(items) => items.iter().any(json),
                Value::Object(map) => map.values().any(json),
                _ => false,
            }
        }
        match field {
            ProfileField::Kind | ProfileField::Status | ProfileField::PrimaryContactId => false,
            ProfileField::GivenName => looks_masked(&self.given_name),
            ProfileField::FamilyName => looks_masked(&self.family_name),
            ProfileField::CompanyName => looks_masked(&self.company_name),
            ProfileField::Segment => looks_masked(&self.segment),
            ProfileField::Emails => self.emails.iter().any(|e| looks_masked(&e.address)),
            ProfileField::Phones => self.phones.iter().any(|p| looks_masked(&p.number)),
            ProfileField::Addresses => self.addresses.iter().any(|a| {
                a.lines.iter().any(|l| looks_masked(l))
                    || [&a.locality, &a.region, &a.postal_code].into_iter().any(|part| looks_masked(part))
            }),
            ProfileField::BirthDate => looks_masked(&self.birth_date),
            ProfileField::Attributes => self.attributes.values().any(json),
            ProfileField::ExternalIds => self.external_ids.iter().any(|x| looks_masked(&x.id)),
        }
    }

    /// Validates the named fields into `base` (fields not named keep `base`'s
    /// values), recording every problem under `prefix` (e.g. `profile`).
    /// Unset enums keep `base`'s value on create and are refused on update.
    pub fn apply_to(
        &self,
        base: &ProfileData,
        fields: &[ProfileField],
        policy: &NormalizationPolicy,
        creating: bool,
        violations: &mut Violations,
    ) -> ProfileData {
        let mut data = base.clone();
        let at = |name: &str| format!("profile.{name}");
        for &field in fields {
            let path = at(field.path());
            if self.carries_mask(field) {
                violations.add(path, "holds a masked value (***): send the real value, or leave the field out");
                continue;
            }
            match field {
                ProfileField::Kind => match self.kind {
                    Choice::Set(kind) => data.kind = kind,
                    Choice::Unset if creating => {}
                    Choice::Unset => violations.add(path, "required"),
                    Choice::Unknown(n) => violations.add(path, format!("unknown kind {n}")),
                },
                ProfileField::Status => match self.status {
                    Choice::Set(status @ (ProfileStatus::Prospect | ProfileStatus::Active)) => {
                        data.status = status;
                    }
                    Choice::Set(ProfileStatus::Inactive) => {
                        violations.add(path, "a profile becomes INACTIVE through DeleteProfile")
                    }
                    Choice::Set(other) => {
                        violations.add(path, format!("{} is set by the service only", other.as_str()))
                    }
                    Choice::Unset if creating => {}
                    Choice::Unset => violations.add(path, "required"),
                    Choice::Unknown(n) => violations.add(path, format!("unknown status {n}")),
                },
                ProfileField::GivenName => {
                    data.given_name = violations.check(&path, text(&self.given_name, limits::NAME)).flatten();
                }
                ProfileField::FamilyName => {
                    data.family_name = violations.check(&path, text(&self.family_name, limits::NAME)).flatten();
                }
                ProfileField::CompanyName => {
                    data.company_name =
                        violations.check(&path, text(&self.company_name, limits::COMPANY_NAME)).flatten();
                }
                ProfileField::Segment => {
                    data.segment = violations.check(&path, text(&self.segment, limits::SEGMENT)).flatten();
                }
                ProfileField::Emails => data.emails = self.valid_emails(&path, policy, violations),
                ProfileField::Phones => data.phones = self.valid_phones(&path, policy, violations),
                ProfileField::Addresses => data.addresses = self.valid_addresses(&path, violations),
                ProfileField::BirthDate => {
                    data.birth_date = violations.check(&path, birth_date(&self.birth_date)).flatten();
                }
                ProfileField::PrimaryContactId => {
                    data.primary_contact_id = if self.primary_contact_id.is_empty() {
                        None
                    } else {
                        violations.check(&path, ProfileId::parse(&self.primary_contact_id))
                    };
                }
                ProfileField::Attributes => {
                    if let Err(problem) = check_attributes(&self.attributes) {
                        violations.add(path, problem);
                    }
                    data.attributes = self.attributes.clone();
                }
                ProfileField::ExternalIds => {
                    data.external_ids = self.valid_external_ids(&path, violations);
                }
            }
        }
        data
    }

    fn valid_emails(&self, path: &str, policy: &NormalizationPolicy, v: &mut Violations) -> Vec<Email> {
        if self.emails.len() > limits::CONTACTS {
            v.add(path, format!("at most {} emails", limits::CONTACTS));
            return Vec::new();
        }
        let mut emails = Vec::with_capacity(self.emails.len());
        for (i, email) in self.emails.iter().enumerate() {
            let address = v.check(format!("{path}[{i}].address"), policy.email(&email.address));
            let label = v.check(format!("{path}[{i}].label"), label(&email.label));
            if let (Some(address), Some(label)) = (address, label) {
                emails.push(Email { address: address.address, label, primary: email.primary });
            }
        }
        emails
    }

    fn valid_phones(&self, path: &str, policy: &NormalizationPolicy, v: &mut Violations) -> Vec<Phone> {
        if self.phones.len() > limits::CONTACTS {
            v.add(path, format!("at most {} phones", limits::CONTACTS));
            return Vec::new();
        }
        let mut phones = Vec::with_capacity(self.phones.len());
        for (i, phone) in self.phones.iter().enumerate() {
            let number = v.check(format!("{path}[{i}].number"), policy.phone(&phone.number));
            let label = v.check(format!("{path}[{i}].label"), label(&phone.label));
            if let (Some(number), Some(label)) = (number, label) {
                phones.push(Phone { number, label, primary: phone.primary });
            }
        }
        phones
    }

    fn valid_addresses(&self, path: &str, v: &mut Violations) -> Vec<PostalAddress> {
        if self.addresses.len() > limits::CONTACTS {
            v.add(path, format!("at most {} addresses", limits::CONTACTS));
            return Vec::new();
        }
        let mut addresses = Vec::with_capacity(self.addresses.len());
        for (i, raw) in self.addresses.iter().enumerate() {
            let at = |part: &str| format!("{path}[{i}].{part}");
            let part = |v: &mut Violations, name: &str, value: &str| {
                v.check(at(name), text(value, limits::ADDRESS_PART)).flatten().unwrap_or_default()
            };
            if raw.lines.len() > limits::ADDRESS_LINES {
                v.add(at("lines"), format!("at most {} lines", limits::ADDRESS_LINES));
            }
            let lines: Vec<String> = raw
                .lines
                .iter()
                .enumerate()
                .filter_map(|(n, line)| v.check(at(&format!("lines[{n}]")), text(line, limits::ADDRESS_PART)).flatten())
                .collect();
            let address = PostalAddress {
                lines,
                locality: part(v, "locality", &raw.locality),
                region: part(v, "region", &raw.region),
                postal_code: part(v, "postal_code", &raw.postal_code),
                country_code: v.check(at("country_code"), country_code(&raw.country_code)).unwrap_or_default(),
                label: v.check(at("label"), label(&raw.label)).unwrap_or_default(),
            };
            if address.lines.is_empty() && address.locality.is_empty() && address.postal_code.is_empty() {
                v.add(format!("{path}[{i}]"), "an address needs a line, a locality or a postal code");
            }
            addresses.push(address);
        }
        addresses
    }

    fn valid_external_ids(&self, path: &str, v: &mut Violations) -> Vec<ExternalId> {
        if self.external_ids.len() > limits::EXTERNAL_IDS {
            v.add(path, format!("at most {} external ids", limits::EXTERNAL_IDS));
            return Vec::new();
        }
        let mut ids = Vec::with_capacity(self.external_ids.len());
        for (i, raw) in self.external_ids.iter().enumerate() {
            let source = v.check(format!("{path}[{i}].source"), normalize_source(&raw.source));
            let id = v.check(format!("{path}[{i}].id"), normalize_external_id(&raw.id));
            if let (Some(source), Some(id)) = (source, id) {
                ids.push(ExternalId { source, id });
            }
        }
        ids
    }
}

impl ProfileData {
    /// Whether the profile holds `point` (emails compared by identity key).
    pub fn holds(&self, point: &ContactPoint, policy: &NormalizationPolicy) -> bool {
        holds(&self.emails, &self.phones, point, policy)
    }

    /// Sets `field` to `from`'s value.
    pub fn copy_field(&mut self, from: &ProfileData, field: ProfileField) {
        match field {
            ProfileField::Kind => self.kind = from.kind,
            ProfileField::Status => self.status = from.status,
            ProfileField::GivenName => self.given_name.clone_from(&from.given_name),
            ProfileField::FamilyName => self.family_name.clone_from(&from.family_name),
            ProfileField::CompanyName => self.company_name.clone_from(&from.company_name),
            ProfileField::Segment => self.segment.clone_from(&from.segment),
            ProfileField::Emails => self.emails.clone_from(&from.emails),
            ProfileField::Phones => self.phones.clone_from(&from.phones),
            ProfileField::Addresses => self.addresses.clone_from(&from.addresses),
            ProfileField::BirthDate => self.birth_date = from.birth_date,
            ProfileField::PrimaryContactId => self.primary_contact_id = from.primary_contact_id,
            ProfileField::Attributes => self.attributes.clone_from(&from.attributes),
            ProfileField::ExternalIds => self.external_ids.clone_from(&from.external_ids),
        }
    }

    /// Checks the rules that involve several fields, on the profile as it
    /// would be stored.
    pub fn check_consistency(&self, policy: &NormalizationPolicy, violations: &mut Violations) {
        match self.kind {
            ProfileKind::Organization if self.company_name.is_none() => {
                violations.add("profile.company_name", "required for an organization");
            }
            ProfileKind::Person if self.primary_contact_id.is_some() => {
                violations.add("profile.primary_contact_id", "only an organization has a primary contact");
            }
            ProfileKind::Person
                if self.given_name.is_none()
                    && self.family_name.is_none()
                    && self.emails.is_empty()
                    && self.phones.is_empty()
                    && self.external_ids.is_empty() =>
            {
                violations.add("profile", "a person needs a name, an email, a phone or an external id");
            }
            _ => {}
        }
        if self.emails.iter().filter(|e| e.primary).count() > 1 {
            violations.add("profile.emails", "at most one email is primary");
        }
        if self.phones.iter().filter(|p| p.primary).count() > 1 {
            violations.add("profile.phones", "at most one phone is primary");
        }
        let mut seen: BTreeMap<IdentifierKey, String> = BTreeMap::new();
        for (key, field) in self.identity_keys(policy) {
            if let Some(first) = seen.get(&key) {
                violations.add(field, format!("same identifier as {first}"));
            } else {
                seen.insert(key, field);
            }
        }
    }

    /// The strong identifiers this profile claims in the identity index, each
    /// with the request path it came from.
    pub fn identity_keys(&self, policy: &NormalizationPolicy) -> Vec<(IdentifierKey, String)> {
        let emails = self.emails.iter().enumerate().map(|(i, email)| {
            let value = policy.email_key(&email.address);
            let key = IdentifierKey { id_type: IdentifierType::Email, namespace: String::new(), value };
            (key, format!("profile.emails[{i}].address"))
        });
        let phones = self.phones.iter().enumerate().map(|(i, phone)| {
            let key =
                IdentifierKey { id_type: IdentifierType::Phone, namespace: String::new(), value: phone.number.clone() };
            (key, format!("profile.phones[{i}].number"))
        });
        let external = self.external_ids.iter().enumerate().map(|(i, ext)| {
            let key = IdentifierKey {
                id_type: IdentifierType::ExternalId,
                namespace: ext.source.clone(),
                value: ext.id.clone(),
            };
            (key, format!("profile.external_ids[{i}].id"))
        });
        emails.chain(phones).chain(external).collect()
    }

    /// Share of the key fields that are filled (see `docs/profiles.md`).
    pub fn completeness(&self) -> f64 {
        let filled = match self.kind {
            ProfileKind::Person => [
                self.given_name.is_some(),
                self.family_name.is_some(),
                !self.emails.is_empty(),
                !self.phones.is_empty(),
                !self.addresses.is_empty(),
                self.birth_date.is_some(),
                self.segment.is_some(),
            ],
            ProfileKind::Organization => [
                self.company_name.is_some(),
                !self.emails.is_empty(),
                !self.phones.is_empty(),
                !self.addresses.is_empty(),
                self.segment.is_some(),
                self.primary_contact_id.is_some(),
                !self.external_ids.is_empty(),
            ],
        };
        let count = filled.iter().filter(|&&f| f).count();
        count as f64 / filled.len() as f64
    }

    /// Folded search keys: "given family", "family given", company.
    pub fn name_keys(&self) -> [String; 3] {
        let given = self.given_name.as_deref().map(fold_for_search).unwrap_or_default();
        let family = self.family_name.as_deref().map(fold_for_search).unwrap_or_default();
        let join = |a: &str, b: &str| search_key(format!("{a} {b}").trim());
        [
            join(&given, &family),
            join(&family, &given),
            search_key(&self.company_name.as_deref().map(fold_for_search).unwrap_or_default()),
        ]
    }

    /// The fields whose value differs between `self` and `other`.
    pub fn diff(&self, other: &Self) -> Vec<ProfileField> {
        ProfileField::ALL
            .into_iter()
            .filter(|field| match field {
                ProfileField::Kind => self.kind != other.kind,
                ProfileField::Status => self.status != other.status,
                ProfileField::GivenName => self.given_name != other.given_name,
                ProfileField::FamilyName => self.family_name != other.family_name,
                ProfileField::CompanyName => self.company_name != other.company_name,
                ProfileField::Segment => self.segment != other.segment,
                ProfileField::Emails => self.emails != other.emails,
                ProfileField::Phones => self.phones != other.phones,
                ProfileField::Addresses => self.addresses != other.addresses,
                ProfileField::BirthDate => self.birth_date != other.birth_date,
                ProfileField::PrimaryContactId => self.primary_contact_id != other.primary_contact_id,
                ProfileField::Attributes => self.attributes != other.attributes,
                ProfileField::ExternalIds => self.external_ids != other.external_ids,
            })
            .collect()
    }

    /// The lineage keys of its contact points and external ids.
    pub fn point_keys(&self) -> impl Iterator<Item = String> + '_ {
        (self.emails.iter().map(PointKey::point_key))
            .chain(self.phones.iter().map(PointKey::point_key))
            .chain(self.addresses.iter().map(PointKey::point_key))
            .chain(self.external_ids.iter().map(PointKey::point_key))
    }

    /// Which fields hold a value, for lineage on create.
    pub fn set_fields(&self) -> Vec<ProfileField> {
        self.diff(&Self { kind: self.kind, status: self.status, ..Self::default() })
            .into_iter()
            .chain([ProfileField::Kind, ProfileField::Status])
            .collect()
    }
}

/// The current time at the precision the stores keep (microseconds), so a
/// value returned by a write equals the value a later read returns.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// What a consent write checks of a profile: whether it is live, and its
/// contact points.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileContacts {
    /// The profile.
    pub id: ProfileId,
    /// Its lifecycle status.
    pub status: ProfileStatus,
    /// Its email addresses.
    pub emails: Vec<Email>,
    /// Its phone numbers (E.164).
    pub phones: Vec<Phone>,
    /// For a MERGED profile: the profile it resolves to.
    pub merged_into: Option<ProfileId>,
}

impl ProfileContacts {
    /// Whether the profile holds `point` (emails compared by identity key,
    /// as the identity index does).
    pub fn holds(&self, point: &ContactPoint, policy: &NormalizationPolicy) -> bool {
        holds(&self.emails, &self.phones, point, policy)
    }
}

fn holds(emails: &[Email], phones: &[Phone], point: &ContactPoint, policy: &NormalizationPolicy) -> bool {
    match point.kind {
        ContactKind::Email => emails.iter().any(|e| policy.email_key(&e.address) == point.value),
        ContactKind::Phone => phones.iter().any(|p| p.number == point.value),
    }
}

/// Records `source` and `now` as the lineage of `fields` of `data` (just
/// written), and of each contact point those fields gained: one they
/// already held keeps the lineage of the write that brought it.
pub fn record_lineage(
    lineage: &mut BTreeMap<String, Lineage>,
    data: &ProfileData,
    fields: &[ProfileField],
    source: &str,
    now: DateTime<Utc>,
) {
    let entry = || Lineage { source: source.to_owned(), updated_at: now };
    for field in fields {
        lineage.insert(field.path().to_owned(), entry());
    }
    if fields.iter().any(|f| POINT_FIELDS.contains(f)) {
        settle_point_lineage(lineage, data, |key| {
            let field = point_field(key);
            fields.iter().any(|f| Some(f.path()) == field).then(entry)
        });
    }
}

/// Resolves an update mask: empty means every populated field, `*` every field.
pub fn resolve_update_mask(paths: &[String], input: &ProfileInput) -> Result<Vec<ProfileField>, DomainError> {
    if paths.is_empty() {
        let fields = input.populated_fields();
        if fields.is_empty() {
            return Err(DomainError::invalid("update_mask", "no field to update: name them in update_mask"));
        }
        return Ok(fields);
    }
    if paths.iter().any(|p| p == "*") {
        return if paths.len() == 1 {
            Ok(ProfileField::ALL.to_vec())
        } else {
            Err(DomainError::invalid("update_mask", "'*' cannot be combined with other paths"))
        };
    }
    let mut violations = Violations::default();
    let mut fields = Vec::new();
    for path in paths {
        match ProfileField::parse_path(path) {
            Some(field) if !fields.contains(&field) => fields.push(field),
            Some(_) => {}
            None => {
                violations.add("update_mask", format!("unknown or read-only path '{}'", super::ids::truncate(path)))
            }
        }
    }
    violations.into_result(fields)
}

/// Longest stored name search key: a name within its limit can transliterate
/// to several times its length (山 → "shan").
pub const SEARCH_KEY_MAX: usize = 450;

/// A folded name (or search prefix) cut to [`SEARCH_KEY_MAX`], so stored keys
/// fit their column and a prefix as long as a whole key still matches it.
pub fn search_key(folded: &str) -> String {
    // Folded text is ASCII: bytes are characters.
    folded.get(..SEARCH_KEY_MAX).unwrap_or(folded).trim_end().to_owned()
}

/// Trims text; empty means unset; blank or too long is an error.
fn text(raw: &str, max: usize) -> Result<Option<String>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("must not be blank".into());
    }
    if trimmed.chars().count() > max {
        return Err(format!("longer than {max} characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(Some(trimmed.to_owned()))
}

fn label(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() {
        return Ok(String::new());
    }
    text(raw, limits::LABEL).map(Option::unwrap_or_default)
}

fn country_code(raw: &str) -> Result<String, String> {
    let code = raw.trim().to_ascii_uppercase();
    if code.is_empty() || (code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())) {
        Ok(code)
    } else {
        Err("is not an ISO 3166-1 alpha-2 code".into())
    }
}

fn birth_date(raw: &str) -> Result<Option<NaiveDate>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    let date =
        NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").map_err(|_| "is not a date (YYYY-MM-DD)".to_owned())?;
    let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN);
    if date < earliest || date > Utc::now().date_naive() {
        return Err("must be between 1900-01-01 and today".into());
    }
    Ok(Some(date))
}

fn check_attributes(attributes: &Map<String, Value>) -> Result<(), String> {
    if let Some(key) = attributes.keys().find(|k| k.is_empty() || k.chars().count() > limits::ATTRIBUTE_KEY) {
        return Err(format!("key '{}' must be 1 to {} characters", super::ids::truncate(key), limits::ATTRIBUTE_KEY));
    }
    // PostgreSQL's JSONB cannot hold U+0000 (SQLite can): refused on both,
    // so the backends agree and neither answers INTERNAL.
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if attributes.iter().any(|(k, v)| k.contains('\0') || has_nul(v)) {
        return Err("keys and values must not contain the NUL character (U+0000)".into());
    }
    let size = serde_json::to_vec(attributes).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > limits::ATTRIBUTES_BYTES {
        return Err(format!("larger than {} bytes as JSON", limits::ATTRIBUTES_BYTES));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_records_lineage_only_on_the_contact_points_it_adds() {
        let at = |s: i64| DateTime::from_timestamp(s, 0).expect("time");
        let email = |address: &str| Email { address: address.into(), label: String::new(), primary: false };
        let mut data = ProfileData { emails: vec![email("a@example.com")], ..Default::default() };
        data.addresses = vec![PostalAddress { lines: vec!["1  High St".into()], ..Default::default() }];
        let mut lineage = BTreeMap::new();
        record_lineage(&mut lineage, &data, &data.set_fields(), "crm", at(1));
        assert_eq!(lineage["emails/a@example.com"].source, "crm");
        assert_eq!(lineage["addresses/1 high st|||"].source, "crm");

        // Relabelled, one added, the address's spacing changed: only the new email is the shop's.
        data.emails = vec![Email { label: "home".into(), ..email("a@example.com") }, email("b@example.com")];
        data.addresses[0].lines = vec!["1 High  St".into()];
        record_lineage(&mut lineage, &data, &[ProfileField::Emails, ProfileField::Addresses], "shop", at(2));
        assert_eq!(
            (lineage["emails/a@example.com"].source.as_str(), lineage["emails/a@example.com"].updated_at),
            ("crm", at(1))
        );
        assert_eq!(lineage["emails/b@example.com"].source, "shop");
        assert_eq!(lineage["addresses/1 high st|||"].source, "crm");
        assert_eq!(lineage["emails"].source, "shop");

        // Removed: its entry goes; a write of another field leaves the rest alone.
        data.emails.remove(0);
        record_lineage(&mut lineage, &data, &[ProfileField::Emails], "shop", at(3));
        assert!(!lineage.contains_key("emails/a@example.com"));
        record_lineage(&mut lineage, &data, &[ProfileField::Segment], "pos", at(4));
        assert_eq!(lineage["emails/b@example.com"].updated_at, at(2));

        // Recorded before contact points had their own: the field's, while held.
        let profile = Profile {
            id: ProfileId::generate(),
            tenant: TenantId::parse("acme").expect("tenant"),
            data: data.clone(),
            lineage: [("emails".to_owned(), Lineage { source: "old".into(), updated_at: at(0) })].into(),
            version: 1,
            created_at: at(0),
            updated_at: at(0),
            merged_into: None,
        };
        assert_eq!(profile.point_lineage("emails/b@example.com").map(|l| l.source.as_str()), Some("old"));
        // Such a profile written again: the address it had keeps the old
        // field's lineage, only the one added is the write's.
        let mut lineage = profile.lineage.clone();
        let mut after = data.clone();
        after.emails.push(email("c@example.com"));
        adopt_field_lineage(&mut lineage, &data);
        record_lineage(&mut lineage, &after, &[ProfileField::Emails], "new", at(5));
        assert_eq!(lineage["emails/b@example.com"].source, "old");
        assert_eq!(lineage["emails/c@example.com"].source, "new");
        assert_eq!(profile.point_lineage("emails/gone@example.com"), None);
        assert!(is_point_key("external_ids/crm/1") && !is_point_key("emails") && !is_point_key("attributes.a/b"));
    }

    #[test]
    fn stored_times_read_the_same_on_the_fast_path_as_by_chrono() {
        for text in [
            "2026-12-03T10:57:16.744630Z",
            "2026-12-03T10:57:16Z",
            "2026-12-03T10:57:16.7Z",
            "2026-12-03T10:57:16.123456789+00:00",
            "1999-02-28T23:59:59.000001Z",
        ] {
            let chrono = DateTime::parse_from_rfc3339(text).expect("rfc 3339").with_timezone(&Utc);
            assert_eq!(utc_time_fast(text), Some(chrono), "{text}");
        }
        for other in
            ["2026-12-03T10:57:16+02:00", "2026-02-30T10:57:16Z", "2026-12-03 10:57:16Z", "2026-12-03T10:57:16.Z"]
        {
            assert_eq!(utc_time_fast(other), None, "{other}");
        }
        let now = Utc::now();
        let lineage = Lineage { source: "crm".into(), updated_at: now };
        let json = serde_json::to_string(&lineage).expect("encode");
        assert_eq!(serde_json::from_str::<Lineage>(&json).expect("decode"), lineage, "{json}");
        let offset = r#"{"source":"crm","updated_at":"2026-12-03T12:57:16+02:00"}"#;
        let read = serde_json::from_str::<Lineage>(offset).expect("another offset, by chrono");
        assert_eq!(read.updated_at, DateTime::parse_from_rfc3339("2026-12-03T10:57:16Z").expect("time"));
    }

    fn input() -> ProfileInput {
        ProfileInput {
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            emails: vec![Email { address: "Ada@Example.com".into(), label: "home".into(), primary: true }],
            ..Default::default()
        }
    }

    fn validate(input: &ProfileInput) -> Result<ProfileData, DomainError> {
        let policy = NormalizationPolicy::default();
        let mut v = Violations::default();
        let data = input.apply_to(&ProfileData::default(), &ProfileField::ALL, &policy, true, &mut v);
        data.check_consistency(&policy, &mut v);
        v.into_result(data)
    }

    fn fields_of(err: DomainError) -> Vec<String> {
        match err {
            DomainError::InvalidArgument(v) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn valid_input_is_normalized() {
        let data = validate(&input()).expect("valid");
        assert_eq!(data.emails[0].address, "ada@example.com");
        assert_eq!(data.kind, ProfileKind::Person);
        assert_eq!(data.status, ProfileStatus::Active);
        assert_eq!(data.name_keys(), ["ada lovelace".to_owned(), "lovelace ada".to_owned(), String::new()]);
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = fn(&mut ProfileInput);
        let cases: Vec<(&str, Mutation)> = vec![
            ("profile.given_name", |p| p.given_name = "   ".into()),
            ("profile.family_name", |p| p.family_name = "x".repeat(201)),
            ("profile.emails[0].address", |p| p.emails[0].address = "nope".into()),
            ("profile.phones[0].number", |p| {
                p.phones = vec![Phone { number: "12".into(), label: String::new(), primary: false }]
            }),
            ("profile.kind", |p| p.kind = Choice::Unknown(9)),
            ("profile.status", |p| p.status = Choice::Set(ProfileStatus::Merged)),
            ("profile.birth_date", |p| p.birth_date = "1815-13-10".into()),
            ("profile.birth_date", |p| p.birth_date = "2999-01-01".into()),
            ("profile.primary_contact_id", |p| p.primary_contact_id = "not-a-uuid".into()),
            ("profile.addresses[0].country_code", |p| {
                p.addresses =
                    vec![PostalAddress { locality: "Paris".into(), country_code: "FRA".into(), ..Default::default() }]
            }),
            ("profile.external_ids[0].source", |p| {
                p.external_ids = vec![ExternalId { source: "sales force".into(), id: "1".into() }]
            }),
            ("profile.attributes", |p| {
                p.attributes.insert("big".into(), Value::String("x".repeat(70_000)));
            }),
            // Found by probing: PostgreSQL's JSONB refused these with INTERNAL.
            ("profile.attributes", |p| {
                p.attributes.insert("tier\0".into(), Value::String("gold".into()));
            }),
            ("profile.attributes", |p| {
                p.attributes.insert("notes".into(), serde_json::json!({"list": ["a", "b\u{0}c"]}));
            }),
            ("profile.emails[1].address", |p| {
                p.emails.push(Email { address: "ada+x@example.com".into(), label: String::new(), primary: false })
            }),
            ("profile.company_name", |p| p.kind = Choice::Set(ProfileKind::Organization)),
        ];
        for (field, mutate) in cases {
            let mut bad = input();
            mutate(&mut bad);
            let err = validate(&bad).expect_err(field);
            assert_eq!(fields_of(err), vec![field.to_owned()], "case {field}");
        }
    }

    #[test]
    fn update_mask_resolves_paths() {
        let input = input();
        assert_eq!(
            resolve_update_mask(&[], &input).ok(),
            Some(vec![ProfileField::GivenName, ProfileField::FamilyName, ProfileField::Emails])
        );
        assert_eq!(resolve_update_mask(&["*".into()], &input).ok().map(|f| f.len()), Some(13));
        assert_eq!(
            fields_of(resolve_update_mask(&["nickname".into()], &input).expect_err("bad path")),
            ["update_mask"]
        );
        assert!(resolve_update_mask(&[], &ProfileInput::default()).is_err());
    }

    #[test]
    fn completeness_counts_key_fields() {
        let data = validate(&input()).expect("valid");
        assert!((data.completeness() - 3.0 / 7.0).abs() < 1e-9);
    }
}
