//! `c360 model show --tenant T`: the matching model in force for a tenant
//! (docs/identity-resolution.md), or the starting one when none was trained;
//! `c360 model set` pins one written by hand (every run scores with it as it
//! is) and `c360 model unpin` lets the next run estimate again.

use std::{io::Write, path::PathBuf};

use c360_matching::{compare::Field, model::Model};
use clap::Subcommand;

use super::{dedupe::describe, outbox::Target};
use crate::{
    cache::ProfileCache,
    domain::{DomainError, TenantId},
    store,
};

/// The matching model.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Print the model in force: version, prior, thresholds, and every field's levels with m, u and weight.
    Show {
        /// The tenant whose model to show.
        #[arg(long)]
        tenant: String,
        /// Print the model as JSON, as stored.
        #[arg(long)]
        json: bool,
        /// The database.
        #[command(flatten)]
        target: Target,
    },
    /// Pin a model written by hand (JSON, as `show --json` prints it): every run scores with it as it is.
    Set {
        /// The tenant whose model to set.
        #[arg(long)]
        tenant: String,
        /// The model, as JSON; its version is replaced by the next one.
        #[arg(long)]
        file: PathBuf,
        /// The database.
        #[command(flatten)]
        target: Target,
    },
    /// Keep the pinned model's weights in force, but let the next run estimate a model again.
    Unpin {
        /// The tenant whose model to unpin.
        #[arg(long)]
        tenant: String,
        /// The database.
        #[command(flatten)]
        target: Target,
    },
}

/// Who `c360 model set` and `unpin` record as having stored a model.
const ACTOR: &str = "system:model";

impl ModelCommand {
    /// Runs the command, writing to `out`.
    pub async fn run(self, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
        match self {
            Self::Show { tenant, json, target } => show(&tenant, json, &target, out).await,
            Self::Set { tenant, file, target } => {
                let text =
                    std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
                let model: Model = serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("{} is not a model as `c360 model show --json` prints: {e}", file.display())
                })?;
                model.check().map_err(|why| anyhow::anyhow!("{}: {why}", file.display()))?;
                for key in model.comparisons.iter().filter_map(|c| c.field.attribute_key()) {
                    crate::domain::profile::limits::attribute_key(key)
                        .map_err(|why| anyhow::anyhow!("{}: attributes.{key}: {why}", file.display()))?;
                }
                let version = store_next(&tenant, &target, |_| Ok(Model { pinned: true, ..model.clone() })).await?;
                writeln!(
                    out,
                    "model version {version} pinned for tenant {tenant}: every run scores with it as it is, judged by the tenant's thresholds (c360 model unpin to estimate again)"
                )?;
                Ok(())
            }
            Self::Unpin { tenant, target } => {
                let version = store_next(&tenant, &target, |current| match current {
                    Some(model) if model.pinned => Ok(Model { pinned: false, ..model }),
                    _ => Err(anyhow::anyhow!("tenant {tenant}'s model in force is not pinned")),
                })
                .await?;
                writeln!(
                    out,
                    "model version {version} in force for tenant {tenant}, unpinned: the next run estimates a model"
                )?;
                Ok(())
            }
        }
    }
}

/// Stores the model `next` makes of the one in force as `tenant`'s next
/// version; that version. Tried again when a concurrent write won (on
/// SQLite, a running server's own writes to the file).
async fn store_next(
    tenant: &str,
    target: &Target,
    next: impl Fn(Option<Model>) -> anyhow::Result<Model>,
) -> anyhow::Result<u32> {
    let tenant = TenantId::parse(tenant).map_err(|e| anyhow::anyhow!("--tenant {e}"))?;
    let store = target.connect(ProfileCache::none()).await?;
    let once = async || -> Result<anyhow::Result<u32>, DomainError> {
        let work = store.begin().await?;
        let current = store::matching::current_model(work.conn(), &tenant).await?;
        let version = current.as_ref().map_or(1, |m| m.version + 1);
        let model = match next(current) {
            Ok(model) => Model { version, ..model },
            Err(refused) => return Ok(Err(refused)),
        };
        if !store::matching::save_model(work.conn(), &tenant, &model, ACTOR, chrono::Utc::now()).await? {
            return Err(DomainError::Aborted(format!("model version {version} was stored meanwhile")));
        }
        work.commit().await?;
        Ok(Ok(version))
    };
    let stored = async {
        store.migrate().await?;
        store::retry(once).await?
    }
    .await;
    store.close().await?;
    stored
}

/// Prints the model in force, or the starting one.
async fn show(tenant: &str, json: bool, target: &Target, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let tenant = TenantId::parse(tenant).map_err(|e| anyhow::anyhow!("--tenant {e}"))?;
    let store = target.connect(ProfileCache::none()).await?;
    store.migrate().await?;
    let stored = store::matching::current_model(store.db(), &tenant).await;
    store.close().await?;
    let (model, trained) = match stored? {
        Some(model) => (model, true),
        None => (Model::new(Field::defaults()), false),
    };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&model)?)?;
    } else {
        if !trained {
            writeln!(out, "tenant {tenant} has no trained model yet (c360 dedupe trains one); the starting model:")?;
        }
        write!(out, "{}", describe(&model))?;
    }
    Ok(())
}
