//! Clusters from scored pairs, without giant clusters: links are taken
//! strongest first, and two groups join only if every pair across them
//! clears the review threshold (cohesion) and the result stays within a cap.
//! A chain of weak links (A~B, B~C with A and C strangers) therefore never
//! pulls strangers into one customer.

use std::collections::HashMap;

/// What a cluster must satisfy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Pairs at or above this probability link.
    pub link: f64,
    /// Every pair inside a cluster scores at least this.
    pub cohesion: f64,
    /// Most records in one cluster.
    pub max_size: usize,
}

/// Clusters of the `n` records from `pairs` (`(i, j, probability)`), each
/// sorted, records that join nothing left out; `score` gives the probability
/// of a pair not among `pairs`. The result does not depend on the order of
/// `pairs`.
pub fn clusters(
    n: usize,
    pairs: &[(u32, u32, f64)],
    limits: Limits,
    mut score: impl FnMut(u32, u32) -> f64,
) -> Vec<Vec<u32>> {
    let known: HashMap<(u32, u32), f64> = pairs.iter().map(|&(i, j, p)| ((i.min(j), i.max(j)), p)).collect();
    let mut links: Vec<(u32, u32, f64)> =
        pairs.iter().filter(|p| p.2 >= limits.link).map(|&(i, j, p)| (i.min(j), i.max(j), p)).collect();
    links.sort_by(|a, b| b.2.total_cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    let mut group: Vec<u32> = (0..n as u32).collect();
    let mut members: HashMap<u32, Vec<u32>> = HashMap::new();
    for (i, j, _) in links {
        let (gi, gj) = (group[i as usize], group[j as usize]);
        if gi == gj {
            continue;
        }
        let a = members.get(&gi).cloned().unwrap_or_else(|| vec![i]);
        let b = members.get(&gj).cloned().unwrap_or_else(|| vec![j]);
        if a.len() + b.len() > limits.max_size {
            continue;
        }
        let cohesive = a.iter().all(|&x| {
            b.iter().all(|&y| {
                let key = (x.min(y), x.max(y));
                known.get(&key).copied().unwrap_or_else(|| score(key.0, key.1)) >= limits.cohesion
            })
        });
        if !cohesive {
            continue;
        }
        let (keep, gone) = (gi.min(gj), gi.max(gj));
        let mut joined = a;
        joined.extend(b);
        for &x in &joined {
            group[x as usize] = keep;
        }
        members.remove(&gone);
        members.insert(keep, joined);
    }
    let mut out: Vec<Vec<u32>> = members
        .into_values()
        .map(|mut m| {
            m.sort_unstable();
            m
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { link: 0.99, cohesion: 0.9, max_size: 4 };

    #[test]
    fn a_chain_of_weak_links_does_not_join_strangers() {
        // 0~1~2~3~4 each a strong link, but 0 and 2 (and so on) are strangers.
        let chain: Vec<(u32, u32, f64)> = (0..4).map(|i| (i, i + 1, 0.999)).collect();
        let found = clusters(5, &chain, LIMITS, |_, _| 0.01);
        assert!(found.iter().all(|c| c.len() == 2), "{found:?}");
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn a_cohesive_group_joins_up_to_the_cap() {
        let mut all = Vec::new();
        for i in 0..6u32 {
            for j in i + 1..6 {
                all.push((i, j, 0.999));
            }
        }
        let found = clusters(6, &all, LIMITS, |_, _| 0.0);
        assert_eq!(found.iter().map(Vec::len).max(), Some(4), "{found:?}");
        assert!(found.iter().all(|c| c.len() <= LIMITS.max_size));
    }

    #[test]
    fn order_of_pairs_does_not_matter() {
        let pairs = vec![(0, 1, 0.999), (1, 2, 0.995), (2, 3, 0.9991), (3, 4, 0.999), (5, 6, 0.2)];
        let score = |i: u32, j: u32| if j - i <= 2 { 0.95 } else { 0.1 };
        let forward = clusters(7, &pairs, LIMITS, score);
        let mut reversed = pairs.clone();
        reversed.reverse();
        let reversed: Vec<_> = reversed.into_iter().map(|(i, j, p)| (j, i, p)).collect();
        assert_eq!(clusters(7, &reversed, LIMITS, score), forward);
        assert!(!forward.iter().flatten().any(|&r| r == 5 || r == 6), "below the link threshold: {forward:?}");
    }
}
