//! Bulk deduplication of one tenant (docs/identity-resolution.md): the live
//! people are read, the matching model is estimated from them without
//! labels, candidate pairs found by blocking are scored, and pairs at the
//! auto threshold form clusters that no chain of weak links can grow. What
//! to do with the result (merge, store for review, export) is the caller's.

use std::collections::HashMap;

use c360_matching::{
    Input, Record,
    blocking::{Rule, candidates},
    cluster::{Limits, clusters},
    compare::Field,
    model::{Decision, Frequencies, Model, Thresholds},
    train::{Session, estimate_m, estimate_u},
};

use crate::{
    domain::{
        DomainError, ProfileId, TenantId,
        identifiers::NormalizationPolicy,
        profile::{ExternalId, Profile, ProfileKind, ProfileStatus},
    },
    store::{
        self, Store,
        profiles::{ProfileFilter, page},
    },
};

/// Profiles read per query.
const PAGE: u64 = 2_000;

/// How a run finds its pairs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Blocks with more profiles than this make no pairs.
    pub max_block: usize,
    /// Random pairs compared to estimate `u`.
    pub random_pairs: usize,
    /// Most profiles one automatic merge may join.
    pub max_cluster: usize,
    /// Pairs at or above this probability are kept (exported); at least the
    /// review threshold is always kept.
    pub keep_from: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self { max_block: 200, random_pairs: 1_000_000, max_cluster: 10, keep_from: 1.0 }
    }
}

/// A live person as matched: its id, its external ids, its record.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The profile.
    pub id: ProfileId,
    /// Its external ids (an export names the profile by one).
    pub external_ids: Vec<ExternalId>,
    /// Its version when read: a merge of it sends it as the etag, so a
    /// profile changed since is not merged on what it was.
    pub version: i64,
}

/// One scored pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// Index of the first profile in [`Found::profiles`].
    pub left: u32,
    /// Index of the second.
    pub right: u32,
    /// Match probability.
    pub probability: f64,
    /// What it leads to.
    pub decision: Decision,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The profiles compared, in id order.
    pub profiles: Vec<Candidate>,
    /// The model estimated from them.
    pub model: Model,
    /// Candidate pairs compared.
    pub candidate_pairs: usize,
    /// Pairs at or above the kept probability, strongest first.
    pub pairs: Vec<Pair>,
    /// Groups of one customer each (indices into `profiles`), each sorted.
    pub clusters: Vec<Vec<u32>>,
}

/// Reports how far a run is.
pub trait Progress: Send {
    /// Profiles read so far of `total`.
    fn read(&mut self, done: u64, total: u64);
    /// A step begins ("training", "scoring", …).
    fn step(&mut self, name: &str);
}

/// Reads, trains, scores and clusters the live people of `tenant`.
pub async fn find(
    store: &Store,
    tenant: &TenantId,
    policy: &NormalizationPolicy,
    options: &Options,
    progress: &mut dyn Progress,
) -> Result<Found, DomainError> {
    let live = [ProfileStatus::Prospect, ProfileStatus::Active];
    let total = store::profiles::count(store.db(), tenant, &live).await?;
    let mut profiles = Vec::new();
    let mut inputs = Vec::new();
    let mut after = None;
    let mut read = 0;
    loop {
        let filter = ProfileFilter::All { show_deleted: false };
        let (page, more) = page(store.db(), tenant, &filter, after, PAGE).await?;
        after = page.last().map(|p| p.id);
        for profile in page.iter().filter(|p| p.data.kind == ProfileKind::Person && p.data.status.is_live()) {
            inputs.push(input(profile, policy));
            profiles.push(Candidate {
                id: profile.id,
                external_ids: profile.data.external_ids.clone(),
                version: profile.version,
            });
        }
        read += page.len() as u64;
        progress.read(read, total);
        if !more {
            break;
        }
    }
    progress.step("matching");
    // The tenant's thresholds (settings); the version moves on from the
    // model in force.
    let previous = store::matching::current_model(store.db(), tenant).await?;
    let (auto, review) = store::settings::get(store.db(), tenant).await?.settings.match_thresholds();
    let thresholds = Thresholds { auto, review };
    let options = options.clone();
    let (mut model, candidate_pairs, pairs, clusters) =
        tokio::task::spawn_blocking(move || run(&inputs, &options, thresholds))
            .await
            .map_err(|e| DomainError::Internal(e.to_string()))?;
    model.version = previous.map_or(1, |m| m.version + 1);
    Ok(Found { profiles, model, candidate_pairs, pairs, clusters })
}

/// The pure part of a run, over prepared inputs.
pub fn run(inputs: &[Input], options: &Options, thresholds: Thresholds) -> (Model, usize, Vec<Pair>, Vec<Vec<u32>>) {
    let records: Vec<Record> = inputs.iter().map(Record::prepare).collect();
    let mut model = Model::new(Field::defaults());
    model.thresholds = thresholds;
    let rules = Rule::defaults();
    // Splink draws a million pairs whatever the size; a small tenant needs
    // fewer for the same precision.
    let random_pairs = options.random_pairs.min(records.len().saturating_mul(200).max(100_000));
    estimate_u(&mut model, &records, random_pairs, 0x0c36_0000);
    let per_rule: Vec<(Rule, Vec<(u32, u32)>)> =
        Rule::training().iter().map(|rule| (*rule, rule.pairs(&records, options.max_block))).collect();
    let sessions: Vec<Session<'_>> = per_rule
        .iter()
        .map(|(rule, pairs)| {
            let fixed =
                rule.fields().iter().filter_map(|f| model.comparisons.iter().position(|c| &c.field == f)).collect();
            Session { pairs, fixed }
        })
        .collect();
    estimate_m(&mut model, &records, &sessions);
    drop(sessions);
    drop(per_rule);
    let all = candidates(&rules, &records, options.max_block);
    let frequencies = Frequencies::count(&model, &records);
    let keep_from = options.keep_from.min(model.thresholds.review);
    let mut gamma = Vec::new();
    let mut pairs: Vec<Pair> = Vec::new();
    for &(left, right) in &all {
        let (a, b) = (&records[left as usize], &records[right as usize]);
        model.gamma(a, b, &mut gamma);
        let probability = c360_matching::model::probability(model.weight(&gamma, a, Some(&frequencies)));
        if probability >= keep_from {
            pairs.push(Pair { left, right, probability, decision: model.decide(probability) });
        }
    }
    pairs.sort_by(|x, y| y.probability.total_cmp(&x.probability).then((x.left, x.right).cmp(&(y.left, y.right))));
    let scored: Vec<(u32, u32, f64)> = pairs.iter().map(|p| (p.left, p.right, p.probability)).collect();
    let limits =
        Limits { link: model.thresholds.auto, cohesion: model.thresholds.review, max_size: options.max_cluster };
    let clusters = clusters(records.len(), &scored, limits, |i, j| {
        model.probability(&records[i as usize], &records[j as usize], Some(&frequencies))
    });
    (model, all.len(), pairs, clusters)
}

/// A profile's values as the matcher reads them.
pub fn input(profile: &Profile, policy: &NormalizationPolicy) -> Input {
    let data = &profile.data;
    let first = data.addresses.first();
    Input {
        given_name: data.given_name.clone().unwrap_or_default(),
        family_name: data.family_name.clone().unwrap_or_default(),
        birth_date: data.birth_date.map(|d| d.to_string()).unwrap_or_default(),
        emails: data.emails.iter().map(|e| policy.email_key(&e.address)).collect(),
        phones: data.phones.iter().map(|p| p.number.clone()).collect(),
        addresses: data.addresses.iter().map(|a| a.lines.join(" ")).collect(),
        postal_code: first.map(|a| a.postal_code.clone()).unwrap_or_default(),
        locality: first.map(|a| a.locality.clone()).unwrap_or_default(),
        attributes: Vec::new(),
    }
}

/// The name a profile goes by in an export: its external id of `source`
/// when it has one, else its first external id (`source:id`), else its id.
pub fn name_of(candidate: &Candidate, source: Option<&str>) -> String {
    if let Some(source) = source
        && let Some(x) = candidate.external_ids.iter().find(|x| x.source == source)
    {
        return x.id.clone();
    }
    match candidate.external_ids.first() {
        Some(x) if source.is_none() => format!("{}:{}", x.source, x.id),
        _ => candidate.id.to_string(),
    }
}

/// The profiles of `cluster`, the one it merges into first: the oldest (the
/// smallest id; ids are time-ordered), then the others in id order.
pub fn members<'f>(found: &'f Found, cluster: &[u32]) -> Vec<&'f Candidate> {
    let mut members: Vec<&Candidate> = cluster.iter().map(|&i| &found.profiles[i as usize]).collect();
    members.sort_by_key(|m| m.id);
    members
}

/// The pairs left for a steward: every kept pair at or above the review
/// threshold whose profiles did not end in one cluster, each profile named
/// by the profile its cluster merges into (the smallest id), once.
pub fn for_review(found: &Found) -> Vec<(ProfileId, ProfileId, f64)> {
    let mut survivor: HashMap<u32, ProfileId> = HashMap::new();
    for cluster in &found.clusters {
        let target = members(found, cluster)[0].id;
        survivor.extend(cluster.iter().map(|&i| (i, target)));
    }
    let named = |i: u32| survivor.get(&i).copied().unwrap_or(found.profiles[i as usize].id);
    let mut seen = std::collections::HashSet::new();
    found
        .pairs
        .iter()
        .filter(|p| p.probability >= found.model.thresholds.review)
        .map(|p| (named(p.left), named(p.right), p.probability))
        .filter(|(a, b, _)| a != b && seen.insert((*a.min(b), *a.max(b))))
        .collect()
}

/// The confidence of each cluster: the lowest probability among the pairs
/// that joined it (scored pairs only; a cluster is cohesive above the
/// review threshold by construction).
pub fn cluster_confidence(found: &Found) -> Vec<f64> {
    let member: HashMap<u32, usize> =
        found.clusters.iter().enumerate().flat_map(|(c, m)| m.iter().map(move |&i| (i, c))).collect();
    let mut lowest = vec![1.0f64; found.clusters.len()];
    for pair in &found.pairs {
        if let (Some(&a), Some(&b)) = (member.get(&pair.left), member.get(&pair.right))
            && a == b
        {
            lowest[a] = lowest[a].min(pair.probability);
        }
    }
    lowest
}
