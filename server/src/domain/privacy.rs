//! Field classes and masked forms: what kind of data each field holds, and
//! how a value looks when a reader may see only its shape.
//!
//! Every field a response can carry has a class, declared here or by an
//! exhaustive `match` beside its type ([`super::profile::ProfileField::class`]),
//! so a new field cannot compile without one. Which class a role sees
//! visible, masked or hidden is the access policy's business
//! (`auth::masking`); this module only knows the classes and the shapes.

/// What kind of data a field holds, for the masking policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldClass {
    /// Ids, kind, status, versions and times: they describe the record, not the person.
    Record,
    /// A person's names.
    Name,
    /// An organization's name: business data.
    OrganizationName,
    /// The business segment.
    Segment,
    /// Email addresses.
    Email,
    /// Phone numbers.
    Phone,
    /// Postal addresses.
    Address,
    /// Dates of birth.
    BirthDate,
    /// Ids of the customer in other systems: keys back to the person there.
    ExternalId,
    /// Attributes the tenant has not declared personal or financial.
    Attribute,
    /// Attributes the tenant declared personal (tenant settings).
    PersonalAttribute,
    /// Monetary figures (attributes the tenant declared financial).
    Financial,
    /// Free-text proof of a consent decision: may quote the person.
    Evidence,
}

impl FieldClass {
    /// Every class.
    pub const ALL: [Self; 13] = [
        Self::Record,
        Self::Name,
        Self::OrganizationName,
        Self::Segment,
        Self::Email,
        Self::Phone,
        Self::Address,
        Self::BirthDate,
        Self::ExternalId,
        Self::Attribute,
        Self::PersonalAttribute,
        Self::Financial,
        Self::Evidence,
    ];

    /// The name used in docs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Record => "RECORD",
            Self::Name => "NAME",
            Self::OrganizationName => "ORGANIZATION_NAME",
            Self::Segment => "SEGMENT",
            Self::Email => "EMAIL",
            Self::Phone => "PHONE",
            Self::Address => "ADDRESS",
            Self::BirthDate => "BIRTH_DATE",
            Self::ExternalId => "EXTERNAL_ID",
            Self::Attribute => "ATTRIBUTE",
            Self::PersonalAttribute => "PERSONAL_ATTRIBUTE",
            Self::Financial => "FINANCIAL",
            Self::Evidence => "EVIDENCE",
        }
    }

    /// Whether a value of this class is personal data (its unmasked
    /// disclosure is audited).
    pub fn is_personal(self) -> bool {
        matches!(
            self,
            Self::Name
                | Self::Email
                | Self::Phone
                | Self::Address
                | Self::BirthDate
                | Self::ExternalId
                | Self::PersonalAttribute
                | Self::Financial
                | Self::Evidence
        )
    }
}

/// The marker of a masked value. Input containing it is refused: a masked
/// value read back must never be written over the real one.
pub const MASK: &str = "***";

/// Whether `value` carries the mask marker (is, or may be, a masked value).
pub fn looks_masked(value: &str) -> bool {
    value.contains(MASK)
}

/// `Jean-Luc Picard` → `J*** P***`: the first letter of each word.
pub fn mask_name(name: &str) -> String {
    let mut out = String::with_capacity(8);
    for word in name.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().next());
        out.push_str(MASK);
    }
    if out.is_empty() { MASK.to_owned() } else { out }
}

/// `jane.doe@example.com` → `j***@example.com`: the domain stays, so a
/// reader can still count by provider.
pub fn mask_email(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let mut out = String::with_capacity(domain.len() + 8);
            out.extend(local.chars().next());
            out.push_str(MASK);
            out.push('@');
            out.push_str(domain);
            out
        }
        None => MASK.to_owned(),
    }
}

/// `+14155550123` → `+1 ***-***-0123`: calling code and the last four digits.
pub fn mask_phone(number: &str) -> String {
    let digits = number.strip_prefix('+').unwrap_or(number);
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return MASK.to_owned();
    }
    let code = &digits[..calling_code_len(digits)];
    format!("+{code} {MASK}-{MASK}-{}", &digits[digits.len() - 4..])
}

/// Length of the ITU-T E.164 country calling code at the start of `digits`.
/// Calling codes are prefix-free: 1 and 7 are the only one-digit codes, and
/// the two-digit ones are listed below; every other code has three digits.
fn calling_code_len(digits: &str) -> usize {
    const TWO_DIGIT: [&str; 44] = [
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49",
        "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81", "82", "84",
        "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    if digits.starts_with('1') || digits.starts_with('7') {
        1
    } else if TWO_DIGIT.iter().any(|code| digits.starts_with(code)) {
        2
    } else {
        3
    }
}

/// `1985-04-12` → `1985`: the year alone.
pub fn mask_date(date: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    format!("{:04}", date.year())
}

/// `1985-04-12`: a date as responses carry it (without strftime's parsing).
pub fn format_date(date: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// `CRM-0012345` → `***2345`: the last four characters of a long id, none of
/// a short one.
pub fn mask_id(id: &str) -> String {
    let count = id.chars().count();
    if count <= 8 {
        return MASK.to_owned();
    }
    let tail = id.char_indices().nth(count - 4).map_or(id, |(at, _)| &id[at..]);
    format!("{MASK}{tail}")
}

/// A JSON value reduced to its shape: strings keep their first character,
/// everything else becomes the marker.
pub fn mask_json(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Null => serde_json::Value::Null,
        serde_json::Value::String(s) => serde_json::Value::String(mask_name(s)),
        _ => serde_json::Value::String(MASK.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_values_keep_their_shape() {
        assert_eq!(mask_name("Jean-Luc"), "J***");
        assert_eq!(mask_name("van der Berg"), "v*** d*** B***");
        assert_eq!(mask_email("jane.doe@example.com"), "j***@example.com");
        assert_eq!(mask_phone("+14155550123"), "+1 ***-***-0123");
        assert_eq!(mask_phone("+442079460958"), "+44 ***-***-0958");
        assert_eq!(mask_phone("+353861234567"), "+353 ***-***-4567");
        assert_eq!(mask_phone("+4989"), "***");
        let date = chrono::NaiveDate::from_ymd_opt(1985, 4, 12).expect("date");
        assert_eq!(mask_date(date), "1985");
        assert_eq!(format_date(date), date.format("%Y-%m-%d").to_string());
        assert_eq!(mask_id("Ü-12345678"), "***5678");
        assert_eq!(mask_id("CRM-0012345"), "***2345");
        assert_eq!(mask_id("42"), "***");
        for masked in [mask_name("Ann"), mask_email("a@b.c"), mask_phone("+14155550123"), mask_id("1234567890")] {
            assert!(looks_masked(&masked), "{masked}");
        }
    }
}
