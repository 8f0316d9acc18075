//! `c360 dedupe`: finds the duplicate people of a tenant with the matching
//! model (docs/identity-resolution.md) and merges each cluster found at the
//! auto threshold through MergeProfiles (reason AUTO_MATCH), as the system
//! principal `system:dedupe`; `--dry-run` finds and scores, and writes
//! nothing to the database.

use std::{path::PathBuf, time::Instant};

use c360_matching::model::Decision;
use clap::Args;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use crate::{
    auth::Caller,
    config::{DataDirArgs, DatabaseArgs, NormalizationArgs, RedisArgs},
    dedupe::{self, Found, Options},
    domain::{DomainError, ProfileId, TenantId, merge::MergeReason},
    service::{Audit, AuditConfig, MergeRequest, Profiles, Tenants, chain_all},
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

/// Progress on the terminal: a bar while profiles are read, a line per step.
struct Terminal(Option<Progress>);

impl dedupe::Progress for Terminal {
    fn read(&mut self, done: u64, total: u64) {
        let bar = self.0.get_or_insert_with(|| Progress::new("profiles read", total));
        let add = done.saturating_sub(bar.done());
        bar.add(add);
    }

    fn step(&mut self, name: &str) {
        self.0 = None;
        eprintln!("{name}…");
    }
}

/// Runs `c360 dedupe`.
pub async fn run(args: DedupeArgs) -> anyhow::Result<()> {
    let tenant = TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant {e}"))?;
    let policy = args.normalization.policy()?;
    let (cache, stop_cache) = args.redis.writer_cache()?;
    let store = args.database.connect(&args.data.data_dir, 4, cache.clone()).await?;
    store.migrate().await?;
    let options = Options {
        max_block: args.max_block as usize,
        max_cluster: args.max_cluster as usize,
        keep_from: args.export_from.unwrap_or(1.0),
        ..Options::default()
    };
    let started = Instant::now();
    let found = dedupe::find(&store, &tenant, &policy, &options, &mut Terminal(None)).await?;
    let found_in = started.elapsed();
    if args.show_model {
        print!("{}", describe(&found.model));
    }
    if let Some(path) = &args.export_pairs {
        export_pairs(&found, args.source.as_deref(), path)?;
    }
    if let Some(path) = &args.export_clusters {
        export_clusters(&found, args.source.as_deref(), path)?;
    }
    let review = found.pairs.iter().filter(|p| p.decision == Decision::Review).count();
    let clustered: usize = found.clusters.iter().map(Vec::len).sum();
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
    let merged = if args.dry_run {
        None
    } else {
        let merging = Instant::now();
        let outcome = merge_clusters(&store, cache, &tenant, policy, &found).await;
        let took = merging.elapsed();
        let kept = match outcome {
            Ok(_) => keep(&store, &tenant, &found).await.map(Some),
            Err(_) => Ok(None),
        };
        Some((outcome, took, kept))
    };
    if let Err(error) = chain_all(&store).await {
        tracing::warn!(%error, "the merges' audit records are not chained yet; a running server chains them");
    }
    stop_cache.cancel();
    store.close().await?;
    match merged {
        None => println!("dry run: nothing merged"),
        Some((outcome, took, kept)) => {
            let (merged, failed) = outcome?;
            println!("merged {merged} clusters ({failed} refused, see the log) in {:.1}s", took.as_secs_f64());
            if let Some((proposed, pending)) = kept? {
                println!(
                    "model version {} in force; {proposed} pairs proposed for review ({pending} pending in all)",
                    found.model.version
                );
            }
        }
    }
    Ok(())
}

/// Stores the model as the tenant's model in force and the pairs left for
/// a steward in the review queue, in one transaction; how many pairs were
/// proposed and how many wait in all.
async fn keep(store: &Store, tenant: &TenantId, found: &Found) -> anyhow::Result<(usize, u64)> {
    let review = dedupe::for_review(found);
    let now = chrono::Utc::now();
    let work = store.begin().await?;
    store::matching::save_model(work.conn(), tenant, &found.model, "system:dedupe", now).await?;
    store::matching::propose(work.conn(), tenant, &review, found.model.version, now).await?;
    work.commit().await?;
    Ok((review.len(), store::matching::pending(store.db(), tenant).await?))
}

/// Merges each cluster into its oldest profile (the smallest id: ids are
/// time-ordered) through the service, as `system:dedupe`; how many merged,
/// how many were refused (a profile changed or merged meanwhile).
async fn merge_clusters(
    store: &Store,
    cache: crate::cache::ProfileCache,
    tenant: &TenantId,
    policy: crate::domain::identifiers::NormalizationPolicy,
    found: &Found,
) -> anyhow::Result<(u64, u64)> {
    let deployment = store::deployment::get_or_create(store.db()).await?;
    let config = AuditConfig {
        flush_interval: std::time::Duration::from_millis(200),
        buffer: 10_000,
        retention: std::time::Duration::from_secs(400 * 24 * 3600),
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
    let caller = Caller::system(tenant.clone(), "dedupe");
    let mut progress = Progress::new("clusters merged", found.clusters.len() as u64);
    let (mut merged, mut failed) = (0, 0);
    for cluster in &found.clusters {
        let members = dedupe::members(found, cluster);
        let ids: Vec<ProfileId> = members.iter().map(|m| m.id).collect();
        let request = MergeRequest {
            target: ids[0].to_string(),
            sources: ids[1..].iter().map(ToString::to_string).collect(),
            reason: Some(MergeReason::AutoMatch),
            // As read and scored: a profile changed since is not merged.
            etags: members.iter().map(|m| (m.id.to_string(), m.version.to_string())).collect(),
            ..Default::default()
        };
        match profiles.merge(&caller, request).await {
            Ok(_) => merged += 1,
            // A profile changed, was merged or took an identifier meanwhile,
            // or the tenant caps merges below the cluster: this cluster
            // waits for the next run (or a steward).
            Err(
                error @ (DomainError::Aborted(_)
                | DomainError::InvalidArgument(_)
                | DomainError::StaleEtag { .. }
                | DomainError::FailedPrecondition(_)
                | DomainError::Merged { .. }
                | DomainError::IdentifierConflict { .. }),
            ) => {
                tracing::warn!(%error, "a cluster was not merged");
                failed += 1;
            }
            Err(error) => return Err(error.into()),
        }
        progress.add(1);
    }
    stop.cancel();
    let _ = audit_jobs.await;
    Ok((merged, failed))
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
