//! `c360 import`: loads customer records from a legacy system's CSV export
//! (docs/import.md), as the system principal `system:import`.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use clap::Args;

use super::progress::Progress;
use crate::{
    config::{DataDirArgs, DatabaseArgs, NormalizationArgs, RedisArgs},
    domain::{TenantId, identifiers::normalize_source},
    import::{DateOrder, Encoding, ImportOptions, Issue, MappingFile, Summary, import},
    service::chain_all,
};

/// `c360 import --tenant T --file F.csv --source NAME [--mapping M.toml]`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Tenant to load into.
    #[arg(long)]
    tenant: String,
    /// The CSV file.
    #[arg(long)]
    file: PathBuf,
    /// The system the file comes from: each row's key becomes an external id of this source.
    #[arg(long)]
    source: String,
    /// A mapping file (TOML) naming the key column and where other columns go.
    #[arg(long)]
    mapping: Option<PathBuf>,
    /// The file's encoding (overrides the mapping's).
    #[arg(long, value_enum)]
    encoding: Option<Encoding>,
    /// The field delimiter, one character or "tab" (overrides the mapping's; sniffed otherwise).
    #[arg(long)]
    delimiter: Option<String>,
    /// How dates with separators are written (overrides the mapping's).
    #[arg(long, value_enum)]
    date_order: Option<DateOrder>,
    /// Mark INACTIVE the profiles of rows an earlier import of this source loaded and this file lacks.
    #[arg(long)]
    delete_missing: bool,
    /// Where rejected rows go, with line and reason (default: the file's name + `.errors.csv`).
    #[arg(long)]
    errors: Option<PathBuf>,
    /// Where the report goes: identifiers left out, rows missing (default: the file's name + `.report.csv`).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=5000))]
    batch_size: u64,
    /// Transactions at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    parallel: u32,
    #[command(flatten)]
    normalization: NormalizationArgs,
    #[command(flatten)]
    data: DataDirArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    redis: RedisArgs,
}

/// Runs `c360 import`.
pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let tenant = TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant {e}"))?;
    let source = normalize_source(&args.source).map_err(|e| anyhow::anyhow!("--source {e}"))?;
    let mut mapping = match &args.mapping {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read the mapping {}: {e}", path.display()))?;
            MappingFile::parse(&text).map_err(|e| anyhow::anyhow!("the mapping {}: {e}", path.display()))?
        }
        None => MappingFile::default(),
    };
    mapping.encoding = args.encoding.or(mapping.encoding);
    mapping.delimiter = args.delimiter.clone().or(mapping.delimiter);
    mapping.date_order = args.date_order.or(mapping.date_order);
    let open = || File::open(&args.file).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", args.file.display()));
    let lines = count_lines(open()?)?;
    let options = ImportOptions {
        tenant: tenant.clone(),
        source,
        mapping,
        delete_missing: args.delete_missing,
        batch_size: args.batch_size as usize,
        parallel: args.parallel as usize,
        policy: args.normalization.policy()?,
    };
    let (cache, stop_cache) = args.redis.writer_cache()?;
    let store = args.database.connect(&args.data.data_dir, args.parallel + 1, cache).await?;
    store.migrate().await?;
    let mut progress = Progress::new("rows", lines.saturating_sub(1));
    let imported = import(&store, &options, open()?, |done| {
        let add = done - progress.done();
        progress.add(add);
    })
    .await;
    drop(progress);
    // Running servers chain these too; chaining here leaves none waiting.
    if let Err(error) = chain_all(&store).await {
        tracing::warn!(%error, "the import's audit records are not chained yet; a running server chains them");
    }
    stop_cache.cancel();
    store.close().await?;
    let summary = imported?;
    let errors = args.errors.clone().unwrap_or_else(|| beside(&args.file, "errors.csv"));
    let report = args.report.clone().unwrap_or_else(|| beside(&args.file, "report.csv"));
    let wrote_errors = write_errors(&summary, &errors)?;
    let wrote_report = write_report(&summary, &report)?;
    let (missing, deactivated) = summary.missing();
    let held = summary.noted.iter().filter(|n| matches!(n.issue, Issue::IdentifierHeld { .. })).count();
    println!(
        "imported {} of tenant {tenant}: read {}, created {}, updated {}, unchanged {}, rejected {} \
         ({:.1}s, {:.0} rows/s); identifiers left out (held by another profile) {held}; \
         missing from the file {missing}, marked INACTIVE {deactivated}",
        args.file.display(),
        summary.read,
        summary.created,
        summary.updated,
        summary.unchanged,
        summary.rejected.len(),
        summary.seconds,
        summary.read as f64 / summary.seconds.max(1e-9),
    );
    if wrote_errors {
        println!("rejected rows, with line and reason: {}", errors.display());
    }
    if wrote_report {
        println!("report: {}", report.display());
    }
    if let Some(reason) = &summary.delete_missing_skipped {
        println!("--delete-missing deactivated nothing: {reason}");
    } else if missing > deactivated && !args.delete_missing {
        println!("rows missing from the file stay as they are; --delete-missing marks their profiles INACTIVE");
    }
    if let Some(failure) = summary.failed {
        anyhow::bail!("the import stopped: {failure} (the batches written before it stay written; run it again)");
    }
    Ok(())
}

/// `dir/customers.csv` → `dir/customers.csv.<suffix>`.
fn beside(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    file.with_file_name(name)
}

/// Lines of the file, for the progress bar (quoted newlines count too).
fn count_lines(file: File) -> anyhow::Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut lines = 0u64;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(lines);
        }
        lines += buffer.iter().filter(|&&b| b == b'\n').count() as u64;
        let read = buffer.len();
        reader.consume(read);
    }
}

/// Writes the rejected rows as CSV (`line`, `reason`, then the row's own
/// cells under its own headers, so the file can be fixed and loaded
/// again); removes a stale one when nothing was rejected. Whether it wrote.
fn write_errors(summary: &Summary, path: &Path) -> anyhow::Result<bool> {
    if summary.rejected.is_empty() {
        remove_stale(path)?;
        return Ok(false);
    }
    let mut writer =
        csv::Writer::from_path(path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    let mut header = vec!["line".to_owned(), "reason".to_owned()];
    header.extend(summary.headers.iter().cloned());
    writer.write_record(&header)?;
    let width = header.len();
    for (rejected, cells) in &summary.rejected {
        let mut record = vec![rejected.line.to_string(), rejected.reason.clone()];
        record.extend(cells.iter().cloned());
        record.resize(width.max(record.len()), String::new());
        writer.write_record(&record)?;
    }
    writer.flush()?;
    Ok(true)
}

/// Writes the report as CSV: `line,key,profile_id,issue,identifier,holder,detail`.
fn write_report(summary: &Summary, path: &Path) -> anyhow::Result<bool> {
    if summary.noted.is_empty() {
        remove_stale(path)?;
        return Ok(false);
    }
    let mut writer =
        csv::Writer::from_path(path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    writer.write_record(["line", "key", "profile_id", "issue", "identifier", "holder", "detail"])?;
    let mut noted: Vec<_> = summary.noted.iter().collect();
    noted.sort_by(|a, b| (a.line, &a.key).cmp(&(b.line, &b.key)));
    for n in noted {
        let line = if n.line == 0 { String::new() } else { n.line.to_string() };
        let (issue, identifier, holder, detail) = match &n.issue {
            Issue::IdentifierHeld { identifier, holder } => {
                ("identifier_held", identifier.to_string(), holder.to_string(), "loaded without it".to_owned())
            }
            Issue::LimitReached { field } => {
                ("limit_reached", String::new(), String::new(), format!("{field} is full"))
            }
            Issue::ContactNotFound { contact } => {
                ("contact_not_found", String::new(), String::new(), format!("no row with key '{contact}'"))
            }
            Issue::ContactRefused { reason } => ("contact_refused", String::new(), String::new(), reason.clone()),
            Issue::Missing { deactivated, kept_because } => (
                "missing",
                String::new(),
                String::new(),
                match (deactivated, kept_because) {
                    (true, _) => "marked INACTIVE".to_owned(),
                    (false, Some(reason)) => format!("kept: {reason}"),
                    (false, None) => "left as it is".to_owned(),
                },
            ),
        };
        writer.write_record([
            line,
            n.key.clone(),
            n.profile.to_string(),
            issue.to_owned(),
            identifier,
            holder,
            detail,
        ])?;
    }
    writer.flush()?;
    Ok(true)
}

fn remove_stale(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::anyhow!("cannot remove the stale {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}
