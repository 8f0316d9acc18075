//! `c360 audit verify --tenant T`: walks a tenant's audit chain from the
//! oldest kept record and names the first broken link.

use std::{io::Write, time::Duration};

use clap::Subcommand;

use super::outbox::Target;
use crate::{
    cache::ProfileCache,
    domain::{
        TenantId,
        audit::{Break, ChainWalk},
    },
    store::audit,
};

/// Records read per query while walking.
const PAGE: u64 = 5_000;

/// The audit trail.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check a tenant's audit chain: every record unaltered, none removed or reordered, none left unchained.
    Verify {
        /// The tenant whose chain to check.
        #[arg(long)]
        tenant: String,
        /// How long a record may stay unchained before it counts as a break (running instances
        /// chain within seconds).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        grace: Duration,
        /// The database.
        #[command(flatten)]
        target: Target,
    },
}

impl AuditCommand {
    /// Runs the command, writing its report to `out`; an error names the first broken link.
    pub async fn run(self, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
        let Self::Verify { tenant, grace, target } = self;
        let tenant = TenantId::parse(&tenant).map_err(|e| anyhow::anyhow!("--tenant {e}"))?;
        let store = target.connect(ProfileCache::none()).await?;
        let result = verify(store.db(), &tenant, grace, out).await;
        store.close().await?;
        result
    }
}

async fn verify(
    db: &sea_orm::DatabaseConnection,
    tenant: &TenantId,
    grace: Duration,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let (head_seq, _, pruned) = audit::head(db, tenant).await?;
    let mut walk = ChainWalk::new(pruned);
    let mut after = pruned;
    let broken = 'walk: loop {
        let page = audit::chained_after(db, tenant, after, PAGE).await?;
        for record in &page {
            if let Err(broken) = walk.check(record) {
                break 'walk Some(broken);
            }
            after = record.seq.unwrap_or(after);
        }
        if (page.len() as u64) < PAGE {
            break walk.finish(head_seq).err();
        }
        if walk.checked % 100_000 < PAGE {
            let _ = writeln!(out, "… {} records checked", walk.checked);
        }
    };
    let broken = match broken {
        Some(broken) => Some(broken),
        None => {
            let cutoff = chrono::Utc::now() - chrono::Duration::from_std(grace)?;
            audit::unchained_before(db, tenant, cutoff)
                .await?
                .into_iter()
                .next()
                .map(|r| Break::Unchained { id: r.record.id, occurred_at: r.record.occurred_at })
        }
    };
    match broken {
        None => {
            let from = if pruned == 0 { "its first record".to_owned() } else { format!("record {}", pruned + 1) };
            writeln!(out, "tenant {tenant}: audit chain intact, {} records from {from} to {head_seq}", walk.checked)?;
            Ok(())
        }
        Some(broken) => {
            writeln!(out, "tenant {tenant}: audit chain BROKEN after {} intact records", walk.checked)?;
            Err(anyhow::anyhow!("{broken}"))
        }
    }
}
