//! `c360 seed`: bulk-loads generated demo data straight into the database.
//!
//! Batches of profiles and their identifiers are written with multi-row
//! inserts, one transaction per batch, several batches in flight. No domain
//! events are written (a bulk load is not a stream of customer changes) and
//! no running server's cache is told: seed a tenant before serving it.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    time::Instant,
};

use clap::Args;
use futures::{StreamExt, TryStreamExt, stream};

use crate::{
    config::{DataDirArgs, DatabaseArgs},
    domain::{DomainError, TenantId, identifiers::NormalizationPolicy},
    seed::{Generated, Generator, SeedOptions},
    store::{self, Store, db_error},
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
    let store = Store::connect(&args.database.url(&args.data.data_dir)?, args.parallel + 1).await?;
    store.migrate().await?;
    let policy = NormalizationPolicy::default();
    let options = SeedOptions {
        tenant: tenant.clone(),
        seed: args.seed,
        duplicates: args.duplicates,
        organizations: args.organizations,
    };
    let mut generator = Generator::new(options, policy.clone());
    let mut truth = match &args.truth {
        Some(path) => {
            let mut file = BufWriter::new(File::create(path)?);
            writeln!(file, "profile_id_a,profile_id_b,external_id_a,external_id_b")?;
            Some(file)
        }
        None => None,
    };

    let started = Instant::now();
    let (total, batch_size) = (args.profiles, args.batch_size);
    let mut duplicates = 0u64;
    let batches = (0..total.div_ceil(batch_size)).map(|n| {
        let size = batch_size.min(total - n * batch_size);
        let batch: Vec<Generated> = (0..size).map(|_| generator.next_record()).collect();
        for record in &batch {
            if let Some((original, external)) = &record.duplicate_of {
                duplicates += 1;
                if let Some(file) = truth.as_mut() {
                    let own = record.profile.data.external_ids.first();
                    let own = own.map(|x| format!("{}:{}", x.source, x.id)).unwrap_or_default();
                    let line = format!("{original},{},{}:{},{own}", record.profile.id, external.source, external.id);
                    if let Err(e) = writeln!(file, "{line}") {
                        tracing::error!(error = %e, "writing the truth file");
                    }
                }
            }
        }
        batch
    });
    let (store_ref, tenant_ref, policy_ref) = (&store, &tenant, &policy);
    let mut written = 0u64;
    let mut next_report = total / 10;
    stream::iter(batches)
        .map(|batch| async move { write_batch(store_ref, tenant_ref, policy_ref, batch).await })
        .buffer_unordered(args.parallel as usize)
        .map_err(|e| anyhow::anyhow!("writing a batch failed: {e}"))
        .try_for_each(|count| {
            written += count;
            if written >= next_report && written < total {
                eprintln!(
                    "  {written} of {total} profiles ({:.0}/s)",
                    written as f64 / started.elapsed().as_secs_f64()
                );
                next_report += total / 10;
            }
            futures::future::ready(Ok(()))
        })
        .await?;
    if let Some(mut file) = truth {
        file.flush()?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "seeded {total} profiles ({duplicates} near-duplicates) into tenant {tenant} in {elapsed:.1}s ({:.0} profiles/s)",
        total as f64 / elapsed.max(1e-9)
    );
    store.close().await?;
    Ok(())
}

async fn write_batch(
    store: &Store,
    tenant: &TenantId,
    policy: &NormalizationPolicy,
    batch: Vec<Generated>,
) -> Result<u64, DomainError> {
    let profiles: Vec<_> = batch.into_iter().map(|record| record.profile).collect();
    let identities: Vec<_> = profiles
        .iter()
        .flat_map(|profile| profile.data.identity_keys(policy).into_iter().map(|(key, _)| (key, profile.id)))
        .collect();
    let tx = store.begin().await?;
    store::profiles::insert_many(&tx, &profiles).await?;
    // Keep each statement under PostgreSQL's 65,535 bind parameters.
    for chunk in identities.chunks(5000) {
        store::identities::insert_many(&tx, tenant, chunk).await?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(profiles.len() as u64)
}
