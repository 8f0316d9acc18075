//! `c360 dedupe`: finds the duplicate people of a tenant with the matching
//! model (docs/identity-resolution.md) and merges each cluster found at the
//! auto threshold through MergeProfiles (reason AUTO_MATCH), as the system
//! principal `system:dedupe`; `--dry-run` finds and scores, and writes
//! nothing to the database.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use c360_matching::model::Decision;
use clap::Args;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use crate::{
    config::{DataDirArgs, DatabaseArgs, NormalizationArgs, RedisArgs},
    dedupe::{self, Found, Options, Tracker},
    domain::{
        TenantId,
        job::{Job, JobKind, JobOptions, JobProgress, JobState},
        profile::now,
    },
    jobs::{self, Deduplicator, Report},
    service::{Audit, AuditConfig, Profiles, Tenants, chain_all},
    store::{self, Store},
};

/// `c360 dedupe --tenant T [--dry-run] [--export-pairs F.csv] [--export-clusters F.csv]`.
#[derive(Debug, Args)]
pub struct DedupeArgs {
    /// Tenant to deduplicate.
    #[arg(long)]
    tenant: String,
    /// Find and score only: merge nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the scored pairs here (CSV).
    #[arg(long)]
    export_pairs: Option<PathBuf>,
    /// Write the clusters here (CSV).
    #[arg(long)]
    export_clusters: Option<PathBuf>,
    /// Name profiles in the exports by their external id of this source (an imported file's key).
    #[arg(long)]
    source: Option<String>,
    /// Export pairs from this match probability up (default: the review threshold).
    #[arg(long, value_parser = probability)]
    export_from: Option<f64>,
    /// Print the model estimated (every field's levels with m, u and weight).
    #[arg(long)]
    show_model: bool,
    /// Blocks with more profiles than this make no pairs.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(2..=100_000))]
    max_block: u64,
    /// Most profiles one automatic merge may join.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=20))]
    max_cluster: u64,
    /// Compare this attribute too, besides the tenant's match_attribute_keys (repeatable): a national id, a loyalty number.
    #[arg(long = "match-attribute", value_name = "KEY", value_parser = attribute_key)]
    match_attributes: Vec<String>,
    #[command(flatten)]
    normalization: NormalizationArgs,
    #[command(flatten)]
    data: DataDirArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    redis: RedisArgs,
}

fn probability(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{raw:?} is not a probability between 0 and 1")),
    }
}

fn attribute_key(raw: &str) -> Result<String, String> {
    crate::domain::profile::limits::attribute_key(raw)?;
    Ok(raw.to_owned())
}

/// How long the command's hold on its job lasts unless renewed.
const LEASE: Duration = Duration::from_secs(30);

/// Progress on the terminal (a bar while profiles are read and while
/// clusters merge, a line per step), kept for the job's row too.
struct Terminal {
    bar: Option<Progress>,
    tracker: Tracker,
    started: Instant,
    /// How long finding took.
    found_in: Option<Duration>,
}

impl dedupe::Progress for Terminal {
    fn read(&mut self, done: u64, total: u64) {
        let bar = self.bar.get_or_insert_with(|| Progress::new("profiles read", total));
        let add = done.saturating_sub(bar.done());
        bar.add(add);
        self.tracker.read(done, total);
    }

    fn step(&mut self, name: &str) {
        self.bar = None;
        if name != "done" {
            eprintln!("{name}…");
        }
        self.tracker.step(name);
    }

    fn found(&mut self, found: &Found) {
        self.found_in = Some(self.started.elapsed());
        self.tracker.found(found);
    }

    fn merged(&mut self, merged: u64, refused: u64, total: u64) {
        let bar = self.bar.get_or_insert_with(|| Progress::new("clusters merged", total));
        let add = (merged + refused).saturating_sub(bar.done());
        bar.add(add);
        self.tracker.merged(merged, refused, total);
    }

    fn queued(&mut self, pairs: u64) {
        self.tracker.queued(pairs);
    }
}

/// Runs `c360 dedupe`.
pub async fn run(args: DedupeArgs) -> anyhow::Result<()> {
    let tenant = TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant {e}"))?;
    let most = crate::domain::settings::MAX_MATCH_KEYS;
    if args.match_attributes.len() > most {
        anyhow::bail!("--match-attribute: at most {most} keys");
    }
    let policy = args.normalization.policy()?;
    let (cache, stop_cache) = args.redis.writer_cache()?;
    let store = args.database.connect(&args.data.data_dir, 4, cache.clone()).await?;
    let options = Options {
        max_block: args.max_block as usize,
        max_cluster: args.max_cluster as usize,
        keep_from: args.export_from.unwrap_or(1.0),
        ..Options::default()
    };
    let prepared = match store.migrate().await {
        Ok(()) => profiles_service(&store, cache, policy.clone()).await,
        Err(error) => Err(error.into()),
    };
    let (profiles, audit) = match prepared {
        Ok(service) => service,
        Err(error) => {
            stop_cache.cancel();
            let _ = store.close().await;
            return Err(error);
        }
    };
    let deduplicator = Deduplicator::new(store.clone(), profiles, policy, options);
    // Ctrl-C stops the run between two steps (merges made stay made).
    let cancel = CancellationToken::new();
    let interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping…");
            interrupt.cancel();
        }
    });
    let mut terminal = Terminal { bar: None, tracker: Tracker::default(), started: Instant::now(), found_in: None };
    let limits = JobOptions {
        dry_run: args.dry_run,
        max_block: Some(args.max_block as u32),
        max_cluster: Some(args.max_cluster as u32),
        match_attributes: args.match_attributes.clone(),
    };
    // Whatever happens, the audit records of merges made are written and
    // the pool closed before the command says how it went.
    let outcome: anyhow::Result<Option<Report>> = if args.dry_run {
        // A dry run writes nothing, not even a job: it may run beside a job.
        deduplicator.run(&tenant, &limits, &mut terminal, &cancel).await.map_err(Into::into)
    } else {
        as_job(&store, &deduplicator, &tenant, limits, &mut terminal, &cancel).await
    };
    audit.0.cancel();
    let _ = audit.1.await;
    if let Err(error) = chain_all(&store).await {
        tracing::warn!(%error, "the merges' audit records are not chained yet; a running server chains them");
    }
    stop_cache.cancel();
    store.close().await?;
    let Some(report) = outcome? else {
        anyhow::bail!("stopped before the end (merges made stay made; each is undone with UnmergeProfile)");
    };
    let found = &report.found;
    if args.show_model {
        print!("{}", describe(&found.model));
    }
    if let Some(path) = &args.export_pairs {
        export_pairs(found, args.source.as_deref(), path)?;
    }
    if let Some(path) = &args.export_clusters {
        export_clusters(found, args.source.as_deref(), path)?;
    }
    let review = found.pairs.iter().filter(|p| p.decision == Decision::Review).count();
    let clustered: usize = found.clusters.iter().map(Vec::len).sum();
    let found_in = terminal.found_in.unwrap_or_default();
    println!(
        "tenant {tenant}: {} people, {} candidate pairs, {} clusters of {clustered} profiles at or above {}, \
         {review} pairs for review (model version {}; found in {:.1}s)",
        found.profiles.len(),
        found.candidate_pairs,
        found.clusters.len(),
        found.model.thresholds.auto,
        found.model.version,
        found_in.as_secs_f64(),
    );
    match (report.merged, report.queued) {
        (Some((merged, refused)), Some((proposed, pending))) => {
            let took = terminal.started.elapsed().saturating_sub(found_in);
            println!("merged {merged} clusters ({refused} refused, see the log) in {:.1}s", took.as_secs_f64());
            println!(
                "model version {} in force; {proposed} pairs proposed for review ({pending} pending in all)",
                found.model.version
            );
        }
        _ => println!("dry run: nothing merged"),
    }
    Ok(())
}

/// Runs the deduplication as a job of its own, held by this command: a
/// job started through the API (or another command) for the tenant is not
/// run at the same time, and `GetJob` shows this one's progress.
async fn as_job(
    store: &Store,
    deduplicator: &Deduplicator,
    tenant: &TenantId,
    options: JobOptions,
    terminal: &mut Terminal,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<Report>> {
    let owner = format!("command:dedupe:{}", uuid::Uuid::now_v7());
    let at = now();
    let lease = chrono::Duration::from_std(LEASE)?;
    // A queued run, or one whose owner stopped without a word (a killed
    // command, a lost instance): this command runs it, as a server would.
    let active = store::jobs::active(store.db(), tenant, JobKind::Deduplication).await?;
    if let Some(active) = active
        && let Some(job) = store::jobs::claim(store.db(), active.id, &owner, at, at + lease).await?
    {
        if !job.options.dry_run {
            let was = if active.state == JobState::Queued { "queued" } else { "left by a stopped owner" };
            eprintln!("job {} ({was}; GetJob shows its progress; CancelJob stops it)", job.id);
            return run_job(store, deduplicator, tenant, terminal, cancel, job, &owner).await;
        }
        // A dry run asked through the API writes nothing a merging run
        // would not: this run takes its place.
        let note = "replaced by a c360 dedupe run before it ran to the end";
        let progress = JobProgress::default();
        store::jobs::finish(store.db(), job.id, &owner, JobState::Cancelled, &progress, Some(note), at).await?;
        eprintln!("job {} (a dry run, queued or left by a stopped owner) cancelled: this run replaces it", job.id);
    }
    let job = Job {
        id: uuid::Uuid::now_v7(),
        tenant: tenant.clone(),
        kind: JobKind::Deduplication,
        state: JobState::Running,
        options,
        requested_by: "system:dedupe".to_owned(),
        created_at: at,
        started_at: Some(at),
        finished_at: None,
        owner: Some(owner.clone()),
        cancel_requested: false,
        progress: JobProgress::default(),
        error: None,
    };
    store::jobs::insert(store.db(), &job, Some(at + lease)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("job {} (GetJob shows its progress; CancelJob stops it)", job.id);
    run_job(store, deduplicator, tenant, terminal, cancel, job, &owner).await
}

/// Runs `job`, which `owner` holds, renewing its lease, and records how it ended.
async fn run_job(
    store: &Store,
    deduplicator: &Deduplicator,
    tenant: &TenantId,
    terminal: &mut Terminal,
    cancel: &CancellationToken,
    job: Job,
    owner: &str,
) -> anyhow::Result<Option<Report>> {
    let tracker = terminal.tracker.clone();
    // As the job was asked (a queued job's limits are its own).
    let work = deduplicator.run(tenant, &job.options, terminal, cancel);
    let (outcome, held) = jobs::hold(store, job.id, owner, LEASE, &tracker, cancel, work).await;
    if held.lost {
        anyhow::bail!("another instance took job {} over (this command stalled past its lease)", job.id);
    }
    let (state, error) = match &outcome {
        Ok(Some(_)) => (JobState::Succeeded, None),
        Ok(None) => (JobState::Cancelled, None),
        Err(error) => (JobState::Failed, Some(error.to_string())),
    };
    store::jobs::finish(store.db(), job.id, owner, state, &tracker.snapshot(), error.as_deref(), now()).await?;
    Ok(outcome?)
}

/// The profile service the merges go through, with an audit trail of its
/// own; stopping the token and awaiting the task writes its last records.
async fn profiles_service(
    store: &Store,
    cache: crate::cache::ProfileCache,
    policy: crate::domain::identifiers::NormalizationPolicy,
) -> anyhow::Result<(Profiles, (CancellationToken, tokio::task::JoinHandle<()>))> {
    let deployment = store::deployment::get_or_create(store.db()).await?;
    let config = AuditConfig {
        flush_interval: Duration::from_millis(200),
        buffer: 10_000,
        retention: Duration::from_secs(400 * 24 * 3600),
    };
    let (audit, jobs) = Audit::new(store.clone(), config, deployment.page_tokens.clone());
    let stop = CancellationToken::new();
    let audit_jobs = tokio::spawn(jobs.run(stop.clone()));
    let profiles = Profiles::new(
        store.clone(),
        store.profile_loader(Counter::default()),
        cache,
        policy,
        Tenants::new(store.clone()),
        audit,
        deployment.page_tokens,
    );
    Ok((profiles, (stop, audit_jobs)))
}

/// The model as a table: each field's levels with m, u and weight.
pub fn describe(model: &c360_matching::model::Model) -> String {
    let mut out = format!(
        "model version {}: prior {:.3e} (weight {:+.2}), auto at {}, review at {}\n",
        model.version,
        model.prior,
        model.prior_weight(),
        model.thresholds.auto,
        model.thresholds.review
    );
    if model.pinned {
        out.push_str("  pinned: set in configuration, every run scores with it as it is\n");
    }
    for (i, comparison) in model.comparisons.iter().enumerate() {
        out.push_str(&format!("  {}\n", comparison.field.name()));
        for (l, level) in comparison.levels.iter().enumerate() {
            out.push_str(&format!(
                "    {:<28} m {:.4}  u {:.6}  weight {:+.2}\n",
                level.label,
                level.m,
                level.u,
                model.level_weight(i, l as u8)
            ));
        }
    }
    out
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Match => "MATCH",
        Decision::Review => "REVIEW",
        Decision::NonMatch => "NON_MATCH",
    }
}

fn export_pairs(found: &Found, source: Option<&str>, path: &std::path::Path) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_path(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    out.write_record(["left", "right", "left_profile_id", "right_profile_id", "probability", "decision"])?;
    for pair in &found.pairs {
        let (a, b) = (&found.profiles[pair.left as usize], &found.profiles[pair.right as usize]);
        out.write_record([
            dedupe::name_of(a, source),
            dedupe::name_of(b, source),
            a.id.to_string(),
            b.id.to_string(),
            format!("{:.6}", pair.probability),
            decision_name(pair.decision).to_owned(),
        ])?;
    }
    out.flush()?;
    Ok(())
}

fn export_clusters(found: &Found, source: Option<&str>, path: &std::path::Path) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_path(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    out.write_record(["cluster", "name", "profile_id", "confidence"])?;
    let confidence = dedupe::cluster_confidence(found);
    for (c, members) in found.clusters.iter().enumerate() {
        for &m in members {
            let profile = &found.profiles[m as usize];
            out.write_record([
                (c + 1).to_string(),
                dedupe::name_of(profile, source),
                profile.id.to_string(),
                format!("{:.6}", confidence[c]),
            ])?;
        }
    }
    out.flush()?;
    Ok(())
}
