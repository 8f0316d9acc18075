//! `c360 export`: a tenant's golden records as CSV or JSON Lines, with their
//! external ids, so a tenant can leave as easily as it came.
//!
//! Reads the database directly (the current state, no cache), a page of
//! profiles at a time in id order, and audits each page as the system
//! principal `system:export`.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    time::Instant,
};

use clap::{Args, ValueEnum};
use serde_json::Value;

use super::progress::Progress;
use crate::{
    auth::Caller,
    cache::ProfileCache,
    config::{DataDirArgs, DatabaseArgs},
    domain::{
        ProfileId, TenantId,
        identifiers::IdentifierKey,
        profile::{PostalAddress, Profile, ProfileStatus},
    },
    service::{audit_bulk, chain_all},
    store::{
        self, Store,
        profiles::{ProfileFilter, ProfileJson, page},
    },
};

/// Profiles read per query (and audited per record).
const PAGE: u64 = 1_000;

/// What `c360 export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One row per profile; lists joined with "; ", attributes as JSON.
    Csv,
    /// One JSON object per line, every field as stored.
    Jsonl,
}

/// `c360 export --tenant T --format csv|jsonl`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Tenant to export.
    #[arg(long)]
    tenant: String,
    /// Output format.
    #[arg(long, value_enum)]
    format: Format,
    /// File to write; standard output when absent.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Also export deleted (INACTIVE) profiles.
    #[arg(long)]
    include_inactive: bool,
    #[command(flatten)]
    data: DataDirArgs,
    #[command(flatten)]
    database: DatabaseArgs,
}

/// The CSV columns, in order (README.md).
pub const CSV_COLUMNS: [&str; 26] = [
    "id",
    "kind",
    "status",
    "given_name",
    "family_name",
    "company_name",
    "segment",
    "birth_date",
    "email",
    "emails",
    "phone",
    "phones",
    "address_line1",
    "address_line2",
    "city",
    "region",
    "postcode",
    "country",
    "addresses",
    "external_ids",
    "primary_contact_id",
    "attributes",
    "created_at",
    "updated_at",
    "version",
    "held_identifiers",
];

/// Runs `c360 export`.
pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let tenant = TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant {e}"))?;
    let store = args.database.connect(&args.data.data_dir, 2, ProfileCache::none()).await?;
    store.migrate().await?;
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let statuses: &[ProfileStatus] = if args.include_inactive {
        &[ProfileStatus::Prospect, ProfileStatus::Active, ProfileStatus::Inactive]
    } else {
        &[ProfileStatus::Prospect, ProfileStatus::Active]
    };
    let started = Instant::now();
    let exported = export(&store, &tenant, args.format, statuses, out).await;
    // Running servers chain these too; chaining here leaves none waiting.
    if let Err(error) = chain_all(&store).await {
        tracing::warn!(%error, "the export's audit records are not chained yet; a running server chains them");
    }
    store.close().await?;
    let exported = exported?;
    eprintln!("exported {exported} profiles of tenant {tenant} in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Writes the profiles of `tenant` with one of `statuses` to `out`; how many.
pub async fn export(
    store: &Store,
    tenant: &TenantId,
    format: Format,
    statuses: &[ProfileStatus],
    out: Box<dyn Write + '_>,
) -> anyhow::Result<u64> {
    let total = store::profiles::count(store.db(), tenant, statuses, None).await?;
    let mut progress = Progress::new("profiles", total);
    let mut sink = match format {
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(CSV_COLUMNS)?;
            Sink::Csv(Box::new(writer))
        }
        Format::Jsonl => Sink::Jsonl(out),
    };
    let caller = Caller::system(tenant.clone(), "export");
    // Identifiers profiles gave that others hold: evidence a matcher
    // reading the export should see as c360 dedupe does.
    let held = store::identities::held(store.db(), tenant, None).await?;
    let no_held = Vec::new();
    let mut after: Option<ProfileId> = None;
    let mut exported = 0u64;
    loop {
        let filter = ProfileFilter::All { show_deleted: true };
        let (profiles, more) = page(store.db(), tenant, &filter, after, PAGE).await?;
        after = profiles.last().map(|p| p.id);
        let chosen: Vec<&Profile> = profiles.iter().filter(|p| statuses.contains(&p.data.status)).collect();
        for profile in &chosen {
            let held = held.get(&profile.id).unwrap_or(&no_held);
            match &mut sink {
                Sink::Csv(writer) => writer.write_record(csv_row(profile, held))?,
                Sink::Jsonl(out) => {
                    let held_identifiers = held.iter().map(ToString::to_string).collect();
                    serde_json::to_writer(&mut *out, &JsonRow { profile: ProfileJson::of(profile), held_identifiers })?;
                    out.write_all(b"\n")?;
                }
            }
        }
        if !chosen.is_empty() {
            audit_page(store, &caller, &chosen).await?;
        }
        exported += chosen.len() as u64;
        progress.add(chosen.len() as u64);
        if !more {
            break;
        }
    }
    match &mut sink {
        Sink::Csv(writer) => writer.flush()?,
        Sink::Jsonl(out) => out.flush()?,
    }
    Ok(exported)
}

/// A JSON Lines row: the profile and the identifiers it gave that another
/// profile holds.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    #[serde(flatten)]
    profile: ProfileJson<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    held_identifiers: Vec<String>,
}

/// Where the records go.
enum Sink<'a> {
    Csv(Box<csv::Writer<Box<dyn Write + 'a>>>),
    Jsonl(Box<dyn Write + 'a>),
}

/// The page's audit records, as the system principal, counting its rows.
async fn audit_page(store: &Store, caller: &Caller, profiles: &[&Profile]) -> anyhow::Result<()> {
    let ids: Vec<String> = profiles.iter().map(|p| p.id.to_string()).collect();
    let mut work = store.begin().await?;
    audit_bulk(&mut work, caller, "profile.export", ids, profiles.len());
    work.commit().await?;
    Ok(())
}

/// A profile as one CSV row, in [`CSV_COLUMNS`] order: the primary email
/// and phone (or the first) in their own columns and every one in the
/// plural column, the first address in parts (and every address as JSON
/// when there are several), external ids as `source:id; …`, identifiers
/// the profile gave that another holds as `type:value; …`.
fn csv_row(profile: &Profile, held: &[IdentifierKey]) -> Vec<String> {
    let data = &profile.data;
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let primary_email = data.emails.iter().find(|e| e.primary).or(data.emails.first());
    let primary_phone = data.phones.iter().find(|p| p.primary).or(data.phones.first());
    let joined = |values: Vec<&str>| values.join("; ");
    let address = data.addresses.first();
    let part = |f: fn(&PostalAddress) -> String| address.map(f).unwrap_or_default();
    vec![
        profile.id.to_string(),
        data.kind.as_str().to_owned(),
        data.status.as_str().to_owned(),
        text(&data.given_name),
        text(&data.family_name),
        text(&data.company_name),
        text(&data.segment),
        data.birth_date.map(|d| d.to_string()).unwrap_or_default(),
        primary_email.map(|e| e.address.clone()).unwrap_or_default(),
        joined(data.emails.iter().map(|e| e.address.as_str()).collect()),
        primary_phone.map(|p| p.number.clone()).unwrap_or_default(),
        joined(data.phones.iter().map(|p| p.number.as_str()).collect()),
        part(|a| a.lines.first().cloned().unwrap_or_default()),
        part(|a| a.lines.get(1..).map(|rest| rest.join(", ")).unwrap_or_default()),
        part(|a| a.locality.clone()),
        part(|a| a.region.clone()),
        part(|a| a.postal_code.clone()),
        part(|a| a.country_code.clone()),
        if data.addresses.len() > 1 {
            serde_json::to_string(&data.addresses).unwrap_or_default()
        } else {
            String::new()
        },
        data.external_ids.iter().map(|x| format!("{}:{}", x.source, x.id)).collect::<Vec<_>>().join("; "),
        data.primary_contact_id.map(|id| id.to_string()).unwrap_or_default(),
        if data.attributes.is_empty() { String::new() } else { Value::Object(data.attributes.clone()).to_string() },
        profile.created_at.to_rfc3339(),
        profile.updated_at.to_rfc3339(),
        profile.version.to_string(),
        held.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
    ]
}
