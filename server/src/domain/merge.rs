//! Survivorship: the golden record a merge produces, field by field, and the
//! decision behind each field (docs/merges.md).
//!
//! For a single-valued field (names, segment, birth date, primary contact,
//! each attribute key) the value comes from one profile, chosen by the first
//! rule that leaves one candidate:
//!
//! 1. a steward's override for the field;
//! 2. the only profile with a value;
//! 3. the most trusted source: the field's lineage source ranked by the
//!    tenant's source priority list (unlisted sources rank after listed ones);
//! 4. the most recent: the field's lineage time;
//! 5. the most complete profile (completeness);
//! 6. the target (then the sources in the order given).
//!
//! Emails, phones, addresses and external ids are unioned (one copy of each
//! value); the profile the same rules rank first for the list keeps its
//! primary, every other copy is not primary. The status is the liveliest of
//! the profiles' (ACTIVE, then PROSPECT, then INACTIVE). Pure functions: no
//! storage, no transport.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Map;
use uuid::Uuid;

use super::{
    DomainError, ProfileId, TenantId,
    profile::{Lineage, PointKey, Profile, ProfileData, ProfileField, ProfileStatus},
};

/// Why profiles were merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeReason {
    /// The same customer recorded twice.
    Duplicate,
    /// A steward's decision.
    Manual,
    /// The matching engine, above the tenant's auto threshold.
    AutoMatch,
}

impl MergeReason {
    /// Stored and published form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duplicate => "DUPLICATE",
            Self::Manual => "MANUAL",
            Self::AutoMatch => "AUTO_MATCH",
        }
    }

    /// Parses the stored form.
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Duplicate, Self::Manual, Self::AutoMatch].into_iter().find(|r| r.as_str() == raw)
    }
}

/// Most sources one merge takes unless the tenant says otherwise
/// (`max_merge_sources`).
pub const MAX_SOURCES: usize = 20;
/// The most a tenant may set `max_merge_sources` to.
pub const MAX_SOURCES_LIMIT: u32 = 100;

/// A merge as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeRecord {
    /// Its id (UUID v7).
    pub id: Uuid,
    /// Owning tenant.
    pub tenant: TenantId,
    /// The profile that survived.
    pub target: ProfileId,
    /// The profiles merged into it.
    pub sources: Vec<ProfileId>,
    /// Why.
    pub reason: MergeReason,
    /// Subject of the caller that merged.
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
    /// How each field of the golden record was decided.
    pub decisions: Vec<FieldDecision>,
    /// When the merge was undone, and by whom; `None` while it stands.
    pub undone: Option<(DateTime<Utc>, String)>,
}

/// The rule that decided a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A steward chose the profile.
    Override,
    /// Only one profile had a value.
    OnlyValue,
    /// Its source ranks highest in the tenant's source priority.
    SourcePriority,
    /// Its value is the most recent.
    MostRecent,
    /// Its profile is the most complete.
    MostComplete,
    /// Nothing told them apart: the target (or the first source given).
    Order,
    /// Values of every profile, one copy each.
    Union,
    /// The liveliest status.
    Liveliest,
}

impl Rule {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Override => "OVERRIDE",
            Self::OnlyValue => "ONLY_VALUE",
            Self::SourcePriority => "SOURCE_PRIORITY",
            Self::MostRecent => "MOST_RECENT",
            Self::MostComplete => "MOST_COMPLETE",
            Self::Order => "ORDER",
            Self::Union => "UNION",
            Self::Liveliest => "LIVELIEST",
        }
    }

    /// Parses the stored form.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Override,
            Self::OnlyValue,
            Self::SourcePriority,
            Self::MostRecent,
            Self::MostComplete,
            Self::Order,
            Self::Union,
            Self::Liveliest,
        ]
        .into_iter()
        .find(|r| r.as_str() == raw)
    }
}

/// How one field of the golden record was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDecision {
    /// Field path (`given_name`, `emails`, `attributes.tier`).
    pub field: String,
    /// The profile whose value (or, for a union, whose primary) won.
    pub from: ProfileId,
    /// The rule that chose it.
    pub rule: Rule,
}

/// The golden record of a merge.
#[derive(Debug, Clone, PartialEq)]
pub struct Survivor {
    /// The merged values.
    pub data: ProfileData,
    /// Lineage of each field: that of the value that won.
    pub lineage: BTreeMap<String, Lineage>,
    /// One decision per field that any profile had.
    pub decisions: Vec<FieldDecision>,
}

/// The golden record of `target` and `sources`. `priority`: the tenant's
/// source names, most trusted first; `overrides`: field path → the profile
/// whose value a steward chose. Errors: profiles of different kinds, or an
/// override naming an unknown field or a profile not in the merge.
pub fn survive(
    target: &Profile,
    sources: &[&Profile],
    priority: &[String],
    overrides: &BTreeMap<String, ProfileId>,
) -> Result<Survivor, DomainError> {
    let profiles: Vec<&Profile> = std::iter::once(target).chain(sources.iter().copied()).collect();
    if let Some(other) = profiles.iter().find(|p| p.data.kind != target.data.kind) {
        return Err(DomainError::FailedPrecondition(format!(
            "profile {} is a {} and profile {} a {}: only profiles of one kind merge",
            target.id,
            target.data.kind.as_str(),
            other.id,
            other.data.kind.as_str()
        )));
    }
    for (field, chosen) in overrides {
        let known =
            ProfileField::parse_path(field).is_some_and(|f| SINGLE.contains(&f)) || field.starts_with("attributes.");
        if !known {
            return Err(DomainError::invalid(
                format!("overrides[{field}]"),
                "not a single-valued field (given_name, family_name, company_name, segment, birth_date, \
                 primary_contact_id, attributes.<key>)",
            ));
        }
        if !profiles.iter().any(|p| p.id == *chosen) {
            return Err(DomainError::invalid(format!("overrides[{field}]"), "names a profile not in this merge"));
        }
    }
    let ranking = Ranking { profiles: &profiles, priority, overrides };
    let mut golden = Survivor { data: target.data.clone(), lineage: BTreeMap::new(), decisions: Vec::new() };

    macro_rules! single {
        ($field:expr, $value:ident) => {{
            let field = $field;
            let path = field.path();
            let chosen = ranking.choose(path, path, |p| p.data.$value.is_some());
            golden.data.$value = chosen.and_then(|(p, _)| p.data.$value.clone());
            golden.record(path, path, chosen);
        }};
    }
    single!(ProfileField::GivenName, given_name);
    single!(ProfileField::FamilyName, family_name);
    single!(ProfileField::CompanyName, company_name);
    single!(ProfileField::Segment, segment);
    single!(ProfileField::BirthDate, birth_date);
    single!(ProfileField::PrimaryContactId, primary_contact_id);

    let mut keys: Vec<&String> = profiles.iter().flat_map(|p| p.data.attributes.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut attributes = Map::new();
    for key in keys {
        let path = format!("attributes.{key}");
        let chosen = ranking.choose(&path, "attributes", |p| p.data.attributes.contains_key(key.as_str()));
        if let Some((p, _)) = chosen
            && let Some(value) = p.data.attributes.get(key.as_str())
        {
            attributes.insert(key.clone(), value.clone());
        }
        golden.record(&path, "attributes", chosen);
    }
    golden.data.attributes = attributes;

    macro_rules! union {
        ($field:expr, $list:ident, $same:expr, $unprimary:expr) => {{
            let path = $field.path();
            let first = ranking.choose(path, path, |p| !p.data.$list.is_empty());
            let order = ranking.order_from(first.map(|(p, _)| p.id));
            let mut merged = Vec::new();
            for (i, p) in order.iter().enumerate() {
                for item in &p.data.$list {
                    if merged.iter().any(|kept| $same(kept, item)) {
                        continue;
                    }
                    let mut item = item.clone();
                    if i > 0 {
                        $unprimary(&mut item);
                    }
                    // Each contact point keeps the lineage it had where it came from.
                    let key = item.point_key();
                    if let Some(lineage) = p.held_point_lineage(&key) {
                        golden.lineage.insert(key, lineage.clone());
                    }
                    merged.push(item);
                }
            }
            golden.data.$list = merged;
            golden.record(path, path, first.map(|(p, _)| (p, Rule::Union)));
        }};
    }
    union!(
        ProfileField::Emails,
        emails,
        |a: &super::profile::Email, b: &super::profile::Email| a.address == b.address,
        |e: &mut super::profile::Email| e.primary = false
    );
    union!(
        ProfileField::Phones,
        phones,
        |a: &super::profile::Phone, b: &super::profile::Phone| a.number == b.number,
        |p: &mut super::profile::Phone| p.primary = false
    );
    union!(
        ProfileField::Addresses,
        addresses,
        |a: &super::profile::PostalAddress, b: &super::profile::PostalAddress| same_place(a, b),
        |_: &mut super::profile::PostalAddress| {}
    );
    union!(
        ProfileField::ExternalIds,
        external_ids,
        |a: &super::profile::ExternalId, b: &super::profile::ExternalId| a == b,
        |_: &mut super::profile::ExternalId| {}
    );

    let liveliest = profiles.iter().copied().min_by_key(|p| liveliness(p.data.status)).unwrap_or(target);
    golden.data.status = match liveliest.data.status {
        ProfileStatus::Active | ProfileStatus::Prospect | ProfileStatus::Inactive => liveliest.data.status,
        _ => ProfileStatus::Active,
    };
    golden.record("status", "status", Some((liveliest, Rule::Liveliest)));
    if let Some(lineage) = target.lineage.get("kind") {
        golden.lineage.insert("kind".to_owned(), lineage.clone());
    }
    Ok(golden)
}

/// The single-valued fields (besides attribute keys).
const SINGLE: [ProfileField; 6] = [
    ProfileField::GivenName,
    ProfileField::FamilyName,
    ProfileField::CompanyName,
    ProfileField::Segment,
    ProfileField::BirthDate,
    ProfileField::PrimaryContactId,
];

/// Lower is livelier.
fn liveliness(status: ProfileStatus) -> u8 {
    match status {
        ProfileStatus::Active => 0,
        ProfileStatus::Prospect => 1,
        ProfileStatus::Inactive => 2,
        _ => 3,
    }
}

/// Two addresses at one place: same lines, locality and postal code, whatever
/// their labels.
pub(crate) fn same_place(a: &super::profile::PostalAddress, b: &super::profile::PostalAddress) -> bool {
    let fold = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    a.lines.iter().map(|l| fold(l)).eq(b.lines.iter().map(|l| fold(l)))
        && fold(&a.locality) == fold(&b.locality)
        && fold(&a.postal_code) == fold(&b.postal_code)
        && a.country_code == b.country_code
}

impl Survivor {
    fn record(&mut self, field: &str, lineage_key: &str, chosen: Option<(&Profile, Rule)>) {
        let Some((profile, rule)) = chosen else { return };
        if let Some(lineage) = profile.lineage.get(lineage_key) {
            self.lineage.entry(lineage_key.to_owned()).or_insert_with(|| lineage.clone());
        }
        self.decisions.push(FieldDecision { field: field.to_owned(), from: profile.id, rule });
    }
}

/// The survivorship rules over one merge's profiles.
struct Ranking<'a> {
    /// Target first, then the sources in the order given.
    profiles: &'a [&'a Profile],
    priority: &'a [String],
    overrides: &'a BTreeMap<String, ProfileId>,
}

impl<'a> Ranking<'a> {
    /// The profile whose value of `field` survives (lineage under
    /// `lineage_key`), among those for which `has` holds, and the rule that
    /// chose it; `None` when none has a value and no override names one.
    fn choose(&self, field: &str, lineage_key: &str, has: impl Fn(&Profile) -> bool) -> Option<(&'a Profile, Rule)> {
        if let Some(chosen) = self.overrides.get(field) {
            return self.profiles.iter().find(|p| p.id == *chosen).map(|p| (*p, Rule::Override));
        }
        let mut candidates: Vec<&'a Profile> = self.profiles.iter().copied().filter(|p| has(p)).collect();
        match candidates.len() {
            0 => return None,
            1 => return Some((candidates[0], Rule::OnlyValue)),
            _ => {}
        }
        let rank = |p: &Profile| {
            let source = p.lineage.get(lineage_key).map(|l| l.source.as_str()).unwrap_or_default();
            self.priority.iter().position(|s| s.eq_ignore_ascii_case(source)).unwrap_or(self.priority.len())
        };
        let best = candidates.iter().map(|p| rank(p)).min().unwrap_or_default();
        candidates.retain(|p| rank(p) == best);
        if candidates.len() == 1 {
            return Some((candidates[0], Rule::SourcePriority));
        }
        let when = |p: &Profile| p.lineage.get(lineage_key).map_or(p.updated_at, |l| l.updated_at);
        let latest = candidates.iter().map(|p| when(p)).max()?;
        candidates.retain(|p| when(p) == latest);
        if candidates.len() == 1 {
            return Some((candidates[0], Rule::MostRecent));
        }
        let fullest = candidates.iter().map(|p| p.data.completeness()).fold(f64::MIN, f64::max);
        candidates.retain(|p| p.data.completeness() >= fullest);
        if candidates.len() == 1 {
            return Some((candidates[0], Rule::MostComplete));
        }
        Some((candidates[0], Rule::Order))
    }

    /// Every profile, `first` first, then the others in merge order.
    fn order_from(&self, first: Option<ProfileId>) -> Vec<&'a Profile> {
        let mut order: Vec<&'a Profile> = self.profiles.to_vec();
        if let Some(first) = first
            && let Some(i) = order.iter().position(|p| p.id == first)
        {
            let head = order.remove(i);
            order.insert(0, head);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use serde_json::json;

    use super::*;
    use crate::domain::{
        TenantId,
        profile::{Email, ExternalId, Phone, ProfileKind},
    };

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("time").with_timezone(&Utc)
            + Duration::minutes(minutes)
    }

    /// A person whose every field came from `source` at minute `minute`.
    fn person(given: &str, source: &str, minute: i64) -> Profile {
        let data = ProfileData { given_name: Some(given.to_owned()), ..ProfileData::default() };
        let mut profile = Profile {
            id: ProfileId::generate(),
            tenant: TenantId::parse("acme").expect("tenant"),
            data,
            lineage: BTreeMap::new(),
            version: 1,
            created_at: at(0),
            updated_at: at(minute),
            merged_into: None,
        };
        for field in ProfileField::ALL {
            profile
                .lineage
                .insert(field.path().to_owned(), Lineage { source: source.to_owned(), updated_at: at(minute) });
        }
        profile
    }

    fn email(address: &str, primary: bool) -> Email {
        Email { address: address.to_owned(), label: String::new(), primary }
    }

    fn decision(golden: &Survivor, field: &str) -> (ProfileId, Rule) {
        let d = golden.decisions.iter().find(|d| d.field == field).expect(field);
        (d.from, d.rule)
    }

    /// The survivorship table of docs/merges.md, one row per rule.
    #[test]
    fn each_rule_decides_in_its_turn() {
        let priority = vec!["salesforce".to_owned(), "shopify".to_owned()];
        let none = BTreeMap::new();
        struct Row {
            name: &'static str,
            target: Profile,
            source: Profile,
            overrides: bool,
            winner_is_source: bool,
            rule: Rule,
        }
        let mut complete = person("Ann", "pos", 5);
        complete.data.family_name = Some("Lee".into());
        let mut empty = person("x", "crm", 5);
        empty.data.given_name = None;
        let rows = [
            Row {
                name: "a steward's override beats everything",
                target: person("Ann", "salesforce", 9),
                source: person("Anne", "pos", 1),
                overrides: true,
                winner_is_source: true,
                rule: Rule::Override,
            },
            Row {
                name: "the only value",
                target: empty,
                source: person("Anne", "pos", 1),
                overrides: false,
                winner_is_source: true,
                rule: Rule::OnlyValue,
            },
            Row {
                name: "the most trusted source, even if older",
                target: person("Ann", "shopify", 9),
                source: person("Anne", "salesforce", 1),
                overrides: false,
                winner_is_source: true,
                rule: Rule::SourcePriority,
            },
            Row {
                name: "listed sources beat unlisted ones",
                target: person("Ann", "shopify", 1),
                source: person("Anne", "legacy", 9),
                overrides: false,
                winner_is_source: false,
                rule: Rule::SourcePriority,
            },
            Row {
                name: "then the most recent",
                target: person("Ann", "pos", 1),
                source: person("Anne", "pos", 9),
                overrides: false,
                winner_is_source: true,
                rule: Rule::MostRecent,
            },
            Row {
                name: "then the most complete profile",
                target: person("Anne", "pos", 5),
                source: complete,
                overrides: false,
                winner_is_source: true,
                rule: Rule::MostComplete,
            },
            Row {
                name: "then the target",
                target: person("Ann", "pos", 5),
                source: person("Anne", "pos", 5),
                overrides: false,
                winner_is_source: false,
                rule: Rule::Order,
            },
        ];
        for row in rows {
            let overrides: BTreeMap<String, ProfileId> =
                if row.overrides { [("given_name".to_owned(), row.source.id)].into() } else { none.clone() };
            let golden = survive(&row.target, &[&row.source], &priority, &overrides).expect(row.name);
            let winner = if row.winner_is_source { &row.source } else { &row.target };
            assert_eq!(decision(&golden, "given_name"), (winner.id, row.rule), "{}", row.name);
            assert_eq!(golden.data.given_name, winner.data.given_name, "{}", row.name);
            assert_eq!(golden.lineage.get("given_name"), winner.lineage.get("given_name"), "{}", row.name);
        }
    }

    #[test]
    fn contact_points_are_unioned_with_one_primary() {
        let mut target = person("Ann", "pos", 1);
        target.data.emails = vec![email("ann@example.com", true), email("shared@example.com", false)];
        target.data.phones = vec![Phone { number: "+14155550100".into(), label: String::new(), primary: true }];
        let mut source = person("Anne", "salesforce", 2);
        source.data.emails = vec![email("anne@work.example", true), email("shared@example.com", false)];
        source.data.external_ids = vec![ExternalId { source: "salesforce".into(), id: "003A".into() }];
        let mut third = person("A.", "shopify", 3);
        third.data.external_ids = vec![
            ExternalId { source: "shopify".into(), id: "77".into() },
            ExternalId { source: "salesforce".into(), id: "003A".into() },
        ];
        let priority = vec!["salesforce".to_owned()];
        let golden = survive(&target, &[&source, &third], &priority, &BTreeMap::new()).expect("merge");
        let emails: Vec<(&str, bool)> = golden.data.emails.iter().map(|e| (e.address.as_str(), e.primary)).collect();
        assert_eq!(
            emails,
            [("anne@work.example", true), ("shared@example.com", false), ("ann@example.com", false)],
            "the most trusted source's primary stays primary; one copy of each"
        );
        assert_eq!(decision(&golden, "emails"), (source.id, Rule::Union));
        assert_eq!(golden.data.phones.len(), 1);
        assert!(golden.data.phones[0].primary);
        assert_eq!(golden.data.external_ids.len(), 2, "{:?}", golden.data.external_ids);
        assert_eq!(golden.data.given_name.as_deref(), Some("Anne"));
    }

    #[test]
    fn attributes_are_decided_key_by_key_and_status_is_the_liveliest() {
        let mut target = person("Ann", "pos", 9);
        target.data.status = ProfileStatus::Inactive;
        target.data.attributes = json!({"tier": "gold", "store": "12"}).as_object().cloned().expect("object");
        let mut source = person("Ann", "salesforce", 1);
        source.data.status = ProfileStatus::Prospect;
        source.data.attributes = json!({"tier": "silver", "vat": "GB1"}).as_object().cloned().expect("object");
        let golden = survive(&target, &[&source], &["salesforce".to_owned()], &BTreeMap::new()).expect("merge");
        assert_eq!(
            golden.data.attributes,
            *json!({"tier": "silver", "store": "12", "vat": "GB1"}).as_object().expect("o")
        );
        assert_eq!(decision(&golden, "attributes.tier"), (source.id, Rule::SourcePriority));
        assert_eq!(decision(&golden, "attributes.store"), (target.id, Rule::OnlyValue));
        assert_eq!(golden.data.status, ProfileStatus::Prospect);
    }

    #[test]
    fn kinds_must_match_and_overrides_must_name_the_merge() {
        let target = person("Ann", "pos", 1);
        let mut company = person("Acme", "pos", 1);
        company.data.kind = ProfileKind::Organization;
        let refused = survive(&target, &[&company], &[], &BTreeMap::new()).expect_err("kinds");
        assert!(matches!(refused, DomainError::FailedPrecondition(_)), "{refused:?}");
        let source = person("Anne", "pos", 2);
        let stranger: BTreeMap<String, ProfileId> = [("given_name".to_owned(), ProfileId::generate())].into();
        assert!(matches!(survive(&target, &[&source], &[], &stranger), Err(DomainError::InvalidArgument(_))));
        let list: BTreeMap<String, ProfileId> = [("emails".to_owned(), source.id)].into();
        assert!(matches!(survive(&target, &[&source], &[], &list), Err(DomainError::InvalidArgument(_))));
    }
}
