//! Normalization of identifiers, so that one person's email, phone or external
//! id always lands on the same key of the identity index.
//!
//! The rules are documented, with examples, in `docs/normalization.md`; the
//! table of cases in this module's tests is the executable form of that page.

use std::fmt;

use phonenumber::{Mode, country};

/// Kinds of identifier in the identity index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentifierType {
    /// An email address.
    Email,
    /// A phone number in E.164.
    Phone,
    /// An id in a named source system.
    ExternalId,
}

impl IdentifierType {
    /// The stored (and documented) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "EMAIL",
            Self::Phone => "PHONE",
            Self::ExternalId => "EXTERNAL_ID",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "EMAIL" => Some(Self::Email),
            "PHONE" => Some(Self::Phone),
            "EXTERNAL_ID" => Some(Self::ExternalId),
            _ => None,
        }
    }
}

/// A normalized identifier: what the identity index is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentifierKey {
    /// Kind of identifier.
    pub id_type: IdentifierType,
    /// The source system for external ids; empty otherwise.
    pub namespace: String,
    /// The normalized value.
    pub value: String,
}

impl fmt::Display for IdentifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}:{}", self.id_type.as_str(), self.value)
        } else {
            write!(f, "{}:{}:{}", self.id_type.as_str(), self.namespace, self.value)
        }
    }
}

/// Deployment-wide normalization settings.
#[derive(Debug, Clone)]
pub struct NormalizationPolicy {
    /// Region assumed for phone numbers written without a country code.
    pub default_region: country::Id,
    /// Whether `local+tag@domain` and `local@domain` are one identity.
    pub strip_plus_tags: bool,
}

impl Default for NormalizationPolicy {
    fn default() -> Self {
        Self { default_region: country::Id::US, strip_plus_tags: true }
    }
}

/// Longest email address accepted (RFC 5321 path limit).
const MAX_EMAIL_LEN: usize = 254;

/// An email address as stored on a profile, and its identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedEmail {
    /// Trimmed and lower-cased: what the profile shows.
    pub address: String,
    /// The identity key: `address` without a `+tag` when the policy says so.
    pub key: String,
}

impl NormalizationPolicy {
    /// The identity key of a stored address (which was valid when stored; if
    /// it no longer parses, the address itself).
    pub fn email_key(&self, address: &str) -> String {
        self.email(address).map(|e| e.key).unwrap_or_else(|_| address.to_owned())
    }

    /// Normalizes an email address: trims, lower-cases the whole address, and
    /// for the identity key drops a `+tag` from the local part.
    pub fn email(&self, raw: &str) -> Result<NormalizedEmail, String> {
        let address = raw.trim().to_lowercase();
        if address.is_empty() {
            return Err("required".into());
        }
        if address.len() > MAX_EMAIL_LEN {
            return Err(format!("longer than {MAX_EMAIL_LEN} characters"));
        }
        // The description names what is wrong, never the value: error
        // messages travel to logs and clients that may not see it.
        let invalid = || "is not an email address".to_owned();
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Err(invalid());
        };
        // email_address accepts the full RFC 5322 grammar (quoted locals, IP
        // literals); a customer address also needs a dotted host name.
        let dotted_domain = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !dotted_domain || local.contains('"') || !email_address::EmailAddress::is_valid(&address) {
            return Err(invalid());
        }
        let key_local = match local.split_once('+') {
            Some((base, _tag)) if self.strip_plus_tags && !base.is_empty() => base,
            _ => local,
        };
        let key = format!("{key_local}@{domain}");
        Ok(NormalizedEmail { address, key })
    }

    /// Normalizes a phone number to E.164. Numbers without a `+` country code
    /// are read in the default region; the number must be valid there.
    pub fn phone(&self, raw: &str) -> Result<String, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("required".into());
        }
        if trimmed.len() > 40 {
            return Err("longer than 40 characters".into());
        }
        let invalid = || "is not a valid phone number".to_owned();
        // A leading "00" is the international prefix in most of the world.
        let international = match trimmed.strip_prefix("00") {
            Some(rest) if !rest.starts_with('0') => Some(format!("+{rest}")),
            _ if trimmed.starts_with('+') => Some(trimmed.to_owned()),
            _ => None,
        };
        let number = match international {
            // "+44 (0)20 …": the bracketed trunk prefix is not dialled from abroad.
            // With a country code given, no default region is passed: the
            // parser would strip that region's trunk prefix from the number
            // (the US "1" from a Paris "+33 1 …").
            Some(number) => phonenumber::parse(None, number.replace("(0)", "")),
            None => phonenumber::parse(Some(self.default_region), trimmed),
        }
        .map_err(|_| invalid())?;
        if !phonenumber::is_valid(&number) {
            return Err(invalid());
        }
        Ok(number.format().mode(Mode::E164).to_string())
    }
}

/// Longest external-id source name.
const MAX_SOURCE_LEN: usize = 64;
/// Longest external id.
const MAX_EXTERNAL_ID_LEN: usize = 256;

/// Normalizes a source system name: trimmed, lower-cased, 1–64 characters of
/// letters, digits, `-`, `_` and `.`.
pub fn normalize_source(raw: &str) -> Result<String, String> {
    let source = raw.trim().to_ascii_lowercase();
    if source.is_empty() {
        return Err("required".into());
    }
    if source.len() > MAX_SOURCE_LEN {
        return Err(format!("longer than {MAX_SOURCE_LEN} characters"));
    }
    if !source.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err("may hold only letters, digits, '-', '_' and '.'".into());
    }
    Ok(source)
}

/// Normalizes an external id: trimmed, otherwise kept exactly (ids in other
/// systems are often case-sensitive).
pub fn normalize_external_id(raw: &str) -> Result<String, String> {
    let id = raw.trim();
    if id.is_empty() {
        return Err("required".into());
    }
    if id.len() > MAX_EXTERNAL_ID_LEN {
        return Err(format!("longer than {MAX_EXTERNAL_ID_LEN} characters"));
    }
    if id.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(id.to_owned())
}

/// Folds text for name search: transliterated to ASCII (accents dropped),
/// lower-cased, every run of other characters one space.
pub fn fold_for_search(raw: &str) -> String {
    // Apostrophes join (O'Brien → obrien, as people type it); other
    // punctuation separates words (Smith-Jones → smith jones).
    let ascii: String = deunicode::deunicode(raw).to_lowercase().chars().filter(|c| !matches!(c, '\'' | '`')).collect();
    let mut folded = String::with_capacity(ascii.len());
    for word in ascii.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        if !folded.is_empty() {
            folded.push(' ');
        }
        folded.push_str(word);
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalize_as_documented() {
        let policy = NormalizationPolicy::default();
        let cases = [
            ("john.doe@example.com", "john.doe@example.com", "john.doe@example.com"),
            ("  John.Doe@Example.COM ", "john.doe@example.com", "john.doe@example.com"),
            ("jane+shop@example.com", "jane+shop@example.com", "jane@example.com"),
            ("JANE+News+x@Mail.Example.org", "jane+news+x@mail.example.org", "jane@mail.example.org"),
            ("+tag@example.com", "+tag@example.com", "+tag@example.com"),
            ("o'brien@example.ie", "o'brien@example.ie", "o'brien@example.ie"),
        ];
        for (raw, address, key) in cases {
            let email = policy.email(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!((email.address.as_str(), email.key.as_str()), (address, key), "{raw}");
        }
        let keep = NormalizationPolicy { strip_plus_tags: false, ..Default::default() };
        assert_eq!(keep.email("jane+shop@example.com").map(|e| e.key).ok().as_deref(), Some("jane+shop@example.com"));
    }

    #[test]
    fn malformed_emails_are_refused() {
        let policy = NormalizationPolicy::default();
        for raw in [
            "",
            "   ",
            "john",
            "john@",
            "@example.com",
            "john@localhost",
            "john@@example.com",
            "john doe@example.com",
            "john@exa mple.com",
            "john@-example.com",
            "\"john\"@example.com",
            "john@example..com",
            &format!("{}@example.com", "a".repeat(250)),
        ] {
            assert!(policy.email(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn phones_normalize_to_e164() {
        let policy = NormalizationPolicy::default();
        let cases = [
            ("+1 415 555 2671", "+14155552671"),
            ("(415) 555-2671", "+14155552671"),
            ("415.555.2671", "+14155552671"),
            ("1-415-555-2671", "+14155552671"),
            ("+44 20 7946 0958", "+442079460958"),
            ("0044 20 7946 0958", "+442079460958"),
            ("+49 30 901820", "+4930901820"),
            ("+33 1 23 45 67 89", "+33123456789"),
            ("+33 (0)1 42 68 53 00", "+33142685300"),
            ("+44 (0)20 7946 0958", "+442079460958"),
            ("+81 3-1234-5678", "+81312345678"),
        ];
        for (raw, e164) in cases {
            assert_eq!(policy.phone(raw).as_deref(), Ok(e164), "{raw}");
        }
        let uk = NormalizationPolicy { default_region: country::Id::GB, ..Default::default() };
        assert_eq!(uk.phone("020 7946 0958").as_deref(), Ok("+442079460958"));
    }

    #[test]
    fn malformed_phones_are_refused() {
        let policy = NormalizationPolicy::default();
        for raw in ["", "abc", "123", "+1 000 000 0000", "555-2671", "+999 1234 5678", &"1".repeat(41)] {
            assert!(policy.phone(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn sources_and_external_ids_normalize() {
        assert_eq!(normalize_source(" Salesforce ").as_deref(), Ok("salesforce"));
        assert_eq!(normalize_source("pos_eu-1.store").as_deref(), Ok("pos_eu-1.store"));
        assert!(normalize_source("sales force").is_err());
        assert!(normalize_source("").is_err());
        assert_eq!(normalize_external_id(" 0031x00000AbCdE ").as_deref(), Ok("0031x00000AbCdE"));
        assert!(normalize_external_id(" ").is_err());
        assert!(normalize_external_id("a\nb").is_err());
    }

    #[test]
    fn names_fold_case_and_accents() {
        let cases = [
            ("José García", "jose garcia"),
            ("  ZOË   o'Brien-Smith ", "zoe obrien smith"),
            ("D’Angelo", "dangelo"),
            ("Müller", "muller"),
            ("Łukasz Żółć", "lukasz zolc"),
            ("Straße", "strasse"),
            ("ACME, Inc.", "acme inc"),
        ];
        for (raw, folded) in cases {
            assert_eq!(fold_for_search(raw), folded, "{raw}");
        }
    }
}
