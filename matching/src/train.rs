//! Estimating the model from the data itself, without labels, the way Splink
//! does: `u` from pairs drawn at random (almost all of them non-matches), then
//! `m` and the share of matches by expectation–maximisation over the pairs
//! that blocking rules find, each rule's own fields left out of the session
//! that uses it (its pairs agree on them by construction).

use std::collections::HashMap;

use crate::{
    Record,
    model::{FLOOR, Model, NULL, probability},
};

/// One EM session: the pairs one blocking rule found, and the comparisons
/// that rule's pairs agree on by construction (not estimated from them).
#[derive(Debug, Clone)]
pub struct Session<'p> {
    /// Pairs of indices into the records.
    pub pairs: &'p [(u32, u32)],
    /// Indices of the comparisons the rule blocks on.
    pub fixed: Vec<usize>,
}

/// What training found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Random pairs compared for `u`.
    pub random_pairs: usize,
    /// Per session: iterations run and the share of its pairs that match.
    pub sessions: Vec<(usize, f64)>,
}

/// Most pairs of one session whose patterns are counted: beyond a few
/// million, more pairs of the same rule move no estimate, and a loose rule
/// (one birth date among a million people) finds tens of millions.
const MAX_SESSION_PAIRS: usize = 2_000_000;
/// Most EM iterations per session.
const MAX_ITERATIONS: usize = 50;
/// A session stops once no parameter moves more than this.
const CONVERGED: f64 = 1e-5;

/// Estimates every comparison's `u` from up to `max_pairs` pairs of
/// `records` drawn at random (deterministically from `seed`).
pub fn estimate_u(model: &mut Model, records: &[Record], max_pairs: usize, seed: u64) -> usize {
    let n = records.len() as u64;
    if n < 2 {
        return 0;
    }
    let mut rng = SplitMix(seed);
    let mut drawn: Vec<(u32, u32)> = Vec::with_capacity(max_pairs);
    while drawn.len() < max_pairs {
        let (a, b) = (rng.below(n), rng.below(n));
        if a != b {
            drawn.push((a as u32, b as u32));
        }
    }
    // Counted per core (whole numbers: the sums do not depend on the split).
    let empty: Vec<Vec<f64>> = model.comparisons.iter().map(|c| vec![0.0; c.levels.len()]).collect();
    let parts = crate::per_core(&drawn, |part| {
        let mut counts = empty.clone();
        let mut gamma = Vec::new();
        for &(a, b) in part {
            model.gamma(&records[a as usize], &records[b as usize], &mut gamma);
            for (i, &level) in gamma.iter().enumerate() {
                if level != NULL {
                    counts[i][level as usize] += 1.0;
                }
            }
        }
        counts
    });
    let mut counts = empty;
    for part in parts {
        for (sum, part) in counts.iter_mut().zip(part) {
            for (sum, count) in sum.iter_mut().zip(part) {
                *sum += count;
            }
        }
    }
    for (comparison, counts) in model.comparisons.iter_mut().zip(counts) {
        let total: f64 = counts.iter().sum();
        if total == 0.0 {
            continue;
        }
        // A level never seen among random pairs is rare, not impossible:
        // half a pair keeps its weight finite.
        let floored: Vec<f64> = counts.iter().map(|c| c.max(0.5)).collect();
        let total: f64 = floored.iter().sum();
        for (level, count) in comparison.levels.iter_mut().zip(floored) {
            level.u = count / total;
        }
    }
    drawn.len()
}

/// Estimates `m` and the prior by EM over `sessions` of candidate pairs of
/// `records`, `u` held fixed. Each comparison's `m` is the mean over the
/// sessions that estimated it; the prior is the largest number of matches
/// one session expects, over every pair of records.
pub fn estimate_m(model: &mut Model, records: &[Record], sessions: &[Session<'_>]) -> Vec<(usize, f64)> {
    let k = model.comparisons.len();
    let mut sums: Vec<Vec<f64>> = model.comparisons.iter().map(|c| vec![0.0; c.levels.len()]).collect();
    let mut estimated = vec![0usize; k];
    let mut most_matches: f64 = 0.0;
    let mut report = Vec::with_capacity(sessions.len());
    for session in sessions {
        let patterns = patterns(model, records, session.pairs);
        let (iterations, share, m) = em(model, &patterns, &session.fixed);
        most_matches = most_matches.max(share * session.pairs.len() as f64);
        report.push((iterations, share));
        for i in (0..k).filter(|i| !session.fixed.contains(i)) {
            for (sum, value) in sums[i].iter_mut().zip(&m[i]) {
                *sum += value;
            }
            estimated[i] += 1;
        }
    }
    for (i, comparison) in model.comparisons.iter_mut().enumerate() {
        if estimated[i] > 0 {
            for (level, sum) in comparison.levels.iter_mut().zip(&sums[i]) {
                level.m = sum / estimated[i] as f64;
            }
        }
    }
    let n = records.len() as f64;
    let all_pairs = n * (n - 1.0) / 2.0;
    if all_pairs > 0.0 && most_matches > 0.0 {
        model.prior = (most_matches / all_pairs).min(0.5);
    }
    model.version += 1;
    report
}

/// The distinct level patterns of `pairs` (an even sample of at most
/// [`MAX_SESSION_PAIRS`] of them), with how many pairs have each.
fn patterns(model: &Model, records: &[Record], pairs: &[(u32, u32)]) -> Vec<(Vec<u8>, f64)> {
    let sample: Vec<(u32, u32)>;
    let pairs = if pairs.len() > MAX_SESSION_PAIRS {
        let step = pairs.len().div_ceil(MAX_SESSION_PAIRS);
        sample = pairs.iter().step_by(step).copied().collect();
        &sample[..]
    } else {
        pairs
    };
    let parts = crate::per_core(pairs, |part| {
        let mut counts: HashMap<Vec<u8>, f64> = HashMap::new();
        let mut gamma = Vec::new();
        for &(a, b) in part {
            model.gamma(&records[a as usize], &records[b as usize], &mut gamma);
            match counts.get_mut(&gamma) {
                Some(count) => *count += 1.0,
                None => {
                    counts.insert(gamma.clone(), 1.0);
                }
            }
        }
        counts
    });
    let mut counts: HashMap<Vec<u8>, f64> = HashMap::new();
    // Whole counts: their sum is exact in any order.
    for part in parts {
        for (gamma, n) in part {
            *counts.entry(gamma).or_insert(0.0) += n;
        }
    }
    let mut out: Vec<(Vec<u8>, f64)> = counts.into_iter().collect();
    // Summation order fixed, so training is repeatable to the last bit.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One EM session: iterations run, the share of matches, and `m` per
/// comparison (the fixed ones as they were).
fn em(model: &Model, patterns: &[(Vec<u8>, f64)], fixed: &[usize]) -> (usize, f64, Vec<Vec<f64>>) {
    let mut m: Vec<Vec<f64>> = model.comparisons.iter().map(|c| c.levels.iter().map(|l| l.m).collect()).collect();
    let u: Vec<Vec<f64>> = model.comparisons.iter().map(|c| c.levels.iter().map(|l| l.u).collect()).collect();
    let mut share: f64 = 0.5;
    let total: f64 = patterns.iter().map(|(_, n)| n).sum();
    if total == 0.0 {
        return (0, 0.0, m);
    }
    for iteration in 1..=MAX_ITERATIONS {
        let mut matched = 0.0;
        let mut next: Vec<Vec<f64>> = m.iter().map(|levels| vec![0.0; levels.len()]).collect();
        for (gamma, count) in patterns {
            let mut weight = (share / (1.0 - share)).log2();
            for (i, &level) in gamma.iter().enumerate() {
                if level != NULL && !fixed.contains(&i) {
                    let l = level as usize;
                    weight += (m[i][l].max(FLOOR) / u[i][l].max(FLOOR)).log2();
                }
            }
            let p = probability(weight) * count;
            matched += p;
            for (i, &level) in gamma.iter().enumerate() {
                if level != NULL {
                    next[i][level as usize] += p;
                }
            }
        }
        let mut moved: f64 = 0.0;
        for (i, levels) in next.iter_mut().enumerate() {
            let sum: f64 = levels.iter().sum();
            if fixed.contains(&i) || sum == 0.0 {
                continue;
            }
            for (l, value) in levels.iter_mut().enumerate() {
                *value /= sum;
                moved = moved.max((*value - m[i][l]).abs());
                m[i][l] = *value;
            }
        }
        let next_share = (matched / total).clamp(1e-6, 1.0 - 1e-6);
        moved = moved.max((next_share - share).abs());
        share = next_share;
        if moved < CONVERGED {
            return (iteration, share, m);
        }
    }
    (MAX_ITERATIONS, share, m)
}

/// A small deterministic generator (SplitMix64): training must give the same
/// model for the same data.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Input, blocking::Rule, compare::Field};

    /// `people` distinct people with one noisy duplicate each: the truth is
    /// record 2i matches 2i+1.
    pub(crate) fn population(people: usize) -> Vec<Record> {
        const GIVEN: &[&str] = &["Anna", "Jan", "Maria", "Piotr", "Ewa", "Tomasz", "Olga", "Adam", "Zofia", "Marek"];
        const FAMILY: &[&str] = &[
            "Nowak",
            "Kowalski",
            "Wisniewski",
            "Wojcik",
            "Kaminski",
            "Lewandowski",
            "Zielinski",
            "Szymanski",
            "Wozniak",
            "Dabrowski",
            "Kozlowski",
            "Jankowski",
            "Mazur",
            "Krawczyk",
            "Piotrowski",
            "Grabowski",
        ];
        const CITY: &[&str] = &["Warszawa", "Krakow", "Lodz", "Wroclaw", "Poznan"];
        let mut rng = SplitMix(7);
        let mut out = Vec::with_capacity(people * 2);
        for i in 0..people {
            let pick = |rng: &mut SplitMix, list: &[&str]| list[rng.below(list.len() as u64) as usize].to_owned();
            let given = pick(&mut rng, GIVEN);
            let family = format!("{}{}", pick(&mut rng, FAMILY), if i % 3 == 0 { "" } else { "a" });
            let birth = format!("{}-{:02}-{:02}", 1950 + rng.below(50), 1 + rng.below(12), 1 + rng.below(28));
            let email = format!("p{i}@example.com");
            let city = pick(&mut rng, CITY);
            let original = Input {
                given_name: given.clone(),
                family_name: family.clone(),
                birth_date: birth.clone(),
                emails: vec![email.clone()],
                locality: city.clone(),
                ..Default::default()
            };
            // The duplicate: a typo in the name or a missing email, now and then another city.
            let mut copy = original.clone();
            match rng.below(4) {
                0 => copy.family_name = format!("{}x", family),
                1 => copy.emails.clear(),
                2 => copy.given_name = given[..1].to_owned(),
                _ => copy.birth_date.clear(),
            }
            if rng.below(5) == 0 {
                copy.locality = pick(&mut rng, CITY);
            }
            out.push(Record::prepare(&original));
            out.push(Record::prepare(&copy));
        }
        out
    }

    #[test]
    fn em_recovers_weights_that_rank_true_pairs_first() {
        let records = population(2_000);
        let mut model =
            Model::new(vec![Field::GivenName, Field::FamilyName, Field::BirthDate, Field::Email, Field::City]);
        assert!(estimate_u(&mut model, &records, 50_000, 1) == 50_000);
        let by_birth = Rule::BirthDate.pairs(&records, 1000);
        let by_name = Rule::FamilyName.pairs(&records, 1000);
        let sessions = [Session { pairs: &by_birth, fixed: vec![2] }, Session { pairs: &by_name, fixed: vec![1] }];
        let report = estimate_m(&mut model, &records, &sessions);
        assert!(report.iter().all(|(iterations, _)| *iterations < MAX_ITERATIONS), "{report:?}");
        assert_eq!(model.version, 2);
        // Ranked by score, the first pairs are the true ones: of as many
        // top pairs as there are true pairs among the candidates, at least
        // 97% are true.
        let mut candidates: Vec<(u32, u32)> = by_birth.iter().chain(&by_name).copied().collect();
        candidates.sort_unstable();
        candidates.dedup();
        let mut scored: Vec<(f64, bool)> = candidates
            .iter()
            .map(|&(a, b)| (model.probability(&records[a as usize], &records[b as usize], None), a / 2 == b / 2))
            .collect();
        scored.sort_by(|x, y| y.0.total_cmp(&x.0));
        let truths = scored.iter().filter(|(_, t)| *t).count();
        let top_true = scored[..truths].iter().filter(|(_, t)| *t).count();
        assert!(top_true * 100 >= truths * 97, "{top_true} of the top {truths} are true");
        // An email in common is the strongest evidence; different names the weakest.
        let email_exact = model.level_weight(3, 0);
        assert!(email_exact > model.level_weight(0, 0), "{model:#?}");
        assert!(model.level_weight(1, 5) < 0.0);
        // Training is repeatable.
        let mut again =
            Model::new(vec![Field::GivenName, Field::FamilyName, Field::BirthDate, Field::Email, Field::City]);
        estimate_u(&mut again, &records, 50_000, 1);
        estimate_m(&mut again, &records, &sessions);
        assert_eq!(again, model);
    }
}
