//! Bulk deduplication of one tenant (docs/identity-resolution.md): the live
//! people are read, the matching model is estimated from them without
//! labels, candidate pairs found by blocking are scored, and pairs at the
//! auto threshold form clusters that no chain of weak links can grow. What
//! to do with the result (merge, store for review, export) is the caller's.

use std::collections::{BTreeSet, HashMap, HashSet};

use tokio_util::sync::CancellationToken;

use c360_matching::{
    Input, Record,
    blocking::{Rule, candidates, pairs_per_rule},
    cluster::{Limits, clusters},
    compare::{Field, term},
    model::{Decision, Frequencies, Model, Thresholds},
    train::{Session, estimate_m, estimate_u},
};

use crate::{
    auth::Caller,
    domain::{
        DomainError, ProfileId, TenantId,
        identifiers::{IdentifierKey, IdentifierType, NormalizationPolicy},
        job::JobProgress,
        merge::MergeReason,
        profile::{ExternalId, ProfileData, ProfileKind, ProfileStatus},
    },
    outbox::AbortOnDrop,
    service::{MergeRequest, Profiles},
    store::{self, Store, matching::StoredFrequencies},
};

/// Profiles read per query.
const PAGE: u64 = 5_000;

/// Values that are no evidence of one person: the placeholders of
/// [`c360_matching::junk`] and a tenant's `match_blocklist`. A profile is
/// matched as if it did not carry them.
#[derive(Debug, Clone, Default)]
pub struct Junk {
    emails: HashSet<String>,
    phones: HashSet<String>,
    addresses: HashSet<String>,
}

impl Junk {
    /// The tenant's list, each value read as an email when it has an `@`,
    /// else as a phone number when it is one, else as an address text.
    pub fn new(blocklist: &BTreeSet<String>, policy: &NormalizationPolicy) -> Self {
        let mut junk = Self::default();
        for value in blocklist {
            // A phone number has no letters ("415 Elm Road" would dial).
            if value.contains('@') {
                junk.emails.insert(policy.email_key(value));
            } else if let (false, Ok(number)) = (value.chars().any(char::is_alphabetic), policy.phone(value)) {
                junk.phones.insert(number);
            } else {
                junk.addresses.insert(c360_matching::junk::address_key(value));
            }
        }
        junk
    }

    /// The values of `data` matched as if absent, named for a person:
    /// `email ann@…`, `phone +1…`, `address 1 Main St`.
    pub fn ignored(&self, data: &ProfileData, policy: &NormalizationPolicy) -> Vec<String> {
        let emails = data.emails.iter().filter(|e| self.email(&policy.email_key(&e.address)));
        let phones = data.phones.iter().filter(|p| self.phone(&p.number));
        let addresses = data.addresses.iter().map(|a| a.lines.join(" ")).filter(|text| self.address(text));
        (emails.map(|e| format!("email {}", e.address)))
            .chain(phones.map(|p| format!("phone {}", p.number)))
            .chain(addresses.map(|text| format!("address {text}")))
            .collect()
    }

    /// Adds to `input` what its records said though another profile held
    /// it (`held`): evidence all the same. (After a merge into its holder,
    /// the profile holds it itself.)
    pub fn add_held(&self, input: &mut Input, held: &[IdentifierKey]) {
        for key in held {
            let values = match key.id_type {
                IdentifierType::Email if !self.email(&key.value) => &mut input.emails,
                IdentifierType::Phone if !self.phone(&key.value) => &mut input.phones,
                _ => continue,
            };
            if !values.contains(&key.value) {
                values.push(key.value.clone());
            }
        }
    }

    fn email(&self, key: &str) -> bool {
        self.emails.contains(key) || c360_matching::junk::placeholder_email(key)
    }

    fn phone(&self, number: &str) -> bool {
        self.phones.contains(number) || c360_matching::junk::placeholder_phone(number)
    }

    fn address(&self, text: &str) -> bool {
        let key = c360_matching::junk::address_key(text);
        !key.is_empty() && (c360_matching::junk::placeholder_address_key(&key) || self.addresses.contains(&key))
    }
}

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
    /// Attribute keys compared besides the tenant's `match_attribute_keys`.
    pub match_attributes: BTreeSet<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_block: 200,
            random_pairs: 1_000_000,
            max_cluster: 10,
            keep_from: 1.0,
            match_attributes: BTreeSet::new(),
        }
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
    /// Pairs a steward said are not one person (indices, smaller first):
    /// never in one cluster, never proposed for review again.
    pub apart: HashSet<(u32, u32)>,
    /// How often each compared value occurs among the profiles: kept with
    /// the model, so pairs scored one at a time later weigh values alike.
    pub frequencies: Frequencies,
}

/// Reports how far a run is.
pub trait Progress: Send {
    /// Profiles read so far of `total`.
    fn read(&mut self, done: u64, total: u64);
    /// A step begins (`matching`, `merging`, `queueing`).
    fn step(&mut self, name: &str);
    /// What the run found.
    fn found(&mut self, _found: &Found) {}
    /// Clusters merged and refused so far, of `total`.
    fn merged(&mut self, _merged: u64, _refused: u64, _total: u64) {}
    /// Pairs queued for review.
    fn queued(&mut self, _pairs: u64) {}
}

/// A run's progress as a job records it, shared between the run and the
/// task that writes it to the job's row.
#[derive(Debug, Clone, Default)]
pub struct Tracker(std::sync::Arc<std::sync::Mutex<JobProgress>>);

impl Tracker {
    /// The progress now.
    pub fn snapshot(&self) -> JobProgress {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JobProgress> {
        // A panic while holding it leaves plain counters: still readable.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Progress for Tracker {
    fn read(&mut self, done: u64, total: u64) {
        let mut progress = self.lock();
        progress.step = "reading".to_owned();
        (progress.processed, progress.total) = (done, total);
    }

    fn step(&mut self, name: &str) {
        self.lock().step = name.to_owned();
    }

    fn found(&mut self, found: &Found) {
        let mut progress = self.lock();
        progress.candidate_pairs = found.candidate_pairs as u64;
        progress.clusters = found.clusters.len() as u64;
        progress.model_version = found.model.version;
    }

    fn merged(&mut self, merged: u64, refused: u64, _total: u64) {
        let mut progress = self.lock();
        (progress.merges, progress.merges_refused) = (merged, refused);
    }

    fn queued(&mut self, pairs: u64) {
        self.lock().review_pairs = pairs;
    }
}

/// Reads, trains, scores and clusters the live people of `tenant`; `None`
/// when `cancel` stopped it first.
pub async fn find(
    store: &Store,
    tenant: &TenantId,
    policy: &NormalizationPolicy,
    options: &Options,
    progress: &mut dyn Progress,
    cancel: &CancellationToken,
) -> Result<Option<Found>, DomainError> {
    let live = [ProfileStatus::Prospect, ProfileStatus::Active];
    let total = store::profiles::count(store.db(), tenant, &live, Some(ProfileKind::Person)).await?;
    let held = store::identities::held(store.db(), tenant, None).await?;
    let settings = store::settings::get(store.db(), tenant).await?.settings;
    // A model set in configuration is used as it is; otherwise the run
    // estimates one, its version one past the model in force.
    let previous = store::matching::current_model(store.db(), tenant).await?;
    let pinned = previous.as_ref().filter(|m| m.pinned).cloned();
    let mut options = options.clone();
    options.match_attributes.extend(settings.match_attribute_keys.iter().cloned());
    let mut keys = options.match_attributes.clone();
    let junk = Junk::new(&settings.match_blocklist, policy);
    if let Some(model) = &pinned {
        let compared: BTreeSet<String> =
            model.comparisons.iter().filter_map(|c| c.field.attribute_key()).map(str::to_owned).collect();
        if !keys.is_subset(&compared) {
            tracing::warn!(
                asked = ?keys.difference(&compared).collect::<Vec<_>>(),
                "the pinned model decides which attributes are compared; these are not"
            );
        }
        keys = compared;
    }
    // The next page is read and decoded while this one is turned into
    // inputs: reading a tenant is a good part of a run.
    let (pages, mut next) = tokio::sync::mpsc::channel(2);
    let reader = {
        let (store, tenant, attributes) = (store.clone(), tenant.clone(), !keys.is_empty());
        AbortOnDrop(tokio::spawn(async move {
            let mut after = None;
            loop {
                let page = store::profiles::people_to_match(store.db(), &tenant, after, PAGE, attributes).await;
                let more = page.as_ref().is_ok_and(|(_, more)| *more);
                after = page.as_ref().ok().and_then(|(people, _)| people.last().map(|p| p.0));
                if pages.send(page).await.is_err() || !more {
                    return;
                }
            }
        }))
    };
    let mut profiles = Vec::new();
    let mut inputs = Vec::new();
    let mut read = 0;
    // A reader that stopped without saying it was done (it panicked) must
    // not pass for the whole tenant: merges would run on part of it.
    let mut expecting = true;
    while let Some(page) = next.recv().await {
        let (page, more) = page?;
        expecting = more;
        read += page.len() as u64;
        for (id, version, data) in page {
            let mut input = input(&data, policy, &keys, &junk);
            junk.add_held(&mut input, held.get(&id).map_or(&[], Vec::as_slice));
            inputs.push(input);
            profiles.push(Candidate { id, external_ids: data.external_ids, version });
        }
        progress.read(read, total.max(read));
        if cancel.is_cancelled() {
            return Ok(None);
        }
    }
    drop(reader);
    if expecting {
        return Err(DomainError::Internal("reading the tenant's people stopped before the end".into()));
    }
    tracing::info!(profiles = inputs.len(), "profiles read");
    progress.step("matching");
    // The tenant's thresholds (settings), whichever the model.
    let (auto, review) = settings.match_thresholds();
    let thresholds = Thresholds { auto, review };
    // Pairs a steward said are not one person never join a cluster.
    let position: HashMap<ProfileId, u32> = profiles.iter().enumerate().map(|(i, p)| (p.id, i as u32)).collect();
    let apart: HashSet<(u32, u32)> = store::matching::rejected(store.db(), tenant)
        .await?
        .into_iter()
        .filter_map(|(a, b)| {
            let (a, b) = (*position.get(&a)?, *position.get(&b)?);
            Some((a.min(b), a.max(b)))
        })
        .collect();
    let stop = cancel.clone();
    let estimated = pinned.is_none();
    let kept_apart = apart.clone();
    let ran = tokio::task::spawn_blocking(move || run(&inputs, &options, thresholds, pinned, &kept_apart, &stop))
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    let Some((mut model, candidate_pairs, pairs, clusters, frequencies)) = ran else { return Ok(None) };
    if estimated {
        model.version = previous.map_or(1, |m| m.version + 1);
    }
    let found = Found { profiles, model, candidate_pairs, pairs, clusters, apart, frequencies };
    progress.found(&found);
    Ok(Some(found))
}

/// Pairs scored between two looks at the cancel token (split over the cores).
const SCORED_PER_LOOK: usize = 1 << 20;

/// What [`run`] returns: the model, how many candidate pairs were compared,
/// the pairs kept, the clusters and the values' frequencies.
pub type Ran = (Model, usize, Vec<Pair>, Vec<Vec<u32>>, Frequencies);

/// The pure part of a run, over prepared inputs: with `given` (a pinned
/// model), scored with it as it is; otherwise with a model estimated from
/// the inputs. No cluster joins a pair of `apart` (indices into `inputs`,
/// smaller first). `None` when `cancel` stopped it first.
pub fn run(
    inputs: &[Input],
    options: &Options,
    thresholds: Thresholds,
    given: Option<Model>,
    apart: &HashSet<(u32, u32)>,
    cancel: &CancellationToken,
) -> Option<Ran> {
    let started = std::time::Instant::now();
    let records: Vec<Record> =
        c360_matching::per_core(inputs, |part| part.iter().map(Record::prepare).collect::<Vec<_>>())
            .into_iter()
            .flatten()
            .collect();
    let rules = Rule::defaults();
    let mut model = match given {
        Some(model) => model,
        None => estimate(&records, options, cancel)?,
    };
    model.thresholds = thresholds;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "model ready");
    let frequencies = Frequencies::count(&model, &records);
    // Scoring reads both records of tens of millions of pairs, most of them
    // of one town or postal code: laid out (copied, strings and all) in
    // that order, a pair's records are mostly near each other in memory,
    // where in id order nearly every pair waited on memory twice.
    let mut order: Vec<u32> = (0..records.len() as u32).collect();
    order.sort_by_cached_key(|&i| {
        let record = &records[i as usize];
        (term(&record.city), term(&record.postcode), term(&record.family), i)
    });
    let laid: Vec<Record> =
        c360_matching::per_core(&order, |part| part.iter().map(|&i| records[i as usize].clone()).collect::<Vec<_>>())
            .into_iter()
            .flatten()
            .collect();
    let mut position = vec![0u32; records.len()];
    for (at, &i) in order.iter().enumerate() {
        position[i as usize] = at as u32;
    }
    drop(records);
    let (all, per_rule) = candidates(&rules, &laid, options.max_block);
    for (rule, found) in per_rule {
        tracing::info!(?rule, pairs = found, "blocking rule");
    }
    tracing::info!(pairs = all.len(), seconds = started.elapsed().as_secs_f64(), "candidate pairs found");
    if cancel.is_cancelled() {
        return None;
    }
    let keep_from = options.keep_from.min(model.thresholds.review);
    let mut pairs: Vec<Pair> = Vec::new();
    for batch in all.chunks(SCORED_PER_LOOK) {
        if cancel.is_cancelled() {
            return None;
        }
        let scored = c360_matching::per_core(batch, |part| {
            let mut gamma = Vec::new();
            let mut kept = Vec::new();
            for &(x, y) in part {
                // Named and scored in id order, as the profiles are listed.
                let (left, right) = (order[x as usize], order[y as usize]);
                let (left, right, a, b) = if left < right {
                    (left, right, &laid[x as usize], &laid[y as usize])
                } else {
                    (right, left, &laid[y as usize], &laid[x as usize])
                };
                model.gamma(a, b, &mut gamma);
                let probability = c360_matching::model::probability(model.weight(&gamma, a, b, Some(&frequencies)));
                if probability >= keep_from {
                    kept.push(Pair { left, right, probability, decision: model.decide(probability) });
                }
            }
            kept
        });
        pairs.extend(scored.into_iter().flatten());
    }
    let candidate_pairs = all.len();
    drop(all);
    tracing::info!(kept = pairs.len(), seconds = started.elapsed().as_secs_f64(), "candidate pairs scored");
    pairs.sort_by(|x, y| y.probability.total_cmp(&x.probability).then((x.left, x.right).cmp(&(y.left, y.right))));
    let scored: Vec<(u32, u32, f64)> = pairs
        .iter()
        .filter(|p| !apart.contains(&(p.left, p.right)))
        .map(|p| (p.left, p.right, p.probability))
        .collect();
    let limits =
        Limits { link: model.thresholds.auto, cohesion: model.thresholds.review, max_size: options.max_cluster };
    let record = |i: u32| &laid[position[i as usize] as usize];
    let clusters = clusters(laid.len(), &scored, limits, |i, j| {
        if apart.contains(&(i.min(j), i.max(j))) {
            0.0
        } else {
            model.probability(record(i), record(j), Some(&frequencies))
        }
    });
    tracing::info!(clusters = clusters.len(), seconds = started.elapsed().as_secs_f64(), "clustered");
    Some((model, candidate_pairs, pairs, clusters, frequencies))
}

/// A model estimated from `records` without labels: `u` from random pairs,
/// `m` by EM over the training rules' pairs. `None` when `cancel` stopped it.
fn estimate(records: &[Record], options: &Options, cancel: &CancellationToken) -> Option<Model> {
    let mut fields = Field::defaults();
    fields.extend(options.match_attributes.iter().cloned().map(Field::Attribute));
    let mut model = Model::new(fields);
    // Splink draws a million pairs whatever the size; a small tenant needs
    // fewer for the same precision.
    let random_pairs = options.random_pairs.min(records.len().saturating_mul(200).max(100_000));
    estimate_u(&mut model, records, random_pairs, 0x0c36_0000);
    if cancel.is_cancelled() {
        return None;
    }
    let training = Rule::training();
    let per_rule: Vec<(Rule, Vec<(u32, u32)>)> =
        training.iter().copied().zip(pairs_per_rule(&training, records, options.max_block)).collect();
    let sessions: Vec<Session<'_>> = per_rule
        .iter()
        .map(|(rule, pairs)| {
            let fixed =
                rule.fields().iter().filter_map(|f| model.comparisons.iter().position(|c| &c.field == f)).collect();
            Session { pairs, fixed }
        })
        .collect();
    estimate_m(&mut model, records, &sessions);
    drop(sessions);
    drop(per_rule);
    if cancel.is_cancelled() {
        return None;
    }
    Some(model)
}

/// Merges each cluster of `found` into its oldest profile through the
/// service (reason AUTO_MATCH), as `caller`, sending the versions read as
/// etags: a profile changed, merged or given an identifier since is not
/// merged on what it was, and its cluster waits for the next run (or a
/// steward). How many clusters merged and how many were refused; `None`
/// when `cancel` stopped it (the merges done stay done).
pub async fn apply(
    profiles: &Profiles,
    caller: &Caller,
    found: &Found,
    progress: &mut dyn Progress,
    cancel: &CancellationToken,
) -> Result<Option<(u64, u64)>, DomainError> {
    progress.step("merging");
    let total = found.clusters.len() as u64;
    let (mut merged, mut refused) = (0, 0);
    for cluster in &found.clusters {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let members = members(found, cluster);
        let ids: Vec<ProfileId> = members.iter().map(|m| m.id).collect();
        let request = MergeRequest {
            target: ids[0].to_string(),
            sources: ids[1..].iter().map(ToString::to_string).collect(),
            reason: Some(MergeReason::AutoMatch),
            etags: members.iter().map(|m| (m.id.to_string(), m.version.to_string())).collect(),
            ..Default::default()
        };
        match profiles.merge(caller, request).await {
            Ok(_) => merged += 1,
            // A profile changed, was merged or took an identifier meanwhile,
            // or the tenant caps merges below the cluster.
            Err(
                error @ (DomainError::Aborted(_)
                | DomainError::InvalidArgument(_)
                | DomainError::StaleEtag { .. }
                | DomainError::FailedPrecondition(_)
                | DomainError::Merged { .. }
                | DomainError::IdentifierConflict { .. }),
            ) => {
                tracing::warn!(%error, "a cluster was not merged");
                refused += 1;
            }
            Err(error) => return Err(error),
        }
        progress.merged(merged, refused, total);
    }
    Ok(Some((merged, refused)))
}

/// Stores the model of `found` as `tenant`'s model in force (unless it is
/// the pinned one in force already) and the pairs
/// left for a steward in the review queue, in one transaction; how many
/// pairs were proposed and how many wait in all.
pub async fn keep(
    store: &Store,
    tenant: &TenantId,
    found: &Found,
    actor: &str,
    progress: &mut dyn Progress,
) -> Result<(usize, u64), DomainError> {
    progress.step("queueing");
    let review = for_review(found);
    let now = chrono::Utc::now();
    // On SQLite a running server's commit in between rolls this back (the
    // transaction read first): tried again, as every writer is.
    store::retry(|| keep_once(store, tenant, found, actor, &review, now)).await?;
    progress.queued(review.len() as u64);
    Ok((review.len(), store::matching::pending(store.db(), tenant).await?))
}

/// [`keep`]'s transaction.
async fn keep_once(
    store: &Store,
    tenant: &TenantId,
    found: &Found,
    actor: &str,
    review: &[(ProfileId, ProfileId, f64)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DomainError> {
    let work = store.begin().await?;
    // A pinned model is in force already, as it was set. An estimated one
    // takes the version after the model in force now: one set by hand while
    // the run went on would otherwise have taken the version it read at
    // the start (and one pinned meanwhile stays in force).
    let mut version = found.model.version;
    let current = store::matching::current_model(work.conn(), tenant).await?;
    if !found.model.pinned && current.as_ref().is_none_or(|m| !m.pinned) {
        version = current.map_or(1, |m| m.version + 1);
        let model = Model { version, ..found.model.clone() };
        if !store::matching::save_model(work.conn(), tenant, &model, actor, now).await? {
            return Err(DomainError::Aborted(format!("model version {version} was stored by another writer")));
        }
    }
    store::matching::propose(work.conn(), tenant, review, version, now).await?;
    let counted = StoredFrequencies {
        model_version: version,
        profiles: found.profiles.len() as i64,
        counted_at: now,
        counts: found.frequencies.encode(),
    };
    store::matching::save_frequencies(work.conn(), tenant, &counted).await?;
    work.commit().await
}

/// A profile's values as the matcher reads them, with its attributes of
/// the keys in `attributes` (text, numbers and booleans; lists and objects
/// are no single value to compare) and without the `junk` it carries.
pub fn input(data: &ProfileData, policy: &NormalizationPolicy, attributes: &BTreeSet<String>, junk: &Junk) -> Input {
    let (mut kept, mut addresses) = (Vec::new(), Vec::new());
    for address in &data.addresses {
        let text = address.lines.join(" ");
        if !junk.address(&text) {
            kept.push(address);
            addresses.push(text);
        }
    }
    let first = kept.first();
    let attribute = |key: &String| {
        let value = match data.attributes.get(key)? {
            serde_json::Value::String(text) => text.clone(),
            value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => value.to_string(),
            _ => return None,
        };
        Some((key.clone(), value))
    };
    Input {
        given_name: data.given_name.clone().unwrap_or_default(),
        family_name: data.family_name.clone().unwrap_or_default(),
        birth_date: data.birth_date.map(|d| d.to_string()).unwrap_or_default(),
        emails: data.emails.iter().map(|e| policy.email_key(&e.address)).filter(|key| !junk.email(key)).collect(),
        phones: data.phones.iter().map(|p| p.number.clone()).filter(|number| !junk.phone(number)).collect(),
        addresses,
        postal_code: first.map(|a| a.postal_code.clone()).unwrap_or_default(),
        locality: first.map(|a| a.locality.clone()).unwrap_or_default(),
        attributes: attributes.iter().filter_map(attribute).collect(),
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
    // A rejected pair stays rejected under whatever its profiles merge into.
    let apart: HashSet<(ProfileId, ProfileId)> =
        found.apart.iter().map(|&(a, b)| (named(a), named(b))).flat_map(|(a, b)| [(a, b), (b, a)]).collect();
    let mut seen = HashSet::new();
    found
        .pairs
        .iter()
        .filter(|p| p.probability >= found.model.thresholds.review)
        .map(|p| (named(p.left), named(p.right), p.probability))
        .filter(|(a, b, _)| a != b && !apart.contains(&(*a, *b)) && seen.insert((*a.min(b), *a.max(b))))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_mapped_attributes_with_one_value_are_matched() {
        let mut data = ProfileData::default();
        for (key, value) in [
            ("national_id", serde_json::json!("AB-123")),
            ("member_no", serde_json::json!(40123)),
            ("verified", serde_json::json!(true)),
            ("tags", serde_json::json!(["a", "b"])),
            ("card", serde_json::json!({"no": 1})),
            ("tier", serde_json::json!("gold")),
        ] {
            data.attributes.insert(key.to_owned(), value);
        }
        let keys: BTreeSet<String> =
            ["national_id", "member_no", "verified", "tags", "card", "absent"].map(str::to_owned).into();
        let input = input(&data, &NormalizationPolicy::default(), &keys, &Junk::default());
        let expected: Vec<(String, String)> = [("member_no", "40123"), ("national_id", "AB-123"), ("verified", "true")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(input.attributes, expected, "unmapped keys, lists and objects left out");
    }

    #[test]
    fn a_rejected_pair_is_not_proposed_again_under_the_profile_it_merged_into() {
        let candidate = |_| Candidate { id: ProfileId::generate(), external_ids: Vec::new(), version: 1 };
        let profiles: Vec<Candidate> = (0..4).map(candidate).collect();
        let pair = |left, right| Pair { left, right, probability: 0.95, decision: Decision::Review };
        let found = Found {
            model: Model::new(Field::defaults()),
            candidate_pairs: 3,
            // 0 and 2 merge in this run; a steward rejected 1 and 2.
            clusters: vec![vec![0, 2]],
            pairs: vec![pair(0, 1), pair(1, 2), pair(1, 3)],
            apart: [(1, 2)].into(),
            frequencies: Frequencies::default(),
            profiles,
        };
        let proposed: Vec<(ProfileId, ProfileId)> = for_review(&found).into_iter().map(|(a, b, _)| (a, b)).collect();
        assert_eq!(proposed, [(found.profiles[1].id, found.profiles[3].id)], "1 stays apart from 0 and 2 together");
    }
}
