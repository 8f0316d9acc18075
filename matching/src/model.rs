//! The Fellegi–Sunter model: for each field and level, `m` (how often a
//! matching pair agrees at that level) and `u` (how often a non-matching
//! pair does). A pair's evidence is the sum of log2(m/u) over its fields plus
//! the prior odds of a match; a missing value adds nothing. Exact agreement
//! on a common value weighs less than on a rare one (term frequencies).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{
    Record,
    compare::{Field, swapped, term},
};

/// The level code of a field either record has no value for.
pub const NULL: u8 = u8::MAX;

/// Smallest probability a level's `m` or `u` takes, so no single field is
/// infinite evidence either way (in training as in scoring).
pub(crate) const FLOOR: f64 = 1e-6;
/// The smallest prior and value share: a million records make pairs whose
/// prior is far below [`FLOOR`] (2.6e-7 with 10% duplicates), and flooring
/// it there overstated every pair's odds fourfold.
const SHARE_FLOOR: f64 = 1e-15;

/// A tenant's matching model: what is compared, how much each agreement
/// weighs, and where decisions fall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Raised each time the weights change; a decision names the version
    /// that made it.
    pub version: u32,
    /// Probability that two records drawn at random are one person (λ).
    pub prior: f64,
    /// The comparisons, one per field.
    pub comparisons: Vec<Comparison>,
    /// Where a pair's match probability becomes a decision.
    pub thresholds: Thresholds,
    /// Set in configuration rather than estimated: runs score with it as it
    /// is and estimate nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}

/// One field's levels and their parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The field.
    pub field: Field,
    /// Its levels, strongest agreement first.
    pub levels: Vec<Level>,
}

/// One level of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// What agreement it stands for ("exact", "nickname", …).
    pub label: String,
    /// Probability of this level among matching pairs.
    pub m: f64,
    /// Probability of this level among non-matching pairs.
    pub u: f64,
}

/// Match probabilities at which pairs are decided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// At or above: the same customer, merged without review.
    pub auto: f64,
    /// At or above (and below `auto`): a candidate for a steward to review.
    pub review: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { auto: 0.999, review: 0.9 }
    }
}

/// What a score leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// At or above the auto threshold.
    Match,
    /// Between the review and auto thresholds.
    Review,
    /// Below the review threshold.
    NonMatch,
}

/// How often each value of the term-frequency fields occurs, counted over
/// the records being matched.
#[derive(Debug, Clone, Default)]
pub struct Frequencies {
    // Per comparison, by the value's hash: no allocation per scored pair, and
    // a million addresses and emails cost eight bytes each.
    counts: Vec<HashMap<u64, u32>>,
    totals: Vec<u32>,
    // Full names (given and family, in either order): names go together
    // (a Polish given name with a Polish family name), so their shares
    // multiplied overstate how rare a full name is.
    full_names: HashMap<u64, u32>,
    full_total: u32,
}

impl Frequencies {
    /// Counts the values of `model`'s term-frequency fields in `records`.
    pub fn count<'r>(model: &Model, records: impl IntoIterator<Item = &'r Record>) -> Self {
        let k = model.comparisons.len();
        let mut out =
            Self { counts: vec![HashMap::new(); k], totals: vec![0; k], full_names: HashMap::new(), full_total: 0 };
        let fields: Vec<(usize, &Field)> = model
            .comparisons
            .iter()
            .enumerate()
            .filter(|(_, c)| c.field.term_frequency())
            .map(|(i, c)| (i, &c.field))
            .collect();
        for record in records {
            if let Some(name) = full_name(record) {
                *out.full_names.entry(name).or_insert(0) += 1;
                out.full_total += 1;
            }
            for &(i, field) in &fields {
                // A record counts once per field, however many values it has.
                let mut any = false;
                for term in field.terms(record) {
                    *out.counts[i].entry(term).or_insert(0) += 1;
                    any = true;
                }
                out.totals[i] += u32::from(any);
            }
        }
        out
    }

    /// How many records have the value hashed as `term` for comparison `i`.
    pub fn holders(&self, i: usize, term: u64) -> u32 {
        self.counts.get(i).and_then(|c| c.get(&term)).copied().unwrap_or(0)
    }

    /// Share of the records with a value for comparison `i` that have the
    /// value hashed as `term`; `None` when nothing was counted for it.
    pub fn share(&self, i: usize, term: u64) -> Option<f64> {
        let total = *self.totals.get(i)?;
        if total == 0 {
            return None;
        }
        let count = self.counts.get(i)?.get(&term).copied().unwrap_or(0).max(1);
        Some(f64::from(count) / f64::from(total))
    }

    /// The counts as bytes, to be stored between runs and read back by
    /// [`Frequencies::decode`] for pairs scored one at a time. Values held
    /// once are left out: one holder weighs as none (see `share` and the
    /// identifiers' adjustment), and most values of a tenant are held once.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(ENCODING);
        out.extend_from_slice(&term(ENCODING).to_le_bytes());
        let u32_le = |out: &mut Vec<u8>, n: u32| out.extend_from_slice(&n.to_le_bytes());
        let counts = |out: &mut Vec<u8>, counts: &HashMap<u64, u32>| {
            let mut kept: Vec<(u64, u32)> = counts.iter().filter(|(_, n)| **n > 1).map(|(t, n)| (*t, *n)).collect();
            kept.sort_unstable();
            u32_le(out, kept.len() as u32);
            for (term, n) in kept {
                out.extend_from_slice(&term.to_le_bytes());
                u32_le(out, n);
            }
        };
        u32_le(&mut out, self.counts.len() as u32);
        for (i, c) in self.counts.iter().enumerate() {
            u32_le(&mut out, self.totals[i]);
            counts(&mut out, c);
        }
        u32_le(&mut out, self.full_total);
        counts(&mut out, &self.full_names);
        out
    }

    /// Counts stored by [`Frequencies::encode`]; an error when the bytes are
    /// not such counts, or were hashed by another build's hasher (the
    /// standard library's may change between Rust releases: the values
    /// would match nothing, so they are refused rather than misread).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(ENCODING.len())? != ENCODING {
            return Err("not c360's term frequencies".into());
        }
        if reader.u64()? != term(ENCODING) {
            return Err("term frequencies hashed by another build; the next deduplication run counts them again".into());
        }
        let k = reader.u32()? as usize;
        let mut out = Self::default();
        for _ in 0..k {
            out.totals.push(reader.u32()?);
            out.counts.push(reader.counts()?);
        }
        out.full_total = reader.u32()?;
        out.full_names = reader.counts()?;
        if reader.at != bytes.len() {
            return Err("stored term frequencies run on past their end".into());
        }
        Ok(out)
    }

    /// Share of the records with both names that have `record`'s full name.
    fn full_name_share(&self, record: &Record) -> Option<f64> {
        if self.full_total == 0 {
            return None;
        }
        let count = self.full_names.get(&full_name(record)?).copied().unwrap_or(0).max(1);
        Some(f64::from(count) / f64::from(self.full_total))
    }
}

/// Names the byte form of [`Frequencies`]; its hash is stored beside it.
const ENCODING: &[u8] = b"c360-tf1";

/// Reads [`Frequencies::encode`]'s bytes.
struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let part = self.bytes.get(self.at..self.at + n).ok_or("stored term frequencies are cut short")?;
        self.at += n;
        Ok(part)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("eight bytes")))
    }

    fn counts(&mut self) -> Result<HashMap<u64, u32>, String> {
        let n = self.u32()? as usize;
        // Twelve bytes each: a count past the end is refused before any allocation.
        if n.saturating_mul(12) > self.bytes.len() - self.at {
            return Err("stored term frequencies are cut short".into());
        }
        let mut counts = HashMap::with_capacity(n);
        for _ in 0..n {
            let term = self.u64()?;
            counts.insert(term, self.u32()?);
        }
        Ok(counts)
    }
}

/// The key of a record's full name, the same whichever way round it is written.
fn full_name(record: &Record) -> Option<u64> {
    if record.given.is_empty() || record.family.is_empty() {
        return None;
    }
    let (x, y) =
        if record.given <= record.family { (&record.given, &record.family) } else { (&record.family, &record.given) };
    Some(term(&(x, y)))
}

/// Why a pair scored what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Each field compared.
    pub fields: Vec<FieldEvidence>,
    /// log2 of the prior odds of a match.
    pub prior_weight: f64,
    /// The prior plus every field's weight.
    pub total_weight: f64,
    /// The match probability the total stands for.
    pub probability: f64,
    /// The thresholds it was judged against.
    pub thresholds: Thresholds,
    /// What that leads to.
    pub decision: Decision,
    /// The model version.
    pub model_version: u32,
}

/// One field's part in an explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldEvidence {
    /// The field.
    pub field: String,
    /// The first record's value, as compared.
    pub left: String,
    /// The second record's value, as compared.
    pub right: String,
    /// The level the values agree at; `None`: a value is missing.
    pub level: Option<String>,
    /// log2(m/u) of the level, with the term-frequency adjustment.
    pub weight: f64,
    /// The part of `weight` that the value's frequency contributed.
    pub term_frequency_adjustment: f64,
}

impl Model {
    /// A model over `fields` with starting parameters (before training):
    /// agreement likelier among matches, disagreement among non-matches.
    pub fn new(fields: Vec<Field>) -> Self {
        let comparisons = fields
            .into_iter()
            .map(|field| {
                let labels = field.levels();
                let n = labels.len();
                let m: Vec<f64> =
                    (0..n).map(|i| if i + 1 == n { 0.05 } else { 0.95 * 0.5f64.powi(i as i32 + 1) }).collect();
                let u: Vec<f64> = (0..n)
                    .map(|i| if i + 1 == n { 0.9 } else { 0.1 / (n - 1) as f64 * 0.5f64.powi((n - 2 - i) as i32) })
                    .collect();
                let (m_sum, u_sum): (f64, f64) = (m.iter().sum(), u.iter().sum());
                let levels = labels
                    .iter()
                    .enumerate()
                    .map(|(i, label)| Level { label: (*label).to_owned(), m: m[i] / m_sum, u: u[i] / u_sum })
                    .collect();
                Comparison { field, levels }
            })
            .collect();
        Self { version: 1, prior: 1e-4, comparisons, thresholds: Thresholds::default(), pinned: false }
    }

    /// Checks a model written by hand: a prior and every `m` and `u`
    /// probabilities above 0 and at most 1, each field compared once with
    /// the levels it has, in order. Says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let probability = |p: f64| p > 0.0 && p <= 1.0;
        if !(probability(self.prior) && self.prior < 1.0) {
            return Err(format!("prior {} is not a probability above 0 and below 1", self.prior));
        }
        if self.comparisons.is_empty() {
            return Err("no field is compared".into());
        }
        for (i, comparison) in self.comparisons.iter().enumerate() {
            let name = comparison.field.name();
            if self.comparisons[..i].iter().any(|c| c.field == comparison.field) {
                return Err(format!("{name} is compared twice"));
            }
            let labels: Vec<&str> = comparison.levels.iter().map(|l| l.label.as_str()).collect();
            if labels != comparison.field.levels() {
                return Err(format!("{name} has the levels {:?}, in that order", comparison.field.levels()));
            }
            for level in &comparison.levels {
                if !(probability(level.m) && probability(level.u)) {
                    return Err(format!("{name}, level {}: m and u must be above 0 and at most 1", level.label));
                }
            }
        }
        Ok(())
    }

    /// The level of every comparison for `a` and `b` ([`NULL`] where a value
    /// is missing), written into `out`.
    pub fn gamma(&self, a: &Record, b: &Record, out: &mut Vec<u8>) {
        out.clear();
        out.extend(self.comparisons.iter().map(|c| c.field.level(a, b).unwrap_or(NULL)));
    }

    /// log2 of the prior odds of a match.
    pub fn prior_weight(&self) -> f64 {
        let prior = self.prior.clamp(SHARE_FLOOR, 1.0 - FLOOR);
        (prior / (1.0 - prior)).log2()
    }

    /// Weight of level `level` of comparison `i`, without term frequencies.
    pub fn level_weight(&self, i: usize, level: u8) -> f64 {
        if level == NULL {
            return 0.0;
        }
        let l = &self.comparisons[i].levels[level as usize];
        (l.m.max(FLOOR) / l.u.max(FLOOR)).log2()
    }

    /// The total weight (log2 odds of a match) of a pair with levels `gamma`,
    /// the exact agreements adjusted by how common the shared value is.
    pub fn weight(&self, gamma: &[u8], a: &Record, b: &Record, frequencies: Option<&Frequencies>) -> f64 {
        let mut total = self.prior_weight();
        for (i, &level) in gamma.iter().enumerate() {
            total += self.level_weight(i, level) + self.adjustment(i, gamma, a, b, frequencies);
        }
        total
    }

    /// The term-frequency adjustment of comparison `i` at its level in
    /// `gamma` for `a` and `b`: log2(u / share of the value they share), so
    /// a value rarer than the average agreement weighs more, a commoner one
    /// less. Identifiers (email, phone, address, mapped attributes) are not
    /// drawn from a population's values as names and dates are: one held by
    /// two records says as much in a small tenant as in a large one, so
    /// their agreement only loses weight with every further holder. Two
    /// refinements for names: a name written in the other field
    /// in one record counts as the commoner of a given and a family name
    /// (a family name is rare as a given name, which made any namesake with
    /// swapped names certain), and where both names agree the family name's
    /// part is cut so the two together weigh no more than the full name's
    /// own share says.
    fn adjustment(&self, i: usize, gamma: &[u8], a: &Record, b: &Record, frequencies: Option<&Frequencies>) -> f64 {
        let comparison = &self.comparisons[i];
        let Some(f) = frequencies else { return 0.0 };
        if gamma[i] != 0 || !comparison.field.term_frequency() {
            return 0.0;
        }
        let mut terms = comparison.field.shared_terms(a, b);
        if comparison.field.identifier() {
            // Held by k records, the value is one person's among k - 1
            // claimants: a pair loses nothing, a household a bit, a
            // placeholder thousands share nearly everything. Of several
            // shared, the rarest speaks.
            let Some(holders) = terms.map(|t| f.holders(i, t).max(2)).min() else { return 0.0 };
            return -f64::from(holders - 1).log2();
        }
        let Some(term) = terms.next() else { return 0.0 };
        let Some(mut share) = f.share(i, term) else { return 0.0 };
        let other = match comparison.field {
            Field::GivenName => self.position(&Field::FamilyName),
            Field::FamilyName => self.position(&Field::GivenName),
            _ => None,
        };
        if let Some(j) = other
            && swapped(a, b)
        {
            share = share.max(f.share(j, term).unwrap_or(0.0));
        }
        let own = (comparison.levels[0].u.max(FLOOR) / share.max(SHARE_FLOOR)).log2();
        match (&comparison.field, other) {
            (Field::FamilyName, Some(j)) if gamma[j] == 0 => {
                let Some(full) = f.full_name_share(a) else { return own };
                let given = self.adjustment(j, gamma, a, b, frequencies);
                let (u_given, u_family) = (self.comparisons[j].levels[0].u, comparison.levels[0].u);
                let joint = (u_given.max(FLOOR) * u_family.max(FLOOR) / full.max(SHARE_FLOOR)).log2();
                own.min(joint - given)
            }
            _ => own,
        }
    }

    /// Index of the comparison of `field`.
    fn position(&self, field: &Field) -> Option<usize> {
        self.comparisons.iter().position(|c| &c.field == field)
    }

    /// The match probability of `a` and `b`.
    pub fn probability(&self, a: &Record, b: &Record, frequencies: Option<&Frequencies>) -> f64 {
        let mut gamma = Vec::with_capacity(self.comparisons.len());
        self.gamma(a, b, &mut gamma);
        probability(self.weight(&gamma, a, b, frequencies))
    }

    /// What `probability` leads to under the thresholds.
    pub fn decide(&self, probability: f64) -> Decision {
        if probability >= self.thresholds.auto {
            Decision::Match
        } else if probability >= self.thresholds.review {
            Decision::Review
        } else {
            Decision::NonMatch
        }
    }

    /// The score of `a` and `b` with every field's evidence.
    pub fn explain(&self, a: &Record, b: &Record, frequencies: Option<&Frequencies>) -> Explanation {
        let mut gamma = Vec::with_capacity(self.comparisons.len());
        self.gamma(a, b, &mut gamma);
        let fields: Vec<FieldEvidence> = self
            .comparisons
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let level = gamma[i];
                let adjustment = self.adjustment(i, &gamma, a, b, frequencies);
                FieldEvidence {
                    field: c.field.name(),
                    left: c.field.shown(a),
                    right: c.field.shown(b),
                    level: (level != NULL).then(|| c.levels[level as usize].label.clone()),
                    weight: self.level_weight(i, level) + adjustment,
                    term_frequency_adjustment: adjustment,
                }
            })
            .collect();
        let prior_weight = self.prior_weight();
        let total_weight = prior_weight + fields.iter().map(|f| f.weight).sum::<f64>();
        let probability = probability(total_weight);
        Explanation {
            fields,
            prior_weight,
            total_weight,
            probability,
            thresholds: self.thresholds,
            decision: self.decide(probability),
            model_version: self.version,
        }
    }
}

/// The probability a total weight (log2 odds) stands for.
pub fn probability(weight: f64) -> f64 {
    1.0 / (1.0 + (-weight).exp2())
}

/// The total weight (log2 odds) a probability stands for.
pub fn weight_of(probability: f64) -> f64 {
    let p = probability.clamp(FLOOR, 1.0 - FLOOR);
    (p / (1.0 - p)).log2()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Input;

    fn person(given: &str, family: &str, email: &str, city: &str) -> Record {
        Record::prepare(&Input {
            given_name: given.into(),
            family_name: family.into(),
            emails: if email.is_empty() { vec![] } else { vec![email.into()] },
            locality: city.into(),
            ..Default::default()
        })
    }

    #[test]
    fn stored_frequencies_score_every_pair_as_counted_ones() {
        let records = vec![
            person("Ann", "Lee", "ann@example.com", "Leeds"),
            person("Ann", "Lee", "ann@example.com", "Leeds"),
            person("Anne", "Lee", "", "Leeds"),
            person("Bob", "Smith", "bob@example.com", "York"),
            person("Ann", "Smith", "", "York"),
            person("Lee", "Ann", "", "Leeds"),
        ];
        let model = Model::new(Field::defaults());
        let counted = Frequencies::count(&model, &records);
        let bytes = counted.encode();
        let stored = Frequencies::decode(&bytes).expect("decode");
        for a in &records {
            for b in &records {
                assert_eq!(
                    model.explain(a, b, Some(&counted)),
                    model.explain(a, b, Some(&stored)),
                    "values held once are left out without changing a score"
                );
            }
        }
        assert!(Frequencies::decode(&bytes[..bytes.len() - 1]).is_err(), "cut short");
        assert!(Frequencies::decode(b"something else").is_err());
        let mut other_hasher = bytes.clone();
        other_hasher[ENCODING.len()] ^= 1;
        let refused = Frequencies::decode(&other_hasher).expect_err("another build's hashes");
        assert!(refused.contains("another build"), "{refused}");
    }

    #[test]
    fn starting_parameters_are_distributions_favouring_agreement() {
        let model = Model::new(Field::defaults());
        for c in &model.comparisons {
            let (m, u): (f64, f64) = (c.levels.iter().map(|l| l.m).sum(), c.levels.iter().map(|l| l.u).sum());
            assert!((m - 1.0).abs() < 1e-9 && (u - 1.0).abs() < 1e-9, "{c:?}");
            assert!(model.level_weight(0, 0) > 0.0);
            assert!(c.levels.last().is_some_and(|l| l.m < l.u), "{c:?}");
        }
    }

    #[test]
    fn more_agreement_scores_higher_and_missing_values_are_no_evidence() {
        let model = Model::new(Field::defaults());
        let ann = person("Ann", "Lee", "ann@example.com", "Leeds");
        let same = person("Ann", "Lee", "ann@example.com", "Leeds");
        let typo = person("Anne", "Lee", "", "Leeds");
        let other = person("Zed", "Okonkwo", "zed@example.org", "Lagos");
        let (p_same, p_typo, p_other) = (
            model.probability(&ann, &same, None),
            model.probability(&ann, &typo, None),
            model.probability(&ann, &other, None),
        );
        assert!(p_same > p_typo && p_typo > p_other, "{p_same} {p_typo} {p_other}");
        let explained = model.explain(&ann, &typo, None);
        let email = explained.fields.iter().find(|f| f.field == "email").expect("email");
        assert_eq!((email.level.as_deref(), email.weight), (None, 0.0));
        assert!((explained.probability - p_typo).abs() < 1e-12);
    }

    #[test]
    fn a_shared_rare_name_weighs_more_than_a_shared_common_one() {
        let model = Model::new(vec![Field::FamilyName]);
        let mut records: Vec<Record> = (0..98).map(|_| person("", "Smith", "", "")).collect();
        records.push(person("", "Okonkwo", "", ""));
        records.push(person("", "Okonkwo", "", ""));
        let frequencies = Frequencies::count(&model, &records);
        let smiths = model.probability(&records[0], &records[1], Some(&frequencies));
        let okonkwos = model.probability(&records[98], &records[99], Some(&frequencies));
        assert!(okonkwos > smiths, "{okonkwos} {smiths}");
        let explained = model.explain(&records[98], &records[99], Some(&frequencies));
        assert!(explained.fields[0].term_frequency_adjustment != 0.0);
    }

    #[test]
    fn a_junk_email_or_birth_date_many_give_weighs_less_than_one_two_share() {
        let model = Model::new(vec![Field::Email, Field::BirthDate]);
        let record = |email: &str, birth: &str| {
            Record::prepare(&Input { emails: vec![email.into()], birth_date: birth.into(), ..Default::default() })
        };
        let mut records: Vec<Record> =
            (0..50).map(|i| record("noemail@shop.example", &format!("19{:02}-03-04", 50 + i % 40))).collect();
        records.extend((0..50).map(|i| record(&format!("p{i}@example.com"), "1900-01-01")));
        records.push(record("ann@example.com", "1977-05-06"));
        records.push(record("ann@example.com", "1977-05-06"));
        let frequencies = Frequencies::count(&model, &records);
        let junk = model.explain(&records[0], &records[1], Some(&frequencies));
        let ann = model.explain(&records[100], &records[101], Some(&frequencies));
        assert!(ann.fields[0].weight > junk.fields[0].weight + 4.0, "{ann:?} {junk:?}");
        let placeholder = model.explain(&records[50], &records[51], Some(&frequencies));
        assert!(ann.fields[1].weight > placeholder.fields[1].weight + 4.0, "{ann:?} {placeholder:?}");
        assert!(ann.probability > junk.probability && ann.probability > placeholder.probability);
    }

    #[test]
    fn namesakes_with_swapped_names_weigh_no_more_than_namesakes() {
        let model = Model::new(vec![Field::GivenName, Field::FamilyName]);
        let mut records: Vec<Record> = (0..40).map(|_| person("Jose", "Hernandez", "", "")).collect();
        records.push(person("Hernandez", "Jose", "", ""));
        let frequencies = Frequencies::count(&model, &records);
        let straight = model.probability(&records[0], &records[1], Some(&frequencies));
        let swapped = model.probability(&records[0], &records[40], Some(&frequencies));
        // "Hernandez" is rare as a given name; as a name it is not.
        assert!(swapped <= straight + 1e-12, "{swapped} > {straight}");
    }

    #[test]
    fn a_full_name_weighs_by_its_own_share_when_its_names_go_together() {
        // Two cultures whose given and family names never mix: each name is
        // held by a tenth of the records, a full name by a tenth too, not a
        // hundredth as the shares multiplied would say.
        let model = Model::new(vec![Field::GivenName, Field::FamilyName]);
        let mut records = Vec::new();
        for i in 0..10 {
            records.extend((0..10).map(|_| person(&format!("given{i}"), &format!("family{i}"), "", "")));
        }
        let frequencies = Frequencies::count(&model, &records);
        let explained = model.explain(&records[0], &records[1], Some(&frequencies));
        let names: f64 = explained.fields.iter().map(|f| f.weight).sum();
        let (g, f) = (&model.comparisons[0].levels[0], &model.comparisons[1].levels[0]);
        let full_share = 0.1;
        assert!((names - (g.m * f.m / full_share).log2()).abs() < 1e-9, "{explained:?}");
        // Names that do mix keep their own shares.
        let mut mixed = Vec::new();
        for i in 0..10 {
            mixed.extend((0..10).map(|j| person(&format!("given{i}"), &format!("family{j}"), "", "")));
        }
        let frequencies = Frequencies::count(&model, &mixed);
        let explained = model.explain(&mixed[0], &mixed[0].clone(), Some(&frequencies));
        let names: f64 = explained.fields.iter().map(|f| f.weight).sum();
        assert!((names - (g.m / 0.1 * f.m / 0.1).log2()).abs() < 1e-9, "{explained:?}");
    }

    #[test]
    fn a_prior_below_one_in_a_million_is_kept() {
        let mut model = Model::new(vec![Field::GivenName]);
        model.prior = 2.6e-7;
        assert!((model.prior_weight() - (2.6e-7f64 / (1.0 - 2.6e-7)).log2()).abs() < 1e-9);
    }

    #[test]
    fn a_pair_scores_the_same_whichever_record_comes_first() {
        let model = Model::new(vec![Field::Email, Field::Address, Field::City]);
        let record = |emails: &[&str], city: &str| {
            Record::prepare(&Input {
                emails: emails.iter().map(|e| (*e).to_owned()).collect(),
                addresses: vec!["1 Care Home Road".into()],
                locality: city.into(),
                ..Default::default()
            })
        };
        let mut records: Vec<Record> = (0..20).map(|i| record(&["noemail@shop.example"], &format!("t{i}"))).collect();
        let a = record(&["noemail@shop.example", "ann@example.com"], "Leeds");
        let b = record(&["ann@example.com", "noemail@shop.example"], "");
        records.extend([a.clone(), b.clone()]);
        let frequencies = Frequencies::count(&model, &records);
        let (ab, ba) = (model.probability(&a, &b, Some(&frequencies)), model.probability(&b, &a, Some(&frequencies)));
        assert!((ab - ba).abs() < 1e-12, "{ab} {ba}");
        let explained = model.explain(&a, &b, Some(&frequencies));
        assert_eq!(explained.fields[0].term_frequency_adjustment, 0.0, "the rarer shared email speaks");
    }

    #[test]
    fn a_share_counts_only_the_records_with_a_value() {
        let model = Model::new(vec![Field::City]);
        let mut records = vec![person("", "", "", "Leeds"), person("", "", "", "Leeds")];
        records.extend((0..6).map(|_| person("Ann", "Lee", "", "")));
        let frequencies = Frequencies::count(&model, &records);
        let explained = model.explain(&records[0], &records[1], Some(&frequencies));
        // Every record with a town lives in Leeds: agreeing on it is no news.
        let u = model.comparisons[0].levels[0].u;
        assert!((explained.fields[0].term_frequency_adjustment - u.log2()).abs() < 1e-9, "{explained:?}");
    }

    #[test]
    fn decisions_follow_the_thresholds() {
        let model = Model::new(Field::defaults());
        assert_eq!(model.decide(0.9995), Decision::Match);
        assert_eq!(model.decide(0.95), Decision::Review);
        assert_eq!(model.decide(0.5), Decision::NonMatch);
        assert!((probability(weight_of(0.9)) - 0.9).abs() < 1e-9);
    }

    #[test]
    fn a_model_round_trips_through_its_settings_form() {
        let mut model = Model::new(vec![Field::GivenName, Field::Attribute("national_id".into())]);
        model.version = 3;
        let json = serde_json::to_string(&model).expect("encode");
        assert_eq!(serde_json::from_str::<Model>(&json).expect("decode"), model, "to the last bit");
    }

    #[test]
    fn a_model_written_by_hand_is_checked_field_by_field() {
        let good = Model::new(vec![Field::GivenName, Field::Attribute("national_id".into())]);
        assert_eq!(good.check(), Ok(()));
        let broken = |change: &dyn Fn(&mut Model)| {
            let mut model = good.clone();
            change(&mut model);
            model.check().expect_err("refused")
        };
        assert!(broken(&|m| m.prior = 1.0).contains("prior"));
        assert!(broken(&|m| m.prior = 0.0).contains("prior"));
        assert!(broken(&|m| m.comparisons.clear()).contains("no field"));
        assert!(broken(&|m| m.comparisons.push(m.comparisons[0].clone())).contains("given_name is compared twice"));
        assert!(broken(&|m| m.comparisons[0].levels.swap(0, 1)).contains("given_name has the levels"));
        assert!(broken(&|m| m.comparisons[1].levels[0].m = 0.0).contains("attributes.national_id, level exact"));
        assert!(broken(&|m| m.comparisons[1].levels[1].u = 1.5).contains("m and u"));
        assert!(broken(&|m| m.comparisons[0].levels[0].u = f64::NAN).contains("m and u"));
    }
}
