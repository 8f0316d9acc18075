//! Record linkage for c360, in the Fellegi–Sunter family (as Splink): records
//! are compared field by field into agreement levels ([`compare`]), each level
//! weighs the evidence for a match by how much likelier it is among matches
//! than among non-matches ([`model`]), those likelihoods are estimated from
//! the data itself without labels ([`train`]), only pairs that share a
//! blocking key are compared ([`blocking`]), and pairs above a threshold form
//! clusters that weak links cannot chain ([`cluster`]).
//!
//! Everything here is a pure function over [`Record`]s: no storage, no
//! transport. The service prepares records from profiles and decides what to
//! do with the pairs.

pub mod blocking;
pub mod cluster;
pub mod compare;
pub mod junk;
pub mod model;
pub mod names;
pub mod train;

use serde::{Deserialize, Serialize};

/// `f` over `items` split into one contiguous chunk per core, the results in
/// chunk order: comparing pairs is independent work, and a bulk run spends
/// most of its time there.
pub fn per_core<T: Sync, R: Send>(items: &[T], f: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    // Below this many items a thread costs more than it saves.
    const SMALL: usize = 4_096;
    if cores == 1 || items.len() <= SMALL {
        return vec![f(items)];
    }
    let chunk = items.len().div_ceil(cores);
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items.chunks(chunk).map(|part| scope.spawn(move || f(part))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// A profile as handed to the matcher: its values as stored, unprepared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// Given name(s).
    pub given_name: String,
    /// Family name(s); "FAMILY, GIVEN" with no given name is split.
    pub family_name: String,
    /// `YYYY-MM-DD`, or empty.
    pub birth_date: String,
    /// Email addresses, normalized as the service keys them.
    pub emails: Vec<String>,
    /// Phone numbers in E.164.
    pub phones: Vec<String>,
    /// Street lines of the addresses, one string per address.
    pub addresses: Vec<String>,
    /// Postal code of the first address.
    pub postal_code: String,
    /// City of the first address.
    pub locality: String,
    /// Attributes the tenant maps for matching, by key.
    pub attributes: Vec<(String, String)>,
}

/// A record prepared once for many comparisons.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Given name, folded (see [`names::fold`]).
    pub given: String,
    /// The formal name the given name stands for.
    pub given_formal: String,
    /// Phonetic codes of the given name.
    pub given_sounds: (String, String),
    /// Family name, folded.
    pub family: String,
    /// Phonetic codes of the family name.
    pub family_sounds: (String, String),
    /// Birth date as (year, month, day).
    pub birth: Option<(u16, u8, u8)>,
    /// Email addresses, lower-case.
    pub emails: Vec<String>,
    /// Phone numbers, digits only.
    pub phones: Vec<String>,
    /// Address tokens, folded, abbreviations unified, sorted, unique.
    pub address: Vec<String>,
    /// The tokens of `address` with a digit (house and flat numbers).
    pub address_numbers: Vec<String>,
    /// The other tokens of `address` (street words).
    pub address_words: Vec<String>,
    /// Postal code, upper-case letters and digits only.
    pub postcode: String,
    /// City, folded.
    pub city: String,
    /// Mapped attributes, values folded without spaces or punctuation, sorted by key.
    pub attributes: Vec<(String, String)>,
}

impl Record {
    /// Prepares `input` for comparison.
    pub fn prepare(input: &Input) -> Self {
        let (mut given, mut family) = (names::fold(&input.given_name), names::fold(&input.family_name));
        if given.is_empty()
            && let Some((last, first)) = input.family_name.split_once(',')
        {
            (given, family) = (names::fold(first), names::fold(last));
        }
        let mut address: Vec<String> = input
            .addresses
            .iter()
            .flat_map(|line| names::fold(line).split(' ').map(|t| abbreviation(t).to_owned()).collect::<Vec<_>>())
            .filter(|t| !t.is_empty())
            .collect();
        address.sort_unstable();
        address.dedup();
        let (address_numbers, address_words) =
            address.iter().cloned().partition(|t: &String| t.bytes().any(|c| c.is_ascii_digit()));
        let mut attributes: Vec<(String, String)> =
            // An id written `AB-123`, `ab 123` or `AB123` is one id.
            input.attributes.iter().map(|(k, v)| (k.clone(), names::fold(v).replace(' ', ""))).filter(|(_, v)| !v.is_empty()).collect();
        attributes.sort();
        Self {
            given_formal: names::formal(&given).to_owned(),
            given_sounds: names::sounds(&given),
            family_sounds: names::sounds(&family),
            given,
            family,
            birth: parse_date(&input.birth_date),
            emails: input.emails.iter().map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty()).collect(),
            phones: input
                .phones
                .iter()
                .map(|p| p.chars().filter(char::is_ascii_digit).collect::<String>())
                .filter(|p| !p.is_empty())
                .collect(),
            address,
            address_numbers,
            address_words,
            postcode: input.postal_code.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_uppercase(),
            city: names::fold(&input.locality),
            attributes,
        }
    }
}

fn parse_date(raw: &str) -> Option<(u16, u8, u8)> {
    let mut parts = raw.trim().splitn(3, '-');
    let year = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some((year, month, day))
}

/// The one spelling of a street word written several ways.
fn abbreviation(token: &str) -> &str {
    match token {
        "street" | "str" => "st",
        "road" => "rd",
        "avenue" | "av" => "ave",
        "drive" => "dr",
        "lane" => "ln",
        "court" => "ct",
        "place" => "pl",
        "boulevard" => "blvd",
        "apartment" | "apt" | "unit" | "flat" => "apt",
        "north" => "n",
        "south" => "s",
        "east" => "e",
        "west" => "w",
        "strasse" | "straße" => "str",
        "ulica" | "ul" => "ul",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crm_name_in_capitals_is_split_and_folded() {
        let record = Record::prepare(&Input { family_name: "KOWALSKA, MAŁGORZATA".into(), ..Default::default() });
        assert_eq!((record.given.as_str(), record.family.as_str()), ("malgorzata", "kowalska"));
    }

    #[test]
    fn values_are_prepared_once() {
        let record = Record::prepare(&Input {
            given_name: "Bob".into(),
            family_name: "Smith".into(),
            birth_date: "1980-02-30".into(),
            emails: vec!["Bob@Example.com ".into()],
            phones: vec!["+44 20 7946 0000".into()],
            addresses: vec!["12 High Street, Flat 3".into()],
            postal_code: "sw1a 1aa".into(),
            locality: "London".into(),
            attributes: vec![
                ("tier".into(), "Gold".into()),
                ("club".into(), "".into()),
                ("id".into(), "AB-12 3".into()),
            ],
        });
        assert_eq!(record.given_formal, "robert");
        assert_eq!(record.birth, Some((1980, 2, 30)), "checked by the service, kept as written here");
        assert_eq!(record.emails, ["bob@example.com"]);
        assert_eq!(record.phones, ["442079460000"]);
        assert_eq!(record.address, ["12", "3", "apt", "high", "st"]);
        assert_eq!(record.postcode, "SW1A1AA");
        assert_eq!(record.attributes, [("id".to_owned(), "ab123".to_owned()), ("tier".to_owned(), "gold".to_owned())]);
        assert_eq!(parse_date("1980-13-01"), None);
        assert_eq!(parse_date(""), None);
    }
}
