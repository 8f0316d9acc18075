//! Per-tenant settings: the one place for configuration that differs between
//! tenants of one deployment. Admins read and change them through
//! `TenantService`; later capabilities (merge source priority, match
//! thresholds, the identity blocklist) add their fields here.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    error::{DomainError, Violations},
    identifiers::normalize_source,
    privacy::FieldClass,
    profile::limits,
};

/// Most keys in one list of attribute keys.
pub const MAX_KEYS: usize = 200;

/// Most attribute keys identity resolution compares: each is a field of
/// the model, estimated and scored for every pair.
pub const MAX_MATCH_KEYS: usize = 20;

/// Most values in the match blocklist.
pub const MAX_BLOCKLIST: usize = 1000;

/// Most characters in one blocklisted value.
pub const BLOCKLIST_VALUE: usize = 200;

/// Most sources in the source priority list.
pub const MAX_SOURCES: usize = 100;

/// A tenant's settings as stored (JSON): unknown fields of a newer release
/// are kept out by `deny_unknown_fields` only at the API; stored documents
/// read leniently so a rollback does not fail.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantSettings {
    /// Attribute keys that hold personal data: masked or hidden like other
    /// personal fields.
    pub personal_attribute_keys: BTreeSet<String>,
    /// Attribute keys that hold monetary figures (the financial class).
    pub financial_attribute_keys: BTreeSet<String>,
    /// Most distinct profiles one subject may read per hour; 0: no cap.
    pub profile_reads_per_hour: u32,
    /// Source systems, most trusted first (normalized names): merges keep
    /// the value of the most trusted source of each field.
    pub source_priority: Vec<String>,
    /// Most sources one merge may join into its target; 0: the default
    /// (`merge::MAX_SOURCES`).
    pub max_merge_sources: u32,
    /// Match probability at or above which two profiles merge without
    /// review; 0: the default (0.999).
    pub match_auto_threshold: f64,
    /// Match probability at or above which a pair goes to the stewards'
    /// review queue; 0: the default (0.9).
    pub match_review_threshold: f64,
    /// Attribute keys identity resolution compares (a national id, a
    /// loyalty number): equal values are evidence of one person, weighed by
    /// how many profiles share them.
    pub match_attribute_keys: BTreeSet<String>,
    /// Values that are no evidence of one person in this tenant, besides
    /// the placeholders every tenant has (docs/identity-resolution.md): a
    /// shop's switchboard number, its own info@ address, a depot's street
    /// address. Emails, phone numbers or address texts, as written.
    pub match_blocklist: BTreeSet<String>,
}

/// The auto threshold when a tenant sets none.
pub const DEFAULT_AUTO_THRESHOLD: f64 = 0.999;
/// The review threshold when a tenant sets none.
pub const DEFAULT_REVIEW_THRESHOLD: f64 = 0.9;

impl TenantSettings {
    /// The (auto, review) match thresholds in force, defaults filled in.
    pub fn match_thresholds(&self) -> (f64, f64) {
        let or = |value: f64, default: f64| if value == 0.0 { default } else { value };
        (
            or(self.match_auto_threshold, DEFAULT_AUTO_THRESHOLD),
            or(self.match_review_threshold, DEFAULT_REVIEW_THRESHOLD),
        )
    }

    /// Most sources one merge may take in this tenant.
    pub fn merge_source_cap(&self) -> usize {
        match self.max_merge_sources {
            0 => super::merge::MAX_SOURCES,
            cap => cap as usize,
        }
    }

    /// The class of attribute `key`.
    pub fn attribute_class(&self, key: &str) -> FieldClass {
        if self.financial_attribute_keys.contains(key) {
            FieldClass::Financial
        } else if self.personal_attribute_keys.contains(key) {
            FieldClass::PersonalAttribute
        } else {
            FieldClass::Attribute
        }
    }

    /// Checks the values a caller sent.
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut v = Violations::default();
        for (field, keys, most) in [
            ("personal_attribute_keys", &self.personal_attribute_keys, MAX_KEYS),
            ("financial_attribute_keys", &self.financial_attribute_keys, MAX_KEYS),
            ("match_attribute_keys", &self.match_attribute_keys, MAX_MATCH_KEYS),
        ] {
            if keys.len() > most {
                v.add(field, format!("at most {most} keys"));
            }
            for (i, key) in keys.iter().enumerate() {
                if let Err(why) = limits::attribute_key(key) {
                    v.add(format!("{field}[{i}]"), why);
                }
            }
        }
        if self.match_blocklist.len() > MAX_BLOCKLIST {
            v.add("match_blocklist", format!("at most {MAX_BLOCKLIST} values"));
        }
        for (i, value) in self.match_blocklist.iter().enumerate() {
            if value.trim().is_empty() || value.chars().count() > BLOCKLIST_VALUE {
                v.add(format!("match_blocklist[{i}]"), format!("needs 1 to {BLOCKLIST_VALUE} characters"));
            }
        }
        if self.max_merge_sources > super::merge::MAX_SOURCES_LIMIT {
            v.add("max_merge_sources", format!("at most {} (0: the default)", super::merge::MAX_SOURCES_LIMIT));
        }
        for (field, value) in [
            ("match_auto_threshold", self.match_auto_threshold),
            ("match_review_threshold", self.match_review_threshold),
        ] {
            if !(value == 0.0 || (value > 0.0 && value < 1.0)) {
                v.add(field, "a probability above 0 and below 1 (0: the default)");
            }
        }
        let (auto, review) = self.match_thresholds();
        if review >= auto {
            v.add("match_review_threshold", format!("must be below the auto threshold ({auto})"));
        }
        if self.source_priority.len() > MAX_SOURCES {
            v.add("source_priority", format!("at most {MAX_SOURCES} sources"));
        }
        for (i, source) in self.source_priority.iter().enumerate() {
            match normalize_source(source) {
                Ok(normal) if normal == *source => {}
                Ok(_) => v.add(format!("source_priority[{i}]"), "not in normal form (lower-case, trimmed)"),
                Err(why) => v.add(format!("source_priority[{i}]"), why),
            }
            if self.source_priority[..i].contains(source) {
                v.add(format!("source_priority[{i}]"), "listed twice");
            }
        }
        for key in self.personal_attribute_keys.intersection(&self.financial_attribute_keys) {
            let key: String = key.chars().take(limits::ATTRIBUTE_KEY).collect();
            v.add("financial_attribute_keys", format!("'{key}' is also a personal key: give each key one class"));
        }
        v.into_result(())
    }
}

/// Stored settings with their version.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedSettings {
    /// The values.
    pub settings: TenantSettings,
    /// Version for optimistic concurrency; 0 before the first change.
    pub version: i64,
    /// Last change, if any.
    pub updated_at: Option<DateTime<Utc>>,
    /// Subject of the last change, if any.
    pub updated_by: Option<String>,
}

impl VersionedSettings {
    /// The defaults, never changed.
    pub fn initial() -> Self {
        Self { settings: TenantSettings::default(), version: 0, updated_at: None, updated_by: None }
    }

    /// The etag callers send back on update.
    pub fn etag(&self) -> String {
        self.version.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_has_one_class() {
        let both = TenantSettings {
            personal_attribute_keys: ["ltv".to_owned()].into(),
            financial_attribute_keys: ["ltv".to_owned()].into(),
            ..Default::default()
        };
        assert!(both.validate().is_err());
        let apart = TenantSettings { personal_attribute_keys: ["ssn".to_owned()].into(), ..both };
        assert!(apart.validate().is_ok());
        assert_eq!(apart.attribute_class("ltv"), FieldClass::Financial);
        assert_eq!(apart.attribute_class("ssn"), FieldClass::PersonalAttribute);
        assert_eq!(apart.attribute_class("tier"), FieldClass::Attribute);
    }

    #[test]
    fn match_thresholds_are_probabilities_with_review_below_auto() {
        assert_eq!(TenantSettings::default().match_thresholds(), (DEFAULT_AUTO_THRESHOLD, DEFAULT_REVIEW_THRESHOLD));
        let ok = TenantSettings { match_auto_threshold: 0.99, match_review_threshold: 0.5, ..Default::default() };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.match_thresholds(), (0.99, 0.5));
        for (auto, review) in [(1.0, 0.0), (0.0, -0.1), (f64::NAN, 0.0), (0.8, 0.0), (0.5, 0.5), (0.0, 0.9995)] {
            let bad =
                TenantSettings { match_auto_threshold: auto, match_review_threshold: review, ..Default::default() };
            assert!(bad.validate().is_err(), "{auto} {review}");
        }
    }

    #[test]
    fn source_priority_lists_normal_names_once() {
        let ok = TenantSettings { source_priority: vec!["salesforce".into(), "pos".into()], ..Default::default() };
        assert!(ok.validate().is_ok());
        for bad in [vec!["pos".to_owned(), "pos".to_owned()], vec!["Sales Force".to_owned()], vec![" pos".to_owned()]] {
            let settings = TenantSettings { source_priority: bad.clone(), ..Default::default() };
            assert!(settings.validate().is_err(), "{bad:?}");
        }
    }
}
