//! `c360 model show --tenant T`: the matching model in force for a tenant
//! (docs/identity-resolution.md), or the starting one when none was trained.

use std::io::Write;

use c360_matching::{compare::Field, model::Model};
use clap::Subcommand;

use super::{dedupe::describe, outbox::Target};
use crate::{cache::ProfileCache, domain::TenantId, store};

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
}

impl ModelCommand {
    /// Runs the command, writing to `out`.
    pub async fn run(self, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
        let Self::Show { tenant, json, target } = self;
        let tenant = TenantId::parse(&tenant).map_err(|e| anyhow::anyhow!("--tenant {e}"))?;
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
                writeln!(
                    out,
                    "tenant {tenant} has no trained model yet (c360 dedupe trains one); the starting model:"
                )?;
            }
            write!(out, "{}", describe(&model))?;
        }
        Ok(())
    }
}
