//! From a legacy file's columns to profile fields: the mapping file, the
//! column names recognized without one, and each row turned into a validated
//! profile (docs/import.md).

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::{
    error::Violations,
    identifiers::{NormalizationPolicy, normalize_external_id},
    profile::{
        Choice, Email, ExternalId, Phone, PostalAddress, ProfileData, ProfileField, ProfileInput, ProfileKind,
        ProfileStatus, limits,
    },
};

/// A mapping file (TOML), every part optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// The column (or columns, joined with `|`) holding each row's key.
    pub key: Option<Columns>,
    /// Field delimiter: one character, or `tab`; sniffed from the header when absent.
    pub delimiter: Option<String>,
    /// `utf-8` (the default) or `latin-1`.
    pub encoding: Option<Encoding>,
    /// How dates other than ISO and `YYYYMMDD` are written.
    pub date_order: Option<DateOrder>,
    /// Every row's kind, instead of the `kind` column or the rule of docs/import.md.
    pub kind: Option<String>,
    /// Column name → target (docs/import.md lists the targets).
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// An address built from parts spread over several columns.
    pub address: Option<AddressMapping>,
}

impl MappingFile {
    /// Parses a mapping file's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// One column or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Columns {
    /// One column.
    One(String),
    /// Several, in order.
    Many(Vec<String>),
}

impl Columns {
    fn names(&self) -> Vec<String> {
        match self {
            Self::One(name) => vec![name.clone()],
            Self::Many(names) => names.clone(),
        }
    }
}

/// The text encoding of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
pub enum Encoding {
    /// UTF-8, with or without a byte-order mark.
    #[default]
    #[serde(rename = "utf-8", alias = "utf8")]
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
    /// ISO 8859-1 (Latin-1), as older Windows and mainframe exports write.
    #[serde(rename = "latin-1", alias = "latin1", alias = "iso-8859-1")]
    #[value(name = "latin-1", alias = "latin1", alias = "iso-8859-1")]
    Latin1,
}

/// The order of day, month and year in dates written with separators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DateOrder {
    /// 31/12/1980, 31.12.1980
    Dmy,
    /// 12/31/1980
    Mdy,
    /// 1980/12/31
    Ymd,
}

/// Address parts, each from one column or several.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressMapping {
    /// Street lines, in order.
    #[serde(default)]
    pub lines: Vec<Part>,
    /// City, town or suburb.
    pub locality: Option<Part>,
    /// State, province or county.
    pub region: Option<Part>,
    /// Postal code.
    pub postal_code: Option<Part>,
    /// Country (ISO 3166-1 alpha-2).
    pub country: Option<Part>,
}

/// One address part: a column, columns joined with spaces, or columns
/// joined with a separator or the first of them that is filled.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Part {
    /// One column.
    Column(String),
    /// Columns joined with a space, empty ones left out.
    Joined(Vec<String>),
    /// Columns with a separator, or the first filled one.
    Spec(PartSpec),
}

/// A part spelled out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartSpec {
    /// The columns.
    pub columns: Vec<String>,
    /// What joins them (default a space).
    pub separator: Option<String>,
    /// Take the first filled column instead of joining.
    #[serde(default)]
    pub first: bool,
}

/// Where a column's value goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Key,
    Ignore,
    Kind,
    Status,
    GivenName,
    FamilyName,
    FullName,
    CompanyName,
    Segment,
    BirthDate,
    Email,
    Emails,
    Phone,
    Phones,
    Line1,
    Line2,
    Locality,
    Region,
    PostalCode,
    Country,
    Addresses,
    ExternalIds,
    ExternalId(String),
    Attributes,
    Attribute(String),
    PrimaryContact,
}

impl Target {
    /// A target as a mapping file names it.
    fn parse(raw: &str) -> Option<Self> {
        if let Some(source) = raw.strip_prefix("external_id:") {
            return crate::domain::identifiers::normalize_source(source).ok().map(Self::ExternalId);
        }
        if let Some(name) = raw.strip_prefix("attribute:") {
            let name = name.trim();
            return (!name.is_empty() && name.chars().count() <= limits::ATTRIBUTE_KEY)
                .then(|| Self::Attribute(name.to_owned()));
        }
        Some(match raw {
            "key" => Self::Key,
            "ignore" => Self::Ignore,
            "kind" => Self::Kind,
            "status" => Self::Status,
            "given_name" => Self::GivenName,
            "family_name" => Self::FamilyName,
            "full_name" => Self::FullName,
            "company_name" => Self::CompanyName,
            "segment" => Self::Segment,
            "birth_date" => Self::BirthDate,
            "email" => Self::Email,
            "emails" => Self::Emails,
            "phone" => Self::Phone,
            "phones" => Self::Phones,
            "address.line1" => Self::Line1,
            "address.line2" => Self::Line2,
            "address.locality" => Self::Locality,
            "address.region" => Self::Region,
            "address.postal_code" => Self::PostalCode,
            "address.country" => Self::Country,
            "addresses" => Self::Addresses,
            "external_ids" => Self::ExternalIds,
            "attributes" => Self::Attributes,
            "primary_contact" => Self::PrimaryContact,
            _ => return None,
        })
    }

    /// The target of a column no mapping names, by its header: the common
    /// names of docs/import.md, else an attribute of that name.
    fn recognize(header: &str, c360_export: bool) -> Self {
        let folded: String = header.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect();
        match folded.as_str() {
            "id" | "key" | "customerid" | "customerno" | "customernumber" | "clientid" | "clientnumber"
            | "contactid" | "recid" | "recordid" | "personid" => Self::Key,
            "givenname" | "firstname" | "forename" | "fname" => Self::GivenName,
            "familyname" | "surname" | "lastname" | "lname" => Self::FamilyName,
            "name" | "fullname" | "customername" | "contactname" => Self::FullName,
            "company" | "companyname" | "organization" | "organisation" | "organizationname" | "organisationname"
            | "business" | "businessname" => Self::CompanyName,
            "segment" => Self::Segment,
            "kind" => Self::Kind,
            "status" => Self::Status,
            "dateofbirth" | "birthdate" | "dob" | "birthday" => Self::BirthDate,
            "email" | "emailaddress" | "mail" => Self::Email,
            "emails" => Self::Emails,
            "phone" | "phonenumber" | "telephone" | "tel" | "mobile" | "mobilephone" | "mobilenumber" | "cell"
            | "cellphone" => Self::Phone,
            "phones" => Self::Phones,
            "street" | "streetaddress" | "address" | "address1" | "addressline1" | "line1" => Self::Line1,
            "address2" | "addressline2" | "line2" => Self::Line2,
            "city" | "town" | "locality" => Self::Locality,
            "state" | "region" | "province" | "county" => Self::Region,
            "postcode" | "postalcode" | "zip" | "zipcode" => Self::PostalCode,
            "country" | "countrycode" => Self::Country,
            "addresses" => Self::Addresses,
            "externalids" => Self::ExternalIds,
            "attributes" => Self::Attributes,
            "primarycontact" | "primarycontactid" => Self::PrimaryContact,
            // A c360 export's bookkeeping: the new tenant keeps its own.
            "createdat" | "updatedat" | "version" if c360_export => Self::Ignore,
            _ => Self::Attribute(attribute_name(header)),
        }
    }
}

/// `Loyalty Tier` → `loyalty_tier`.
fn attribute_name(header: &str) -> String {
    let mut name = String::new();
    for c in header.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('_') {
            name.push('_');
        }
    }
    let name = name.trim_end_matches('_');
    let name: String = name.chars().take(limits::ATTRIBUTE_KEY).collect();
    if name.is_empty() { "column".to_owned() } else { name }
}

/// An address part resolved to column positions.
#[derive(Debug, Clone)]
struct PartPlan {
    columns: Vec<usize>,
    separator: String,
    first: bool,
}

impl PartPlan {
    fn value(&self, cells: &[&str]) -> String {
        let mut filled = self.columns.iter().map(|&i| cells.get(i).map_or("", |c| c.trim())).filter(|c| !c.is_empty());
        if self.first {
            filled.next().unwrap_or_default().to_owned()
        } else {
            filled.collect::<Vec<_>>().join(&self.separator)
        }
    }
}

#[derive(Debug, Clone, Default)]
struct AddressPlan {
    lines: Vec<PartPlan>,
    locality: Option<PartPlan>,
    region: Option<PartPlan>,
    postal_code: Option<PartPlan>,
    country: Option<PartPlan>,
}

/// How the rows of one file become profiles: each column's target, the key,
/// and the rules of the mapping.
#[derive(Debug, Clone)]
pub struct Plan {
    source: String,
    headers: Vec<String>,
    targets: Vec<Target>,
    key: Vec<usize>,
    address: Option<AddressPlan>,
    date_order: Option<DateOrder>,
    kind: Option<ProfileKind>,
    digest: Vec<u8>,
}

/// A row ready to load.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Line of the file where the row starts.
    pub line: u64,
    /// Its key: also its external id of the import's source.
    pub key: String,
    /// The profile it describes, validated and normalized.
    pub data: ProfileData,
    /// The key of the row naming this organization's primary contact.
    pub primary_contact: Option<String>,
    /// A hash of the row's cells and of the plan that read them.
    pub fingerprint: String,
}

/// A row that cannot be loaded, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// Line of the file where the row starts.
    pub line: u64,
    /// Its key, when it had one.
    pub key: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl Plan {
    /// The plan for a file of `headers` loaded as `source` under `mapping`.
    /// A mapping naming a column the file lacks, or a target that does not
    /// exist, is an error naming both.
    pub fn new(source: &str, headers: &[String], mapping: &MappingFile) -> anyhow::Result<Self> {
        let position = |name: &str| -> anyhow::Result<usize> {
            headers.iter().position(|h| h.trim() == name.trim()).ok_or_else(|| {
                anyhow::anyhow!(
                    "the mapping names column '{name}', which the file does not have (its columns: {})",
                    headers.join(", ")
                )
            })
        };
        let c360_export = crate::cli::export::CSV_COLUMNS.iter().all(|c| headers.iter().any(|h| h == c));
        let mut targets: Vec<Option<Target>> = vec![None; headers.len()];
        for (column, target) in &mapping.columns {
            let at = position(column)?;
            let parsed = Target::parse(target.trim()).ok_or_else(|| {
                anyhow::anyhow!(
                    "the mapping sends column '{column}' to '{target}', which is not a target (docs/import.md)"
                )
            })?;
            targets[at] = Some(parsed);
        }
        let address = match &mapping.address {
            None => None,
            Some(spec) => {
                let mut part = |part: &Part| -> anyhow::Result<PartPlan> {
                    let (names, separator, first) = match part {
                        Part::Column(name) => (vec![name.clone()], " ".to_owned(), false),
                        Part::Joined(names) => (names.clone(), " ".to_owned(), false),
                        Part::Spec(spec) => {
                            (spec.columns.clone(), spec.separator.clone().unwrap_or_else(|| " ".into()), spec.first)
                        }
                    };
                    let columns = names.iter().map(|n| position(n)).collect::<anyhow::Result<Vec<_>>>()?;
                    for &at in &columns {
                        targets[at].get_or_insert(Target::Ignore);
                    }
                    Ok(PartPlan { columns, separator, first })
                };
                let lines = spec.lines.iter().map(&mut part).collect::<anyhow::Result<Vec<_>>>()?;
                Some(AddressPlan {
                    lines,
                    locality: spec.locality.as_ref().map(&mut part).transpose()?,
                    region: spec.region.as_ref().map(&mut part).transpose()?,
                    postal_code: spec.postal_code.as_ref().map(&mut part).transpose()?,
                    country: spec.country.as_ref().map(&mut part).transpose()?,
                })
            }
        };
        let mut key = match &mapping.key {
            Some(columns) => columns.names().iter().map(|n| position(n)).collect::<anyhow::Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        for &at in &key {
            targets[at] = Some(Target::Key);
        }
        let mut targets: Vec<Target> = targets
            .into_iter()
            .zip(headers)
            .map(|(target, header)| target.unwrap_or_else(|| Target::recognize(header, c360_export)))
            .collect();
        if key.is_empty() {
            // The first recognized key column; any other becomes an attribute.
            for (at, target) in targets.iter_mut().enumerate() {
                if *target == Target::Key {
                    if key.is_empty() {
                        key.push(at);
                    } else {
                        *target = Target::Attribute(attribute_name(&headers[at]));
                    }
                }
            }
        }
        let kind = match &mapping.kind {
            None => None,
            Some(raw) => {
                Some(parse_kind(raw).ok_or_else(|| anyhow::anyhow!("kind = '{raw}': person or organization"))?)
            }
        };
        let mut digest = Sha256::new();
        digest.update(format!("{source}\u{1f}{headers:?}\u{1f}{targets:?}\u{1f}{key:?}\u{1f}{address:?}"));
        digest.update(format!("{:?}\u{1f}{kind:?}", mapping.date_order));
        Ok(Self {
            source: source.to_owned(),
            headers: headers.to_vec(),
            targets,
            key,
            address,
            date_order: mapping.date_order,
            kind,
            digest: digest.finalize().to_vec(),
        })
    }

    /// The file's columns.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// Whether rows have a key column (else keys are derived, docs/import.md).
    pub fn has_key_column(&self) -> bool {
        !self.key.is_empty()
    }

    /// Each column and what it is loaded as, for the log.
    pub fn describe(&self) -> Vec<String> {
        self.headers
            .iter()
            .zip(&self.targets)
            .map(|(header, target)| format!("{header} → {}", describe_target(target)))
            .collect()
    }

    /// The key of a row from its key columns (`None` without them, or when empty).
    pub fn key_of(&self, cells: &[&str]) -> Option<String> {
        if self.key.is_empty() {
            return None;
        }
        let parts: Vec<&str> = self.key.iter().map(|&at| cells.get(at).map_or("", |c| c.trim())).collect();
        normalize_external_id(&parts.join("|")).ok()
    }

    /// Turns one row into a profile, or says why it cannot be loaded.
    pub fn prepare(&self, line: u64, cells: &[&str], policy: &NormalizationPolicy) -> Result<Prepared, Rejected> {
        let reject = |key: Option<String>, reason: String| Rejected { line, key, reason };
        let cell = |at: usize| cells.get(at).map_or("", |c| c.trim());
        // The key first: a row refused for anything else is still in the
        // file, and must not count as missing from it.
        let key = if self.key.is_empty() {
            None
        } else {
            let parts: Vec<&str> = self.key.iter().map(|&at| cell(at)).collect();
            if parts.iter().all(|p| p.is_empty()) {
                let names: Vec<&str> = self.key.iter().map(|&at| self.headers[at].as_str()).collect();
                return Err(reject(None, format!("the key ({}) is empty", names.join(", "))));
            }
            Some(normalize_external_id(&parts.join("|")).map_err(|e| reject(None, format!("the key {e}")))?)
        };
        let fail = |reason: String| reject(key.clone(), reason);
        if cells.len() > self.headers.len() && cells[self.headers.len()..].iter().any(|c| !c.trim().is_empty()) {
            return Err(fail(format!("{} fields, the header has {}", cells.len(), self.headers.len())));
        }

        let mut input = ProfileInput::default();
        let mut address = PostalAddress::default();
        let mut full_name = None;
        let mut primary_contact = None;
        let mut kind = None;
        let (mut primary_email, mut primary_phone) = (None, None);
        for (at, target) in self.targets.iter().enumerate() {
            let value = cell(at);
            if value.is_empty() {
                continue;
            }
            match target {
                Target::Key | Target::Ignore => {}
                Target::Kind => {
                    kind =
                        Some(parse_kind(value).ok_or_else(|| fail(format!("kind '{value}': person or organization")))?)
                }
                Target::Status => {
                    input.status = Choice::Set(match ProfileStatus::parse(&value.to_ascii_uppercase()) {
                        Some(status @ (ProfileStatus::Active | ProfileStatus::Prospect)) => status,
                        _ => return Err(fail(format!("status '{value}': only ACTIVE and PROSPECT rows are imported"))),
                    })
                }
                Target::GivenName => input.given_name = value.to_owned(),
                Target::FamilyName => input.family_name = value.to_owned(),
                Target::FullName => full_name = Some(value),
                Target::CompanyName => input.company_name = value.to_owned(),
                Target::Segment => input.segment = value.to_owned(),
                Target::BirthDate => {
                    let date =
                        parse_date(value, self.date_order).map_err(|e| fail(format!("{}: {e}", self.headers[at])))?;
                    input.birth_date = date.to_string();
                }
                Target::Email => primary_email = Some(value),
                Target::Emails => input.emails.extend(split_list(value).map(|address| Email {
                    address: address.to_owned(),
                    label: String::new(),
                    primary: false,
                })),
                Target::Phone => primary_phone = Some(value),
                Target::Phones => input.phones.extend(split_list(value).map(|number| Phone {
                    number: number.to_owned(),
                    label: String::new(),
                    primary: false,
                })),
                Target::Line1 => address.lines.insert(0, value.to_owned()),
                Target::Line2 => address.lines.push(value.to_owned()),
                Target::Locality => address.locality = value.to_owned(),
                Target::Region => address.region = value.to_owned(),
                Target::PostalCode => address.postal_code = value.to_owned(),
                Target::Country => address.country_code = value.to_owned(),
                Target::Addresses => {
                    let parsed: Vec<PostalAddress> = serde_json::from_str(value)
                        .map_err(|e| fail(format!("{}: not a JSON list of addresses ({e})", self.headers[at])))?;
                    input.addresses.extend(parsed);
                }
                Target::ExternalIds => {
                    for pair in split_list(value) {
                        let Some((source, id)) = pair.split_once(':') else {
                            return Err(fail(format!("{}: '{pair}' is not source:id", self.headers[at])));
                        };
                        input
                            .external_ids
                            .push(ExternalId { source: source.trim().to_owned(), id: id.trim().to_owned() });
                    }
                }
                Target::ExternalId(source) => {
                    input.external_ids.push(ExternalId { source: source.clone(), id: value.to_owned() })
                }
                Target::Attributes => {
                    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(value) else {
                        return Err(fail(format!("{}: not a JSON object", self.headers[at])));
                    };
                    input.attributes.extend(map);
                }
                Target::Attribute(name) => {
                    input.attributes.insert(name.clone(), Value::String(value.to_owned()));
                }
                Target::PrimaryContact => primary_contact = Some(value.to_owned()),
            }
        }
        if let Some(plan) = &self.address {
            address.lines.extend(plan.lines.iter().map(|p| p.value(cells)).filter(|l| !l.is_empty()));
            let set = |part: &Option<PartPlan>, into: &mut String| {
                if let Some(part) = part {
                    let value = part.value(cells);
                    if !value.is_empty() {
                        *into = value;
                    }
                }
            };
            set(&plan.locality, &mut address.locality);
            set(&plan.region, &mut address.region);
            set(&plan.postal_code, &mut address.postal_code);
            set(&plan.country, &mut address.country_code);
        }
        if address != PostalAddress::default() && input.addresses.is_empty() {
            address.country_code = address.country_code.to_ascii_uppercase();
            input.addresses.push(address);
        }
        if let Some(name) = full_name {
            let (given, family) = split_full_name(name);
            if input.given_name.is_empty() {
                input.given_name = given;
            }
            if input.family_name.is_empty() {
                input.family_name = family;
            }
        }
        // A national number is read in the row's own country when it has one.
        let country_policy;
        let policy = match input.addresses.first().map(|a| a.country_code.as_str()) {
            Some(code) => match code.to_ascii_uppercase().parse() {
                Ok(default_region) => {
                    country_policy = NormalizationPolicy { default_region, ..policy.clone() };
                    &country_policy
                }
                Err(_) => policy,
            },
            None => policy,
        };
        set_primary(&mut input, primary_email, primary_phone, policy);
        dedupe_contacts(&mut input, policy);
        let kind = kind.or(self.kind).unwrap_or(
            if !input.company_name.is_empty() && input.given_name.is_empty() && input.family_name.is_empty() {
                ProfileKind::Organization
            } else {
                ProfileKind::Person
            },
        );
        input.kind = Choice::Set(kind);
        let mut violations = Violations::default();
        let mut data = input.apply_to(&ProfileData::default(), &ProfileField::ALL, policy, true, &mut violations);
        let key = match key {
            Some(key) => key,
            None => derived_key(&data, policy, cells),
        };
        let fail = |reason: String| reject(Some(key.clone()), reason);
        let own = ExternalId { source: self.source.clone(), id: key.clone() };
        if let Some(other) = data.external_ids.iter().find(|x| x.source == self.source && x.id != key) {
            return Err(fail(format!(
                "external id {}:{} names this import's source: only the row's key is an id of '{}'",
                other.source, other.id, self.source
            )));
        }
        if !data.external_ids.contains(&own) {
            data.external_ids.insert(0, own);
        }
        if data.external_ids.len() > limits::EXTERNAL_IDS {
            violations.add("profile.external_ids", format!("more than {} external ids", limits::EXTERNAL_IDS));
        }
        data.check_consistency(policy, &mut violations);
        if let Err(error) = violations.into_result(()) {
            return Err(fail(describe_error(&error)));
        }
        let mut hash = Sha256::new();
        hash.update(&self.digest);
        for cell in cells {
            hash.update(cell.as_bytes());
            hash.update([0x1f]);
        }
        Ok(Prepared { line, key, data, primary_contact, fingerprint: hex::encode(&hash.finalize()[..16]) })
    }
}

/// The key of a row without a key column: its primary email's identity
/// key, else its primary phone, else a hash of its cells (docs/import.md).
fn derived_key(data: &ProfileData, policy: &NormalizationPolicy, cells: &[&str]) -> String {
    let hashed = |parts: &mut dyn Iterator<Item = &str>| {
        let mut hash = Sha256::new();
        for part in parts {
            hash.update(part.as_bytes());
            hash.update([0x1f]);
        }
        hex::encode(&hash.finalize()[..8])
    };
    let key = if let Some(email) = data.emails.iter().find(|e| e.primary).or(data.emails.first()) {
        format!("email:{}", policy.email_key(&email.address))
    } else if let Some(phone) = data.phones.iter().find(|p| p.primary).or(data.phones.first()) {
        format!("phone:{}", phone.number)
    } else {
        format!("row:{}", hashed(&mut cells.iter().map(|c| c.trim())))
    };
    // Within an external id's length: a very long address is known by its hash.
    match normalize_external_id(&key) {
        Ok(key) => key,
        Err(_) => format!("hash:{}", hashed(&mut std::iter::once(key.as_str()))),
    }
}

/// A validation error as one line of the error file.
pub fn describe_error(error: &crate::domain::DomainError) -> String {
    match error {
        crate::domain::DomainError::InvalidArgument(violations) => violations
            .iter()
            .map(|v| format!("{}: {}", v.field.trim_start_matches("profile."), v.description))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn describe_target(target: &Target) -> String {
    match target {
        Target::ExternalId(source) => format!("external_id:{source}"),
        Target::Attribute(name) => format!("attribute:{name}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn parse_kind(raw: &str) -> Option<ProfileKind> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "person" | "individual" | "p" => Some(ProfileKind::Person),
        "organization" | "organisation" | "company" | "business" | "o" => Some(ProfileKind::Organization),
        _ => None,
    }
}

/// A list cell: values separated by `;` (or `,` when there is no `;`).
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let separator = if value.contains(';') { ';' } else { ',' };
    value.split(separator).map(str::trim).filter(|v| !v.is_empty())
}

/// `SURNAME, Given` → (Given, SURNAME); `Given Middle Surname` → (Given
/// Middle, Surname).
fn split_full_name(name: &str) -> (String, String) {
    if let Some((family, given)) = name.split_once(',') {
        return (given.trim().to_owned(), family.trim().to_owned());
    }
    match name.trim().rsplit_once(char::is_whitespace) {
        Some((given, family)) => (given.trim().to_owned(), family.trim().to_owned()),
        None => (String::new(), name.trim().to_owned()),
    }
}

/// Marks the `email` and `phone` columns' values primary: in the list
/// columns where they appear there too (a c360 export writes both), else
/// first.
fn set_primary(input: &mut ProfileInput, email: Option<&str>, phone: Option<&str>, policy: &NormalizationPolicy) {
    if let Some(address) = email {
        let key = policy.email_key(address);
        match input.emails.iter_mut().find(|e| policy.email_key(&e.address) == key) {
            Some(listed) => listed.primary = true,
            None => input.emails.insert(0, Email { address: address.to_owned(), label: String::new(), primary: true }),
        }
    }
    if let Some(number) = phone {
        let normalized = |raw: &str| policy.phone(raw).unwrap_or_else(|_| raw.to_owned());
        let key = normalized(number);
        match input.phones.iter_mut().find(|p| normalized(&p.number) == key) {
            Some(listed) => listed.primary = true,
            None => input.phones.insert(0, Phone { number: number.to_owned(), label: String::new(), primary: true }),
        }
    }
}

/// One entry per email, phone and address (the first kept), so that a row
/// naming one twice is not refused.
fn dedupe_contacts(input: &mut ProfileInput, policy: &NormalizationPolicy) {
    let mut seen = HashMap::new();
    input.emails.retain(|e| seen.insert(policy.email_key(&e.address), ()).is_none());
    let mut seen = HashMap::new();
    input.phones.retain(|p| seen.insert(policy.phone(&p.number).unwrap_or_else(|_| p.number.clone()), ()).is_none());
    let mut seen = Vec::new();
    input.addresses.retain(|a| {
        let new = !seen.contains(a);
        seen.push(a.clone());
        new
    });
}

/// Parses a date as exports write it: ISO (`1980-12-31`, with or without a
/// time after it), `19801231`, or with separators in the declared order.
pub fn parse_date(raw: &str, order: Option<DateOrder>) -> Result<NaiveDate, String> {
    let raw = raw.trim();
    let date_part = raw.split(['T', ' ']).next().unwrap_or(raw);
    if let Ok(date) = NaiveDate::parse_from_str(date_part, "%Y-%m-%d") {
        return Ok(date);
    }
    if date_part.len() == 8 && date_part.bytes().all(|b| b.is_ascii_digit()) {
        return NaiveDate::parse_from_str(date_part, "%Y%m%d").map_err(|_| format!("'{raw}' is not a date"));
    }
    let parts: Vec<&str> = date_part.split(['/', '.', '-']).collect();
    let [a, b, c] = parts[..] else { return Err(format!("'{raw}' is not a date")) };
    let number = |s: &str| s.parse::<u32>().map_err(|_| format!("'{raw}' is not a date"));
    let (year, month, day) = match order {
        _ if a.len() == 4 => (number(a)?, number(b)?, number(c)?),
        Some(DateOrder::Dmy) => (number(c)?, number(b)?, number(a)?),
        Some(DateOrder::Mdy) => (number(c)?, number(a)?, number(b)?),
        Some(DateOrder::Ymd) => (number(a)?, number(b)?, number(c)?),
        None => {
            return Err(format!(
                "'{raw}' could be day-first or month-first: declare date_order (dmy or mdy) in the mapping"
            ));
        }
    };
    if year < 1000 {
        return Err(format!("'{raw}': write the year with four digits"));
    }
    NaiveDate::from_ymd_opt(year as i32, month, day).ok_or_else(|| format!("'{raw}' is not a date"))
}

/// `{"a": 1}` as a map, for tests.
#[cfg(test)]
fn map(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(headers: &[&str], mapping: &str) -> Plan {
        let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
        Plan::new("legacy", &headers, &MappingFile::parse(mapping).expect("mapping")).expect("plan")
    }

    #[test]
    fn dates_in_the_formats_exports_use() {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        let cases: [(&str, Option<DateOrder>, Result<NaiveDate, ()>); 10] = [
            ("1980-12-31", None, Ok(date(1980, 12, 31))),
            ("1980-12-31T00:00:00Z", None, Ok(date(1980, 12, 31))),
            ("1980-12-31 00:00", None, Ok(date(1980, 12, 31))),
            ("19801231", None, Ok(date(1980, 12, 31))),
            ("31/12/1980", Some(DateOrder::Dmy), Ok(date(1980, 12, 31))),
            ("31.12.1980", Some(DateOrder::Dmy), Ok(date(1980, 12, 31))),
            ("12/31/1980", Some(DateOrder::Mdy), Ok(date(1980, 12, 31))),
            ("1980/12/31", Some(DateOrder::Dmy), Ok(date(1980, 12, 31))),
            ("01/02/1980", None, Err(())),
            ("31/02/1980", Some(DateOrder::Dmy), Err(())),
        ];
        for (raw, order, expected) in cases {
            assert_eq!(parse_date(raw, order).map_err(|_| ()), expected, "{raw} {order:?}");
        }
    }

    #[test]
    fn common_column_names_need_no_mapping() {
        let plan = plan(
            &[
                "Customer No",
                "First Name",
                "Surname",
                "E-mail",
                "Mobile",
                "Street",
                "Town",
                "Postcode",
                "Country",
                "Loyalty Tier",
            ],
            "",
        );
        let row = [
            "C-1",
            "Ada",
            "Lovelace",
            "ADA@Example.com",
            "020 7946 0000",
            "1 St James's Sq",
            "London",
            "SW1Y 4JH",
            "gb",
            "gold",
        ];
        let prepared = plan.prepare(2, &row, &NormalizationPolicy::default()).expect("loads");
        assert_eq!(prepared.key, "C-1");
        assert_eq!(prepared.data.given_name.as_deref(), Some("Ada"));
        assert_eq!(prepared.data.emails[0].address, "ada@example.com");
        // A national number read in the row's country, not the deployment's.
        assert_eq!(prepared.data.phones[0].number, "+442079460000");
        assert_eq!(prepared.data.addresses[0].country_code, "GB");
        assert_eq!(prepared.data.attributes, map(serde_json::json!({"loyalty_tier": "gold"})));
        assert_eq!(prepared.data.external_ids, vec![ExternalId { source: "legacy".into(), id: "C-1".into() }]);
    }

    #[test]
    fn record_linkage_files_name_their_key_as_they_do() {
        for header in ["rec_id", "Record ID", "person_id"] {
            assert!(matches!(Target::recognize(header, false), Target::Key), "{header}");
        }
    }

    #[test]
    fn a_mapping_joins_address_parts_and_splits_crm_names() {
        let plan = plan(
            &["ACCT", "NAME", "HOUSE", "STREET", "UNIT", "SUBURB", "CITY", "DOB", "NI"],
            r#"
            key = "ACCT"
            date_order = "dmy"
            [columns]
            NAME = "full_name"
            DOB = "birth_date"
            NI = "attribute:national_id"
            [address]
            lines = [["HOUSE", "STREET"], "UNIT"]
            locality = { columns = ["SUBURB", "CITY"], first = true }
            "#,
        );
        let row = ["A7", "LOVELACE, ADA", "12", "Baker St", "", "", "London", "10/12/1985", "QQ123456C"];
        let prepared = plan.prepare(3, &row, &NormalizationPolicy::default()).expect("loads");
        assert_eq!(
            (prepared.data.given_name.as_deref(), prepared.data.family_name.as_deref()),
            (Some("ADA"), Some("LOVELACE"))
        );
        assert_eq!(prepared.data.addresses[0].lines, vec!["12 Baker St".to_owned()]);
        assert_eq!(prepared.data.addresses[0].locality, "London");
        assert_eq!(prepared.data.birth_date, NaiveDate::from_ymd_opt(1985, 12, 10));
        assert_eq!(prepared.data.attributes.get("national_id"), Some(&Value::String("QQ123456C".into())));
    }

    #[test]
    fn bad_rows_say_why_and_bad_mappings_fail_early() {
        let plan = plan(&["id", "email", "birth_date"], "");
        let policy = NormalizationPolicy::default();
        let reason = |row: &[&str]| plan.prepare(9, row, &policy).expect_err("rejected").reason;
        assert!(reason(&["1", "not-an-email", ""]).contains("emails[0].address"), "{}", reason(&["1", "x", ""]));
        assert!(reason(&["", "a@example.com", ""]).contains("key"));
        assert!(reason(&["2", "b@example.com", "1/2/1990"]).contains("date_order"));
        assert!(reason(&["3", "c@example.com", "", "extra"]).contains("fields"));
        let headers = vec!["id".to_owned()];
        let missing = Plan::new("legacy", &headers, &MappingFile::parse("[columns]\nEmail = \"email\"").expect("toml"));
        assert!(missing.expect_err("no such column").to_string().contains("'Email'"));
        let unknown = Plan::new("legacy", &headers, &MappingFile::parse("[columns]\nid = \"emial\"").expect("toml"));
        assert!(unknown.expect_err("no such target").to_string().contains("'emial'"));
    }

    #[test]
    fn rows_without_a_key_column_get_a_documented_one() {
        let plan = plan(&["first name", "email", "phone"], "");
        let policy = NormalizationPolicy::default();
        let by_email = plan.prepare(2, &["Ada", "Ada+news@Example.com", ""], &policy).expect("loads");
        assert_eq!(by_email.key, "email:ada@example.com");
        let by_phone = plan.prepare(3, &["Bo", "", "+1 415 555 0100"], &policy).expect("loads");
        assert_eq!(by_phone.key, "phone:+14155550100");
        let by_row = plan.prepare(4, &["Cy", "", ""], &policy).expect("loads");
        assert!(by_row.key.starts_with("row:"), "{}", by_row.key);
        assert_eq!(by_row.key, plan.prepare(40, &["Cy", "", ""], &policy).expect("loads").key);
    }
}
