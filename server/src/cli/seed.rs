//! `c360 seed`: bulk-loads generated demo data straight into the database.
//!
//! Batches of profiles and their identifiers, then of interactions, are
//! written with multi-row inserts, one unit of work per batch, several batches
//! in flight. No domain events are written (demo data is not a stream of
//! customer changes). With `--redis-url`, each batch invalidates the running
//! instances' caches when it commits, as an RPC's write does (an instance may
//! have cached "no such profile" for an id or address the seed then
//! creates); without Redis no other process can be told, so seed a tenant
//! before serving it from the embedded in-process cache.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::Args;
use futures::{StreamExt, TryStreamExt, stream};

use super::progress::Progress;
use crate::{
    auth::Caller,
    cache::CacheChange,
    config::{DataDirArgs, DatabaseArgs, RedisArgs},
    domain::{DomainError, TenantId, identifiers::NormalizationPolicy, interaction::Interaction},
    seed::{
        Generated, Generator, SeedOptions,
        events::{EventGenerator, EventTarget},
    },
    service::{audit_bulk, chain_all},
    store::{self, Store},
};

/// Arguments of `c360 seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Tenant to fill.
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Number of profiles to write.
    #[arg(long, default_value_t = 1000)]
    profiles: u64,
    /// Number of interactions (purchases, support cases, page views, …) to
    /// spread over the profiles; a few customers get long histories.
    #[arg(long, default_value_t = 0)]
    events: u64,
    /// Share of profiles that are near-duplicates of an earlier person (0–1).
    #[arg(long, default_value_t = 0.1)]
    duplicates: f64,
    /// Share of profiles that are organizations (0–1).
    #[arg(long, default_value_t = 0.1)]
    organizations: f64,
    /// Seed of the generator: the same seed writes the same data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the true duplicate pairs to this CSV file.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Profiles per insert statement and transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=2000))]
    batch_size: u64,
    /// Batches written at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    parallel: u32,
    #[command(flatten)]
    data: DataDirArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    redis: RedisArgs,
}

/// Runs `c360 seed`.
pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    let tenant = TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant {e}"))?;
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.duplicates)
            && (0.0..=1.0).contains(&args.organizations)
            && args.duplicates + args.organizations <= 1.0,
        "--duplicates and --organizations are shares from 0 to 1 that add up to at most 1"
    );
    anyhow::ensure!(args.events == 0 || args.profiles > 0, "--events needs profiles to happen to (--profiles > 0)");
    let (cache, stop_cache) = args.redis.writer_cache()?;
    let store = args.database.connect(&args.data.data_dir, args.parallel + 1, cache.clone()).await?;
    store.migrate().await?;
    let plan = Plan {
        options: SeedOptions {
            tenant: tenant.clone(),
            seed: args.seed,
            duplicates: args.duplicates,
            organizations: args.organizations,
        },
        profiles: args.profiles,
        events: args.events,
        batch_size: args.batch_size,
        parallel: args.parallel as usize,
    };
    let mut truth = match &args.truth {
        Some(path) => Some(BufWriter::new(File::create(path)?)),
        None => None,
    };
    let loaded =
        load(&store, &NormalizationPolicy::default(), &plan, truth.as_mut().map(|f| f as &mut dyn Write)).await;
    // Every committed batch returned only once the running instances dropped
    // their copies, or left a hold that any of them pays (cache::peers).
    // Running servers chain these too; chaining here leaves none waiting.
    if let Err(error) = chain_all(&store).await {
        tracing::warn!(%error, "the seed's audit records are not chained yet; a running server chains them");
    }
    let report = loaded?;
    if let Some(mut file) = truth {
        file.flush()?;
    }
    let Report { profiles, duplicates, events, profiles_elapsed, events_elapsed } = report;
    let rate = |count: u64, elapsed: Duration| count as f64 / elapsed.as_secs_f64().max(1e-9);
    print!(
        "seeded {profiles} profiles ({duplicates} near-duplicates) into tenant {tenant} in {:.1}s ({:.0}/s)",
        profiles_elapsed.as_secs_f64(),
        rate(profiles, profiles_elapsed)
    );
    if events > 0 {
        print!(
            ", then {events} events in {:.1}s ({:.0}/s)",
            events_elapsed.as_secs_f64(),
            rate(events, events_elapsed)
        );
    }
    println!();
    stop_cache.cancel();
    store.close().await?;
    Ok(())
}

/// What [`load`] writes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Tenant, seed and shares of the generated profiles.
    pub options: SeedOptions,
    /// Profiles to write.
    pub profiles: u64,
    /// Interactions to write, spread over those profiles.
    pub events: u64,
    /// Profiles per insert statement and transaction (events: five times as many).
    pub batch_size: u64,
    /// Batches written at once.
    pub parallel: usize,
}

/// What [`load`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Profiles written.
    pub profiles: u64,
    /// Of which near-duplicates of an earlier person.
    pub duplicates: u64,
    /// Interactions written.
    pub events: u64,
    /// Time taken by the profiles and their identifiers.
    pub profiles_elapsed: Duration,
    /// Time taken by the interactions.
    pub events_elapsed: Duration,
}

/// Writes the generated profiles, their identifiers and then their events,
/// in batched multi-row inserts, `plan.parallel` transactions at a time.
/// With `truth`, writes the true duplicate pairs there as CSV.
pub async fn load(
    store: &Store,
    policy: &NormalizationPolicy,
    plan: &Plan,
    mut truth: Option<&mut dyn Write>,
) -> anyhow::Result<Report> {
    let tenant = &plan.options.tenant;
    // Generated identifiers follow the record's index, so a second load
    // would collide with the first one's half-way through.
    anyhow::ensure!(
        !store::profiles::tenant_has_profiles(store.db(), tenant).await?,
        "tenant '{tenant}' already holds profiles: seed an empty tenant (--tenant NAME)"
    );
    let mut generator = Generator::new(plan.options.clone(), policy.clone());
    if let Some(file) = truth.as_mut() {
        writeln!(file, "profile_id_a,profile_id_b,external_id_a,external_id_b,evidence")?;
    }
    let started = Instant::now();
    let (total, batch_size) = (plan.profiles, plan.batch_size.max(1));
    let mut duplicates = 0u64;
    let mut targets = Vec::with_capacity(if plan.events > 0 { total as usize } else { 0 });
    let batches = (0..total.div_ceil(batch_size)).map(|n| {
        let size = batch_size.min(total - n * batch_size);
        let batch: Vec<Generated> = (0..size).map(|_| generator.next_record()).collect();
        for record in &batch {
            if plan.events > 0 {
                targets.push(EventTarget::from(&record.profile));
            }
            if let Some((original, external)) = &record.duplicate_of {
                duplicates += 1;
                if let Some(file) = truth.as_mut() {
                    let own = record.profile.data.external_ids.first();
                    let own = own.map(|x| format!("{}:{}", x.source, x.id)).unwrap_or_default();
                    let line = format!(
                        "{original},{},{}:{},{own},{}",
                        record.profile.id, external.source, external.id, record.evidence
                    );
                    if let Err(e) = writeln!(file, "{line}") {
                        tracing::error!(error = %e, "writing the truth file");
                    }
                }
            }
        }
        batch
    });
    write_all("profiles", total, plan.parallel, batches, |batch| write_profiles(store, tenant, policy, batch)).await?;

    let mut generator = EventGenerator::new(tenant.clone(), plan.options.seed, targets);
    let event_batch = batch_size * 5;
    let batches = (0..plan.events.div_ceil(event_batch)).map(|n| {
        let size = event_batch.min(plan.events - n * event_batch);
        (0..size).map_while(|_| generator.next_event()).collect::<Vec<_>>()
    });
    let profiles_elapsed = started.elapsed();
    let events = write_all("events", plan.events, plan.parallel, batches, |batch| write_events(store, batch)).await?;
    let events_elapsed = started.elapsed() - profiles_elapsed;
    Ok(Report { profiles: total, duplicates, events, profiles_elapsed, events_elapsed })
}

/// Writes `batches` with `write`, `parallel` at a time, showing progress
/// towards `total` rows; returns the rows written.
async fn write_all<B, F, Fut>(
    what: &'static str,
    total: u64,
    parallel: usize,
    batches: impl Iterator<Item = B>,
    write: F,
) -> anyhow::Result<u64>
where
    F: FnMut(B) -> Fut,
    Fut: Future<Output = Result<u64, DomainError>>,
{
    let mut progress = Progress::new(what, total);
    stream::iter(batches)
        .map(write)
        .buffer_unordered(parallel.max(1))
        .map_err(|e| anyhow::anyhow!("writing a batch of {what} failed: {e}"))
        .try_for_each(|count| {
            progress.add(count);
            futures::future::ready(Ok(()))
        })
        .await?;
    Ok(progress.done())
}

async fn write_profiles(
    store: &Store,
    tenant: &TenantId,
    policy: &NormalizationPolicy,
    batch: Vec<Generated>,
) -> Result<u64, DomainError> {
    let held: Vec<_> = batch
        .iter()
        .flat_map(|record| {
            record.held.iter().map(|(key, holder)| store::identities::Held {
                profile: record.profile.id,
                key: key.clone(),
                holder: *holder,
            })
        })
        .collect();
    let profiles: Vec<_> = batch.into_iter().map(|record| record.profile).collect();
    let mut identities = Vec::new();
    let mut changes = Vec::with_capacity(profiles.len());
    for profile in &profiles {
        let keys: Vec<_> = profile.data.identity_keys(policy).into_iter().map(|(key, _)| key).collect();
        identities.extend(keys.iter().map(|key| (key.clone(), profile.id)));
        changes.push(CacheChange {
            tenant: tenant.clone(),
            id: profile.id,
            version: profile.version,
            identifiers: keys,
        });
    }
    let mut work = store.begin().await?;
    store::profiles::insert_many(work.conn(), &profiles).await?;
    store::identities::insert_many(work.conn(), tenant, &identities).await?;
    let at = profiles.first().map_or_else(chrono::Utc::now, |p| p.created_at);
    store::identities::record_held(work.conn(), tenant, "seed", &held, at).await?;
    for change in changes {
        work.invalidate(change);
    }
    let ids: Vec<String> = profiles.iter().map(|p| p.id.to_string()).collect();
    audit_bulk(&mut work, &Caller::system(tenant.clone(), "seed"), "profile.create", ids, profiles.len());
    work.commit().await?;
    Ok(profiles.len() as u64)
}

async fn write_events(store: &Store, batch: Vec<Interaction>) -> Result<u64, DomainError> {
    let mut work = store.begin().await?;
    store::events::insert_many(work.conn(), &batch).await?;
    if let Some(first) = batch.first() {
        let mut customers: Vec<String> = batch.iter().map(|e| e.profile_id.to_string()).collect();
        customers.sort();
        customers.dedup();
        let seed = Caller::system(first.tenant.clone(), "seed");
        audit_bulk(&mut work, &seed, "interaction.create", customers, batch.len());
    }
    work.commit().await?;
    Ok(batch.len() as u64)
}
