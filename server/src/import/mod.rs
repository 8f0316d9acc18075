//! Importing customer records from a legacy system's CSV export
//! (docs/import.md).
//!
//! [`read`] decodes the file, [`mapping`] turns each row into a validated
//! profile as an RPC's input would be, and [`write`] loads batches of them,
//! several at once, each through one unit of work like every other write.
//! Each row's key becomes an external id of the import's source and is
//! remembered with a fingerprint of the row (`import_rows`), so that loading
//! the same file again changes nothing and a changed row updates its profile.

pub mod mapping;
mod read;
pub mod write;

use std::{collections::HashMap, io::Read, time::Instant};

use futures::{StreamExt, TryStreamExt, stream};

pub use mapping::{DateOrder, Encoding, MappingFile, Plan, Prepared, Rejected};
pub use write::{Issue, Noted};

use crate::{
    domain::{TenantId, identifiers::NormalizationPolicy},
    store::{self, Store},
};

/// What to import, and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Tenant to load into.
    pub tenant: TenantId,
    /// The normalized source name: rows' keys become its external ids.
    pub source: String,
    /// The mapping (empty: recognized column names only).
    pub mapping: MappingFile,
    /// Mark INACTIVE the profiles of rows that disappeared from the file.
    pub delete_missing: bool,
    /// Rows per transaction.
    pub batch_size: usize,
    /// Transactions at once.
    pub parallel: usize,
    /// Identifier normalization (the deployment's).
    pub policy: NormalizationPolicy,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Data rows read (the header not counted).
    pub read: u64,
    /// Rows that created a profile.
    pub created: u64,
    /// Rows that changed their profile.
    pub updated: u64,
    /// Rows that changed nothing.
    pub unchanged: u64,
    /// Rows refused, with the reason and their cells.
    pub rejected: Vec<(Rejected, Vec<String>)>,
    /// Loaded rows' issues and rows missing from the file.
    pub noted: Vec<Noted>,
    /// The file's columns.
    pub headers: Vec<String>,
    /// Seconds the rows took (the missing-row pass not counted).
    pub seconds: f64,
    /// Why the import stopped before the end, if it did (the batches
    /// written before stay written).
    pub failed: Option<String>,
    /// Why `--delete-missing` deactivated nothing, if it was asked.
    pub delete_missing_skipped: Option<String>,
}

impl Summary {
    /// Rows missing from the file, and of those how many were deactivated.
    pub fn missing(&self) -> (usize, usize) {
        let missing = self.noted.iter().filter_map(|n| match n.issue {
            Issue::Missing { deactivated, .. } => Some(deactivated),
            _ => None,
        });
        missing.fold((0, 0), |(all, gone), deactivated| (all + 1, gone + usize::from(deactivated)))
    }
}

/// Imports `input` under `options` into `store`, counting rows on
/// `progress` (called with the rows done so far).
pub async fn import(
    store: &Store,
    options: &ImportOptions,
    input: impl Read + Send + 'static,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Summary> {
    let mapping = &options.mapping;
    let delimiter = match mapping.delimiter.as_deref() {
        None => None,
        Some("tab" | "\\t" | "\t") => Some(b'\t'),
        Some(d) if d.len() == 1 => Some(d.as_bytes()[0]),
        Some(d) => anyhow::bail!("delimiter '{d}': one ASCII character, or \"tab\""),
    };
    let mut records = read::Records::open(input, mapping.encoding.unwrap_or_default(), delimiter)?;
    let plan = Plan::new(&options.source, records.headers(), mapping)?;
    tracing::info!(columns = %plan.describe().join("; "), "importing");
    let loader =
        write::Loader::new(store.clone(), options.tenant.clone(), options.source.clone(), options.policy.clone());
    let started = Instant::now();

    let mut summary = Summary { headers: plan.headers().to_vec(), ..Summary::default() };
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut failure: Option<anyhow::Error> = None;
    let batch_size = options.batch_size.max(1);
    let (read, rejected) = (&mut summary.read, &mut summary.rejected);
    let batches = std::iter::from_fn(|| {
        let mut batch = Vec::with_capacity(batch_size);
        while batch.len() < batch_size && failure.is_none() {
            let (line, cells, not_text) = match records.next_record() {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            *read += 1;
            let borrowed: Vec<&str> = cells.iter().map(String::as_str).collect();
            if let Some(reason) = not_text {
                let key = plan.key_of(&borrowed);
                if let Some(key) = &key {
                    seen.entry(key.clone()).or_insert(line);
                }
                rejected.push((Rejected { line, key, reason: format!("the row {reason}") }, cells));
                continue;
            }
            match plan.prepare(line, &borrowed, &options.policy) {
                Ok(row) => match seen.get(&row.key) {
                    Some(first) => {
                        let reason = format!("key '{}' appeared already on line {first}", row.key);
                        rejected.push((Rejected { line, key: Some(row.key), reason }, cells));
                    }
                    None => {
                        seen.insert(row.key.clone(), line);
                        batch.push(row);
                    }
                },
                Err(refused) => {
                    // Still in the file: not "missing", whatever is wrong with it.
                    if let Some(key) = &refused.key {
                        seen.entry(key.clone()).or_insert(line);
                    }
                    rejected.push((refused, cells));
                }
            }
        }
        (!batch.is_empty()).then_some(batch)
    });
    let mut loaded = Vec::new();
    let mut done = 0u64;
    let written = stream::iter(batches)
        .map(|batch| {
            // A task per batch: its queries are built and its answers read
            // on another core than the one reading and checking the file.
            let loader = loader.clone();
            let task =
                tokio::spawn(async move { loader.load(&batch).await.map(|outcome| (batch.len() as u64, outcome)) });
            async move {
                task.await.unwrap_or_else(|e| Err(crate::domain::DomainError::Internal(format!("import task: {e}"))))
            }
        })
        .buffer_unordered(options.parallel.max(1))
        .map_err(|e| anyhow::anyhow!("loading a batch failed: {e}"))
        .try_for_each(|(rows, outcome)| {
            done += rows;
            progress(done);
            loaded.push(outcome);
            futures::future::ready(Ok(()))
        })
        .await;
    let mut contacts = Vec::new();
    for outcome in loaded {
        summary.created += outcome.created;
        summary.updated += outcome.updated;
        summary.unchanged += outcome.unchanged;
        summary.noted.extend(outcome.noted);
        contacts.extend(outcome.contacts);
    }
    // What was written stays written (each batch committed whole): the
    // caller still gets the rejected rows and the report of what was loaded.
    if let Err(error) = written.and(failure.map_or(Ok(()), |e| Err(e.context("reading the file")))) {
        summary.failed = Some(format!("{error:#}"));
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    if let Err(error) = store.analyze_after_bulk_load().await {
        tracing::warn!(%error, "could not refresh the planner's statistics after the import");
    }
    summary.noted.extend(loader.link_contacts(&contacts).await?);
    summary.seconds = started.elapsed().as_secs_f64();

    let earlier = store::imports::keys(store.db(), &options.tenant, &options.source).await?;
    let missing: Vec<(String, _)> = earlier.into_iter().filter(|(key, _)| !seen.contains_key(key)).collect();
    // Deactivating is for a file known whole: a rejected row may be one
    // whose key could not be read, an empty file one truncated by accident.
    let deactivate = options.delete_missing && summary.rejected.is_empty() && summary.read > 0;
    if options.delete_missing && !deactivate && !missing.is_empty() {
        summary.delete_missing_skipped = Some(if summary.read == 0 {
            "the file holds no rows".to_owned()
        } else {
            format!("{} rows were rejected: fix them and import again", summary.rejected.len())
        });
    }
    summary.noted.extend(loader.missing(&missing, deactivate).await?);
    loader.audit_run(&summary).await?;
    Ok(summary)
}
