//! Field comparisons: how far two records agree on one field, as a level from
//! the strongest agreement (0) down to disagreement (the last), or no level
//! at all when either side has no value (a missing value is no evidence).

use serde::{Deserialize, Serialize};

use crate::Record;

/// A field the model compares.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Given name: exact, nickname, close spelling, initial, sound.
    GivenName,
    /// Family name: exact, close spelling, one name within the other, sound.
    FamilyName,
    /// Birth date: exact, day and month swapped, one digit off, near.
    BirthDate,
    /// Any email address in common, or the same mailbox name, or a typo.
    Email,
    /// Any phone number in common, or the same subscriber number, or a typo.
    Phone,
    /// Street address tokens.
    Address,
    /// Postal code: exact, sector, district.
    Postcode,
    /// City.
    City,
    /// An attribute the tenant maps for matching (a national id, a loyalty
    /// number): equal or not.
    Attribute(String),
}

/// Jaro-Winkler similarity above which two spellings are one name with a typo.
const CLOSE: f64 = 0.92;
/// Jaro-Winkler similarity above which two spellings may be one name.
const NEAR: f64 = 0.80;

impl Field {
    /// The fields compared when a tenant configures none.
    pub fn defaults() -> Vec<Field> {
        vec![
            Field::GivenName,
            Field::FamilyName,
            Field::BirthDate,
            Field::Email,
            Field::Phone,
            Field::Address,
            Field::Postcode,
            Field::City,
        ]
    }

    /// The key of a mapped attribute; none for the other fields.
    pub fn attribute_key(&self) -> Option<&str> {
        match self {
            Field::Attribute(key) => Some(key),
            _ => None,
        }
    }

    /// The field's name in explanations and settings.
    pub fn name(&self) -> String {
        match self {
            Field::GivenName => "given_name".into(),
            Field::FamilyName => "family_name".into(),
            Field::BirthDate => "birth_date".into(),
            Field::Email => "email".into(),
            Field::Phone => "phone".into(),
            Field::Address => "address".into(),
            Field::Postcode => "postal_code".into(),
            Field::City => "locality".into(),
            Field::Attribute(key) => format!("attributes.{key}"),
        }
    }

    /// The labels of the levels, strongest agreement first, disagreement last.
    pub fn levels(&self) -> &'static [&'static str] {
        match self {
            Field::GivenName => &["exact", "nickname", "close", "initial", "sounds alike", "near", "different"],
            Field::FamilyName => &["exact", "close", "one within the other", "sounds alike", "near", "different"],
            Field::BirthDate => &["exact", "day and month swapped", "one digit off", "same month", "different"],
            Field::Email => &["same address", "same mailbox", "one typo", "different"],
            Field::Phone => &["same number", "same subscriber", "one digit off", "different"],
            Field::Address => {
                &["same", "mostly the same", "same number, some words", "same street, other number", "different"]
            }
            Field::Postcode => &["exact", "same sector", "same district", "different"],
            Field::City => &["exact", "close", "different"],
            Field::Attribute(_) => &["exact", "different"],
        }
    }

    /// Whether the exact level's weight depends on how common the shared
    /// value is: a shared "Smith" is weaker evidence than a shared
    /// "Okonkwo", and a birth date, address, email or phone that many
    /// records give (1 January 1900, a care home, a shop's switchboard
    /// number typed for customers who gave none) weaker than one only a
    /// household shares.
    pub fn term_frequency(&self) -> bool {
        true
    }

    /// Whether a value belongs to one person or household rather than being
    /// drawn from a population's values: its frequency weighs by how many
    /// hold it, not by its share.
    pub fn identifier(&self) -> bool {
        matches!(self, Field::Email | Field::Phone | Field::Address | Field::Attribute(_))
    }

    /// The values of this field in `record` whose frequencies are counted
    /// (hashed: a million records' addresses need not be held twice).
    pub fn terms<'r>(&self, record: &'r Record) -> impl Iterator<Item = u64> + 'r {
        self.shared_terms(record, record)
    }

    /// The values `a` and `b` share at the exact level, whose frequencies
    /// adjust its weight: every email or phone they have in common (the
    /// model takes the rarest, so the order of the records does not
    /// matter), or the one value of other fields. Nothing is allocated:
    /// this runs for every agreeing field of every scored pair.
    pub fn shared_terms<'r>(&self, a: &'r Record, b: &'r Record) -> impl Iterator<Item = u64> + 'r {
        let (ours, theirs): (&[String], &[String]) = match self {
            Field::Email => (&a.emails, &b.emails),
            Field::Phone => (&a.phones, &b.phones),
            _ => (&[], &[]),
        };
        ours.iter().filter(move |v| theirs.contains(v)).map(term).chain(self.single_term(a))
    }

    /// The one value of a single-valued field; none where the record has
    /// none, so that a share counts only the records with a value.
    fn single_term(&self, record: &Record) -> Option<u64> {
        let text = |value: &str| (!value.is_empty()).then(|| term(value));
        match self {
            Field::GivenName => text(&record.given),
            Field::FamilyName => text(&record.family),
            Field::BirthDate => record.birth.map(|date| term(&date)),
            // The tokens alone: the level already says whether the towns agree.
            Field::Address => (!record.address.is_empty()).then(|| term(&record.address)),
            Field::Postcode => text(&record.postcode),
            Field::City => text(&record.city),
            Field::Attribute(key) => attribute(record, key).and_then(text),
            Field::Email | Field::Phone => None,
        }
    }

    /// The level at which `a` and `b` agree on this field; `None` when
    /// either has no value, or when another field already holds this one's
    /// evidence (a postal code and city where both have a street address,
    /// a city both share with their postal code).
    pub fn level(&self, a: &Record, b: &Record) -> Option<u8> {
        match self {
            Field::GivenName => {
                let b = if swapped(a, b) { name_of(&b.family, &b.family, &b.family_sounds) } else { given(b) };
                given_level(given(a), b)
            }
            Field::FamilyName => {
                let (b, sounds) =
                    if swapped(a, b) { (&b.given, &b.given_sounds) } else { (&b.family, &b.family_sounds) };
                family_level(&a.family, &a.family_sounds, b, sounds)
            }
            Field::BirthDate => Some(date_level(a.birth?, b.birth?)),
            Field::Email => email_level(&a.emails, &b.emails),
            Field::Phone => phone_level(&a.phones, &b.phones),
            Field::Address => address_level(a, b),
            // Where both have a street address, it speaks for the place (its
            // comparison takes the city in): the postal code and city would
            // count the same evidence again, which made strangers at one
            // address one customer and gave two people of one town with
            // different addresses more for the town than the addresses took.
            Field::Postcode if both_addresses(a, b) => None,
            Field::City
                if both_addresses(a, b) || (!a.postcode.is_empty() && a.postcode == b.postcode && a.city == b.city) =>
            {
                None
            }
            Field::Postcode => postcode_level(&a.postcode, &b.postcode),
            Field::City => {
                let (a, b) = (&a.city, &b.city);
                present(a, b)?;
                Some(if a == b {
                    0
                } else if jaro_winkler(a, b) >= 0.9 {
                    1
                } else {
                    2
                })
            }
            Field::Attribute(key) => Some(u8::from(attribute(a, key)? != attribute(b, key)?)),
        }
    }

    /// The values compared, as an explanation shows them.
    pub fn shown(&self, record: &Record) -> String {
        match self {
            Field::GivenName => record.given.clone(),
            Field::FamilyName => record.family.clone(),
            Field::BirthDate => record.birth.map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")).unwrap_or_default(),
            Field::Email => record.emails.join(" "),
            Field::Phone => record.phones.join(" "),
            Field::Address => record.address.join(" "),
            Field::Postcode => record.postcode.clone(),
            Field::City => record.city.clone(),
            Field::Attribute(key) => {
                record.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
            }
        }
    }
}

/// A record's value of a mapped attribute.
fn attribute<'r>(record: &'r Record, key: &str) -> Option<&'r str> {
    let at = record.attributes.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
    Some(&record.attributes[at].1)
}

/// The key a value is counted (term frequencies), blocked and laid out
/// under: a stable 64-bit hash, the same in every run.
pub fn term<T: std::hash::Hash + ?Sized>(value: &T) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// A name with what it is compared by.
#[derive(Clone, Copy)]
struct Name<'r> {
    folded: &'r str,
    formal: &'r str,
    sounds: &'r (String, String),
}

fn name_of<'r>(folded: &'r str, formal: &'r str, sounds: &'r (String, String)) -> Name<'r> {
    Name { folded, formal, sounds }
}

fn given(r: &Record) -> Name<'_> {
    name_of(&r.given, &r.given_formal, &r.given_sounds)
}

/// Whether both records have a street address.
fn both_addresses(a: &Record, b: &Record) -> bool {
    !a.address.is_empty() && !b.address.is_empty()
}

/// Whether `b` holds `a`'s given and family names the other way round.
pub fn swapped(a: &Record, b: &Record) -> bool {
    a.given != b.given && !a.given.is_empty() && !a.family.is_empty() && a.given == b.family && a.family == b.given
}

fn present(a: &str, b: &str) -> Option<()> {
    (!a.is_empty() && !b.is_empty()).then_some(())
}

fn sounds_alike(a: &(String, String), b: &(String, String)) -> bool {
    !a.0.is_empty() && (a.0 == b.0 || a.0 == b.1 || (!a.1.is_empty() && (a.1 == b.0 || a.1 == b.1)))
}

fn given_level(a: Name<'_>, b: Name<'_>) -> Option<u8> {
    present(a.folded, b.folded)?;
    let initial = |x: &str, y: &str| x.len() == 1 && y.starts_with(x);
    if a.folded == b.folded {
        return Some(0);
    } else if a.formal == b.formal {
        return Some(1);
    }
    let similarity = jaro_winkler(a.folded, b.folded);
    Some(if similarity >= CLOSE {
        2
    } else if initial(a.folded, b.folded) || initial(b.folded, a.folded) {
        3
    } else if sounds_alike(a.sounds, b.sounds) {
        4
    } else if similarity >= NEAR {
        5
    } else {
        6
    })
}

fn family_level(a: &str, a_sounds: &(String, String), b: &str, b_sounds: &(String, String)) -> Option<u8> {
    present(a, b)?;
    if a == b {
        return Some(0);
    }
    let within = |x: &str, y: &str| x.split(' ').all(|t| y.split(' ').any(|u| u == t));
    let similarity = jaro_winkler(a, b);
    Some(if similarity >= CLOSE {
        1
    } else if within(a, b) || within(b, a) {
        2
    } else if sounds_alike(a_sounds, b_sounds) {
        3
    } else if similarity >= NEAR {
        4
    } else {
        5
    })
}

fn date_level(a: (u16, u8, u8), b: (u16, u8, u8)) -> u8 {
    let digits = |(y, m, d): (u16, u8, u8)| {
        let (y, m, d) = (y as u32, m as u32, d as u32);
        [y / 1000 % 10, y / 100 % 10, y / 10 % 10, y % 10, m / 10, m % 10, d / 10, d % 10]
    };
    if a == b {
        0
    } else if a.0 == b.0 && a.1 == b.2 && a.2 == b.1 {
        1
    } else if digits(a).iter().zip(digits(b).iter()).filter(|(x, y)| x != y).count() == 1 {
        2
    } else if (a.0 == b.0 && a.1 == b.1) || (a.1 == b.1 && a.2 == b.2 && a.0.abs_diff(b.0) <= 10) {
        3
    } else {
        4
    }
}

fn email_level(a: &[String], b: &[String]) -> Option<u8> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    // The best level over every pair of addresses, each split once: this
    // runs for nearly every scored pair, and most share no address.
    let mut best = 3;
    for x in a {
        for y in b {
            if x == y {
                return Some(0);
            }
            let (x_box, x_domain) = x.split_once('@').unwrap_or((x, ""));
            let (y_box, y_domain) = y.split_once('@').unwrap_or((y, ""));
            if x_box.len() >= 4 && x_box == y_box {
                best = 1;
            } else if best > 2 && x_domain == y_domain && x_box.len() >= 4 && within_one_edit(x_box, y_box) {
                // A typo: one edit apart at one domain. Similar-looking
                // addresses of people with similar names are not evidence
                // beyond their names.
                best = 2;
            }
        }
    }
    Some(best)
}

/// Whether `x` and `y` are at most one edit apart (a character inserted,
/// deleted or replaced, or two neighbours swapped: an optimal string
/// alignment distance of at most 1) without building the distance matrix.
fn within_one_edit(x: &str, y: &str) -> bool {
    if !x.is_ascii() || !y.is_ascii() {
        return strsim::osa_distance(x, y) <= 1;
    }
    let (x, y) = if x.len() <= y.len() { (x.as_bytes(), y.as_bytes()) } else { (y.as_bytes(), x.as_bytes()) };
    if y.len() - x.len() > 1 {
        return false;
    }
    let p = x.iter().zip(y).take_while(|(a, b)| a == b).count();
    if p == x.len() {
        return true;
    }
    if x.len() < y.len() {
        return x[p..] == y[p + 1..];
    }
    x[p + 1..] == y[p + 1..] || (p + 1 < x.len() && x[p] == y[p + 1] && x[p + 1] == y[p] && x[p + 2..] == y[p + 2..])
}

/// Jaro-Winkler similarity as `strsim::jaro_winkler` computes it, without
/// its allocation and character decoding for the ASCII strings folded
/// names and towns are (names up to 64 bytes): it runs several times for
/// each of tens of millions of scored pairs.
pub(crate) fn jaro_winkler(a: &str, b: &str) -> f64 {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    if x.len() > 64 || y.len() > 64 || !a.is_ascii() || !b.is_ascii() {
        return strsim::jaro_winkler(a, b);
    }
    if x.is_empty() && y.is_empty() {
        return 1.0;
    } else if x.is_empty() || y.is_empty() {
        return 0.0;
    }
    let range = (x.len().max(y.len()) / 2).saturating_sub(1);
    let (mut x_flags, mut y_flags, mut matches) = (0u64, 0u64, 0usize);
    for (i, c) in x.iter().enumerate() {
        let from = i.saturating_sub(range);
        for (j, d) in y.iter().enumerate().take((i + range + 1).min(y.len())).skip(from) {
            if y_flags & (1 << j) == 0 && d == c {
                x_flags |= 1 << i;
                y_flags |= 1 << j;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let (mut transpositions, mut j) = (0usize, 0usize);
    for (i, c) in x.iter().enumerate() {
        if x_flags & (1 << i) != 0 {
            while y_flags & (1 << j) == 0 {
                j += 1;
            }
            transpositions += usize::from(*c != y[j]);
            j += 1;
        }
    }
    let m = matches as f64;
    let jaro = (m / x.len() as f64 + m / y.len() as f64 + (matches - transpositions / 2) as f64 / m) / 3.0;
    if jaro > 0.7 {
        let prefix = x.iter().take(4).zip(y).take_while(|(p, q)| p == q).count();
        jaro + 0.1 * prefix as f64 * (1.0 - jaro)
    } else {
        jaro
    }
}

fn phone_level(a: &[String], b: &[String]) -> Option<u8> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    fn tail(p: &str) -> &str {
        &p[p.len().saturating_sub(8)..]
    }
    let one_off = |x: &str, y: &str| {
        x.len() == y.len() && {
            let (x, y) = (x.as_bytes(), y.as_bytes());
            let mut diffs = (0..x.len()).filter(|&i| x[i] != y[i]);
            match (diffs.next(), diffs.next(), diffs.next()) {
                (Some(_), None, _) => true,
                // Two neighbouring digits swapped.
                (Some(i), Some(j), None) => j == i + 1 && x[i] == y[j] && x[j] == y[i],
                _ => false,
            }
        }
    };
    let pairs = || a.iter().flat_map(|x| b.iter().map(move |y| (x, y)));
    Some(if pairs().any(|(x, y)| x == y) {
        0
    } else if pairs().any(|(x, y)| x.len() >= 8 && y.len() >= 8 && tail(x) == tail(y)) {
        1
    } else if pairs().any(|(x, y)| one_off(x, y)) {
        2
    } else {
        3
    })
}

fn address_level(a: &Record, b: &Record) -> Option<u8> {
    if a.address.is_empty() || b.address.is_empty() {
        return None;
    }
    // 10 Main Street in Boston is not 10 Main Street in Chicago.
    if !a.city.is_empty() && !b.city.is_empty() && a.city != b.city && jaro_winkler(&a.city, &b.city) < 0.9 {
        return Some(4);
    }
    // House numbers and words apart (split once by Record::prepare):
    // neighbours on one street share every word and differ in the number.
    let common = |x: &[String], y: &[String]| x.iter().filter(|t| y.contains(t)).count();
    let words_common = common(&a.address_words, &b.address_words);
    let words_union = a.address_words.len() + b.address_words.len() - words_common;
    let similar_words = words_union == 0 || words_common * 10 >= words_union * 6;
    let (a_numbers, b_numbers) = (&a.address_numbers, &b.address_numbers);
    Some(if a.address == b.address {
        0
    } else if a_numbers == b_numbers && similar_words {
        1
    } else if common(a_numbers, b_numbers) > 0 && words_common > 0 {
        2
    } else if similar_words && !a_numbers.is_empty() && !b_numbers.is_empty() {
        3
    } else {
        4
    })
}

fn postcode_level(a: &str, b: &str) -> Option<u8> {
    present(a, b)?;
    let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    Some(if a == b {
        0
    } else if a.len() >= 5 && b.len() == a.len() && common >= a.len() - 2 {
        1
    } else if common >= 3 {
        2
    } else {
        3
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Input;

    fn rec(given: &str, family: &str) -> Record {
        Record::prepare(&Input { given_name: given.into(), family_name: family.into(), ..Default::default() })
    }

    fn with(f: impl FnOnce(&mut Input)) -> Record {
        let mut input = Input::default();
        f(&mut input);
        Record::prepare(&input)
    }

    fn label(field: &Field, a: &Record, b: &Record) -> &'static str {
        field.level(a, b).map_or("null", |l| field.levels()[l as usize])
    }

    #[test]
    fn given_names_compare_by_level() {
        let cases = [
            ("Robert", "ROBERT", "exact"),
            ("Bob", "Robert", "nickname"),
            ("Sasha", "Alexander", "nickname"),
            ("Jonathon", "Jonathan", "close"),
            ("J", "John", "initial"),
            ("Katelyn", "Caitlin", "sounds alike"),
            ("Małgorzata", "Malgorzata", "exact"),
            ("Дмитрий", "Dmitrii", "exact"),
            ("Anna", "Zoltan", "different"),
            ("", "Zoltan", "null"),
        ];
        for (a, b, want) in cases {
            assert_eq!(label(&Field::GivenName, &rec(a, "x"), &rec(b, "x")), want, "{a} / {b}");
        }
    }

    #[test]
    fn family_names_compare_by_level() {
        let cases = [
            ("Kowalski", "KOWALSKI", "exact"),
            ("Kowalski", "Kowalsky", "close"),
            ("Lee", "Lee-Smith", "one within the other"),
            ("Smith", "Smyth", "sounds alike"),
            ("Schmidt", "Shmit", "sounds alike"),
            ("Müller", "Mueller", "sounds alike"),
            ("Okonkwo", "Lee", "different"),
        ];
        for (a, b, want) in cases {
            assert_eq!(label(&Field::FamilyName, &rec("x", a), &rec("x", b)), want, "{a} / {b}");
        }
    }

    #[test]
    fn postal_code_and_city_add_nothing_where_both_have_a_street_address() {
        let at = |line: &str, code: &str| {
            with(|i| {
                i.addresses = vec![line.into()];
                i.postal_code = code.into();
                i.locality = "Paris".into();
            })
        };
        let (a, b) = (at("260 Rue de la Paix", "75042"), at("260 rue de la Paix", "75042"));
        assert_eq!(label(&Field::Address, &a, &b), "same");
        assert_eq!((label(&Field::Postcode, &a, &b), label(&Field::City, &a, &b)), ("null", "null"));
        let elsewhere = at("12 Rue Victor Hugo", "75042");
        assert_eq!(label(&Field::Address, &a, &elsewhere), "different");
        assert_eq!((label(&Field::Postcode, &a, &elsewhere), label(&Field::City, &a, &elsewhere)), ("null", "null"));
        let town_only = with(|i| {
            i.postal_code = "75042".into();
            i.locality = "Paris".into();
        });
        assert_eq!(label(&Field::Postcode, &a, &town_only), "exact", "without a street, the code speaks");
        assert_eq!(label(&Field::City, &a, &town_only), "null", "the postal code said it");
        let lyon = with(|i| {
            i.addresses = vec!["260 Rue de la Paix".into()];
            i.locality = "Lyon".into();
        });
        assert_eq!(label(&Field::Address, &a, &lyon), "different", "another town's street of that name");
    }

    #[test]
    fn swapped_names_agree_on_both() {
        let (a, b) = (rec("Wei", "Zhang"), rec("Zhang", "Wei"));
        assert_eq!(label(&Field::GivenName, &a, &b), "exact");
        assert_eq!(label(&Field::FamilyName, &a, &b), "exact");
    }

    #[test]
    fn birth_dates_compare_by_level() {
        let date = |d: &str| with(|i| i.birth_date = d.into());
        for (a, b, want) in [
            ("1980-03-04", "1980-03-04", "exact"),
            ("1980-03-04", "1980-04-03", "day and month swapped"),
            ("1980-03-04", "1981-03-04", "one digit off"),
            ("1980-03-04", "1980-03-24", "one digit off"),
            ("1980-03-04", "1980-03-17", "same month"),
            ("1980-03-04", "1975-03-04", "same month"),
            ("1980-03-04", "1962-11-30", "different"),
            ("1980-03-04", "", "null"),
        ] {
            assert_eq!(label(&Field::BirthDate, &date(a), &date(b)), want, "{a} / {b}");
        }
    }

    #[test]
    fn contact_points_compare_by_level() {
        let email = |e: &[&str]| with(|i| i.emails = e.iter().map(|s| s.to_string()).collect());
        for (a, b, want) in [
            (&["ann@example.com"][..], &["x@y.org", "ann@example.com"][..], "same address"),
            (&["ann.lee@example.com"], &["ann.lee@other.org"], "same mailbox"),
            (&["ann.lee@example.com"], &["ann.le@example.com"], "one typo"),
            (&["ann.lee.12@example.com"], &["ann.lea.17@example.com"], "different"),
            (&["ann@example.com"], &["zed@other.org"], "different"),
            (&["ann@example.com"], &[], "null"),
        ] {
            assert_eq!(label(&Field::Email, &email(a), &email(b)), want, "{a:?} / {b:?}");
        }
        let phone = |p: &str| with(|i| i.phones = vec![p.into()]);
        for (a, b, want) in [
            ("+14155550100", "+14155550100", "same number"),
            ("+14155550100", "+444155550100", "same subscriber"),
            ("+14155550100", "+14155550109", "one digit off"),
            ("+14155550100", "+14155550010", "one digit off"),
            ("+14155550100", "+14155559999", "different"),
        ] {
            assert_eq!(label(&Field::Phone, &phone(a), &phone(b)), want, "{a} / {b}");
        }
    }

    #[test]
    fn places_compare_by_level() {
        let addr = |a: &str| with(|i| i.addresses = vec![a.into()]);
        for (a, b, want) in [
            ("12 High Street", "12 high st", "same"),
            ("12 High Street Flat", "12 High St", "mostly the same"),
            ("12 Old High Street", "12 High Road", "same number, some words"),
            ("12 High Street Flat 3", "12 High St", "same number, some words"),
            ("14 High Street", "12 High St", "same street, other number"),
            ("12 High Street", "7 Mill Lane", "different"),
        ] {
            assert_eq!(label(&Field::Address, &addr(a), &addr(b)), want, "{a} / {b}");
        }
        let post = |p: &str| with(|i| i.postal_code = p.into());
        for (a, b, want) in [
            ("SW1A 1AA", "sw1a1aa", "exact"),
            ("SW1A 1AA", "SW1A 1BB", "same sector"),
            ("SW1A 1AA", "SW1 2ZZ", "same district"),
            ("SW1A 1AA", "M1 1AE", "different"),
        ] {
            assert_eq!(label(&Field::Postcode, &post(a), &post(b)), want, "{a} / {b}");
        }
        // Neighbours: one code, other house numbers; the code says no more than its district.
        let at = |line: &str| {
            with(|i| {
                i.addresses = vec![line.into()];
                i.postal_code = "SW1A 1AA".into();
            })
        };
        assert_eq!(label(&Field::Postcode, &at("12 High St"), &at("14 High St")), "null", "the addresses speak");
        assert_eq!(label(&Field::Postcode, &at("12 High St"), &at("12 High Street")), "null", "the address said it");
        let city = |c: &str| with(|i| i.locality = c.into());
        assert_eq!(label(&Field::City, &city("Kraków"), &city("KRAKOW")), "exact");
        assert_eq!(label(&Field::City, &city("Warszawa"), &city("Warszawy")), "close");
        assert_eq!(label(&Field::City, &city("Warszawa"), &city("Gdansk")), "different");
    }

    #[test]
    fn attributes_compare_when_both_have_one() {
        let attr = |v: &str| with(|i| i.attributes = vec![("national_id".into(), v.into())]);
        let field = Field::Attribute("national_id".into());
        assert_eq!(label(&field, &attr("AB 123"), &attr("ab-123")), "exact");
        assert_eq!(label(&field, &attr("AB 123"), &attr("AB 124")), "different");
        assert_eq!(label(&field, &attr("AB 123"), &with(|_| ())), "null");
    }

    /// Every string of up to `len` letters of `alphabet`.
    fn words(alphabet: &[u8], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last.iter().flat_map(|w| alphabet.iter().map(move |c| format!("{w}{}", *c as char))).collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn the_fast_similarities_agree_with_strsim() {
        let mut samples = words(b"abc", 5);
        let names = ["martha", "marhta", "dwayne", "duane", "dixon", "dicksonx", "kowalska", "kowalski", "jon", "john"];
        samples.extend(names.iter().map(|n| (*n).to_owned()));
        samples.extend(["zoë".to_owned(), "zoe".to_owned(), "a".repeat(70), format!("{}b", "a".repeat(69))]);
        for x in &samples {
            for y in &samples {
                assert_eq!(jaro_winkler(x, y).to_bits(), strsim::jaro_winkler(x, y).to_bits(), "{x:?} {y:?}");
                assert_eq!(within_one_edit(x, y), strsim::osa_distance(x, y) <= 1, "{x:?} {y:?}");
            }
        }
    }
}
