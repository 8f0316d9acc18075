//! Blocking: only records that share a key under some rule are compared, so
//! the work grows with the number of records, not with its square. A key
//! shared by more records than a cap (a switchboard number, a common name
//! in a big city) makes no pairs: it is no evidence and would be most of
//! the work.

use serde::{Deserialize, Serialize};

use crate::{
    Record,
    compare::{Field, term},
};

/// A blocking rule: records with equal keys are candidate pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Any email address in common.
    Email,
    /// Any phone number in common (its last eight digits).
    Phone,
    /// The same family name.
    FamilyName,
    /// The same given (formal) and family names: a training rule, whose
    /// pairs show how the other fields of one person differ.
    FullName,
    /// Family names that sound alike and given names with the same initial
    /// (either way round).
    FamilySoundGivenInitial,
    /// Family names and given names that both sound alike (either way
    /// round): a typo in either name keeps its sound, mostly. (Family sound
    /// and given initial made more than half of a million-profile run's
    /// pairs: 33 M.)
    FamilySoundGivenSound,
    /// The same birth date: a training rule (a million people share about
    /// 25,000 dates, 40 to a date).
    BirthDate,
    /// The same birth date and an initial in common (of either name, so
    /// swapped names and a typo in one name still meet).
    BirthDateInitial,
    /// The same postal code and family-name initial.
    PostcodeFamilyInitial,
    /// The same city, given name (its formal form) and family initial,
    /// either way round, for records with little but a name and a city.
    /// (City and given name alone paired every Maria of Madrid with every
    /// other: a third of a million-profile run's pairs.)
    CityGivenName,
    /// Any mapped attribute value in common (under the same key): a
    /// national id or loyalty number a tenant matches on is a strong
    /// identifier, whatever the names say. Records without mapped
    /// attributes are in no block.
    Attribute,
}

impl Rule {
    /// The rules whose pairs train the model (as Splink's documented setup:
    /// strict rules, so that each session's pairs hold many matches).
    pub fn training() -> Vec<Rule> {
        vec![Rule::FullName, Rule::BirthDate, Rule::Email]
    }

    /// The rules used when a tenant configures none.
    pub fn defaults() -> Vec<Rule> {
        vec![
            Rule::Email,
            Rule::Phone,
            Rule::FamilySoundGivenSound,
            Rule::BirthDateInitial,
            Rule::PostcodeFamilyInitial,
            Rule::CityGivenName,
            Rule::Attribute,
        ]
    }

    /// The fields its pairs agree on by construction (left out when
    /// training on them).
    pub fn fields(&self) -> Vec<Field> {
        match self {
            Rule::Email => vec![Field::Email],
            Rule::Phone => vec![Field::Phone],
            Rule::FamilyName => vec![Field::FamilyName],
            Rule::FullName => vec![Field::FamilyName, Field::GivenName],
            Rule::FamilySoundGivenInitial | Rule::FamilySoundGivenSound => vec![Field::FamilyName, Field::GivenName],
            Rule::BirthDate | Rule::BirthDateInitial => vec![Field::BirthDate],
            Rule::PostcodeFamilyInitial => vec![Field::Postcode, Field::FamilyName],
            Rule::CityGivenName => vec![Field::City, Field::GivenName],
            // Which attribute a pair shares differs from pair to pair.
            Rule::Attribute => vec![],
        }
    }

    /// The keys of one record under this rule (none: it is in no block).
    pub fn keys(&self, r: &Record, out: &mut Vec<u64>) {
        out.clear();
        let initial = |s: &str| s.chars().next();
        match self {
            Rule::Email => out.extend(r.emails.iter().map(|e| term(&(0u8, e)))),
            Rule::Phone => out.extend(r.phones.iter().map(|p| term(&(1u8, &p[p.len().saturating_sub(8)..])))),
            Rule::FamilyName if !r.family.is_empty() => out.push(term(&(2u8, &r.family))),
            Rule::FullName if !r.family.is_empty() && !r.given_formal.is_empty() => {
                out.push(term(&(7u8, &r.given_formal, &r.family)));
            }
            Rule::FamilySoundGivenInitial => {
                // Both orders, so a record with the names swapped meets its twin.
                for (family, given) in [(&r.family_sounds.0, &r.given), (&r.given_sounds.0, &r.family)] {
                    if let (false, Some(i)) = (family.is_empty(), initial(given)) {
                        out.push(term(&(3u8, family, i)));
                    }
                }
            }
            Rule::FamilySoundGivenSound => {
                for (family, given) in
                    [(&r.family_sounds.0, &r.given_sounds.0), (&r.given_sounds.0, &r.family_sounds.0)]
                {
                    if !family.is_empty() && !given.is_empty() {
                        out.push(term(&(9u8, family, given)));
                    }
                }
                out.dedup();
            }
            Rule::BirthDate => out.extend(r.birth.map(|d| term(&(4u8, d)))),
            Rule::BirthDateInitial => {
                if let Some(d) = r.birth {
                    out.extend(
                        [&r.given, &r.family].into_iter().filter_map(|n| initial(n)).map(|i| term(&(8u8, d, i))),
                    );
                    out.dedup();
                }
            }
            Rule::PostcodeFamilyInitial => {
                if let (false, Some(i)) = (r.postcode.is_empty(), initial(&r.family)) {
                    out.push(term(&(5u8, &r.postcode, i)));
                }
            }
            Rule::CityGivenName if !r.city.is_empty() => {
                // Both orders, so a record with the names swapped meets its twin.
                for (given, family) in [(&r.given_formal, &r.family), (&r.family, &r.given)] {
                    if let (false, Some(i)) = (given.is_empty(), initial(family)) {
                        out.push(term(&(6u8, &r.city, given, i)));
                    }
                }
                out.dedup();
            }
            Rule::Attribute => out.extend(r.attributes.iter().map(|(key, value)| term(&(10u8, key, value)))),
            _ => {}
        }
    }

    /// The candidate pairs of `records` under this rule, each `(i, j)` with
    /// `i < j`, sorted, without repeats; blocks of more than `max_block`
    /// records make none.
    pub fn pairs(&self, records: &[Record], max_block: usize) -> Vec<(u32, u32)> {
        let mut keyed: Vec<(u64, u32)> = Vec::with_capacity(records.len());
        let mut keys = Vec::new();
        for (i, record) in records.iter().enumerate() {
            self.keys(record, &mut keys);
            keyed.extend(keys.iter().map(|&k| (k, i as u32)));
        }
        keyed.sort_unstable();
        keyed.dedup();
        let mut pairs = Vec::new();
        for block in keyed.chunk_by(|a, b| a.0 == b.0) {
            if block.len() < 2 || block.len() > max_block {
                continue;
            }
            for (x, &(_, i)) in block.iter().enumerate() {
                pairs.extend(block[x + 1..].iter().map(|&(_, j)| (i, j)));
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        pairs
    }
}

/// Candidate pairs (`(i, j)`, `i < j`), and how many pairs each rule found.
pub type Candidates = (Vec<(u32, u32)>, Vec<(Rule, usize)>);

/// The pairs each of `rules` finds in `records` (see [`Rule::pairs`]), the
/// rules run side by side, one thread each: a rule is a pass over every
/// record and a sort of what it found, independent of the others.
pub fn pairs_per_rule(rules: &[Rule], records: &[Record], max_block: usize) -> Vec<Vec<(u32, u32)>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = rules.iter().map(|rule| scope.spawn(move || rule.pairs(records, max_block))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// Every candidate pair of `records` under any of `rules`, sorted, without
/// repeats, and how many pairs each rule found (before the union).
pub fn candidates(rules: &[Rule], records: &[Record], max_block: usize) -> Candidates {
    let per_rule = pairs_per_rule(rules, records, max_block);
    let found = rules.iter().zip(&per_rule).map(|(rule, pairs)| (*rule, pairs.len())).collect();
    (union(per_rule), found)
}

/// The sorted union of sorted, repeat-free lists, without repeats: merged
/// rather than sorted again (tens of millions of pairs at a million records).
fn union(lists: Vec<Vec<(u32, u32)>>) -> Vec<(u32, u32)> {
    let mut out = Vec::with_capacity(lists.iter().map(Vec::len).sum());
    let mut at = vec![0usize; lists.len()];
    loop {
        let next = lists.iter().zip(&at).filter_map(|(list, &i)| list.get(i)).min().copied();
        let Some(next) = next else { break };
        out.push(next);
        for (list, i) in lists.iter().zip(at.iter_mut()) {
            if list.get(*i) == Some(&next) {
                *i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Input, train::tests::population};

    #[test]
    fn blocking_never_compares_all_pairs_and_keeps_the_true_ones() {
        let records = population(5_000);
        // Small name pools make big blocks: the cap keeps them out.
        let (pairs, _) = candidates(&Rule::defaults(), &records, 100);
        let all = records.len() * (records.len() - 1) / 2;
        assert!(pairs.len() * 50 < all, "{} candidate pairs of {all}", pairs.len());
        assert!(pairs.windows(2).all(|w| w[0] < w[1]) && pairs.iter().all(|(i, j)| i < j));
        let found = pairs.iter().filter(|(a, b)| a / 2 == b / 2).count();
        assert!(found * 100 >= 5_000 * 98, "{found} of 5000 true pairs are candidates");
    }

    #[test]
    fn an_oversized_block_makes_no_pairs() {
        let switchboard = Input { phones: vec!["+442079460000".into()], given_name: "A".into(), ..Default::default() };
        let records: Vec<Record> = (0..50).map(|_| Record::prepare(&switchboard)).collect();
        assert_eq!(Rule::Phone.pairs(&records, 49), []);
        assert_eq!(Rule::Phone.pairs(&records, 50).len(), 50 * 49 / 2);
    }

    #[test]
    fn a_birth_date_blocks_with_an_initial_of_either_name() {
        let person = |given: &str, family: &str, birth: &str| {
            Record::prepare(&Input {
                given_name: given.into(),
                family_name: family.into(),
                birth_date: birth.into(),
                ..Default::default()
            })
        };
        let records = [
            person("Anna", "Kowalska", "1980-03-04"),
            // Swapped, and a typo in the given name's first letter: both meet the first.
            person("Kowalska", "Anna", "1980-03-04"),
            person("Onna", "Kowalska", "1980-03-04"),
            // Born the same day, nothing else in common: not compared.
            person("Maria", "Nowak", "1980-03-04"),
        ];
        let pairs = Rule::BirthDateInitial.pairs(&records, 10);
        assert_eq!(pairs, [(0, 1), (0, 2), (1, 2)]);
        assert_eq!(Rule::BirthDate.pairs(&records, 10).len(), 6, "the training rule keeps every pair of the date");
    }

    #[test]
    fn a_city_blocks_with_a_given_name_and_a_family_initial_either_way_round() {
        let person = |given: &str, family: &str| {
            Record::prepare(&Input {
                given_name: given.into(),
                family_name: family.into(),
                locality: "Madrid".into(),
                ..Default::default()
            })
        };
        let records = [
            person("Maria", "Garcia"),
            person("MARÍA", "Garcya"),
            person("Garcia", "Maria"),
            // Another Maria of Madrid: not compared.
            person("Maria", "Lopez"),
        ];
        assert_eq!(Rule::CityGivenName.pairs(&records, 10), [(0, 1), (0, 2), (1, 2)]);
    }

    #[test]
    fn swapped_names_share_a_block() {
        let a = Record::prepare(&Input { given_name: "Wei".into(), family_name: "Zhang".into(), ..Default::default() });
        let b = Record::prepare(&Input { given_name: "Zhang".into(), family_name: "Wei".into(), ..Default::default() });
        assert_eq!(Rule::FamilySoundGivenInitial.pairs(&[a.clone(), b.clone()], 10), [(0, 1)]);
        assert_eq!(Rule::FamilySoundGivenSound.pairs(&[a, b], 10), [(0, 1)]);
    }

    #[test]
    fn a_mapped_attribute_in_common_blocks_whatever_the_names() {
        let person = |given: &str, attributes: &[(&str, &str)]| {
            Record::prepare(&Input {
                given_name: given.into(),
                attributes: attributes.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
                ..Default::default()
            })
        };
        let records = [
            person("Anna", &[("national_id", "1234567")]),
            person("Hannah", &[("national_id", "1234567"), ("loyalty", "X1")]),
            // The same value under another key is another thing.
            person("Anna", &[("loyalty", "1234567")]),
            person("Ana", &[("loyalty", "X1")]),
            person("Anna", &[]),
        ];
        assert_eq!(Rule::Attribute.pairs(&records, 10), [(0, 1), (1, 3)]);
    }
}
